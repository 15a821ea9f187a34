"""The exporters torch-otel owns: built again in a forked child, and shut down once, early if the exit deadline
is near."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class ForkSafeExporter:
    """Builds its exporter again in a forked child: a gRPC channel does not survive fork (gRPC's fork support is
    off by default), and the parent's exporter is left alone, since closing it would close the parent's connection."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._pid = os.getpid()
        self._inner = build()
        self._closed = False

    @property
    def inner(self) -> Any:
        if self._pid != os.getpid():
            self._pid, self._inner = os.getpid(), self._build()
        return self._inner

    def close(self) -> None:
        """Shut the exporter down, once. Called early, it interrupts an export waiting in retries or on a collector
        that never answers, so the exporting thread ends before the exit deadline instead of after it."""
        if not self._closed:
            self._closed = True
            self.inner.shutdown()
