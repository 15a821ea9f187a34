"""What an exporter needs to keep working in a process forked from the one that built it."""

from __future__ import annotations

import os
from typing import Any, Callable


class ForkSafeExporter:
    """Builds its exporter again in a forked child: a gRPC channel does not survive fork (gRPC's fork support is
    off by default), and the parent's exporter is left alone, since closing it would close the parent's connection."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._pid = os.getpid()
        self._inner = build()

    @property
    def inner(self) -> Any:
        if self._pid != os.getpid():
            self._pid, self._inner = os.getpid(), self._build()
        return self._inner
