"""Counts, per signal, what entered the export pipelines torch-otel built and what the collector (or the file)
confirmed, so that what a process lost is the difference of two exact counts. A forked child starts from zero."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field


class Tally:
    """Items of one signal (log records, spans, metric exports): ``accepted`` into a pipeline, then settled by the
    export request that carried them as ``delivered`` or ``failed``. Thread-safe; every count only grows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted = 0
        self.delivered = 0
        self.failed = 0  # items in failed requests, or that could not be encoded
        self.failed_requests = 0

    def accept(self, count: int = 1) -> None:
        with self._lock:
            self.accepted += count

    def settle(self, count: int, succeeded: bool) -> None:
        """An export request carrying ``count`` accepted items finished."""
        with self._lock:
            if succeeded:
                self.delivered += count
            else:
                self.failed += count
                self.failed_requests += 1

    def lose(self, count: int = 1) -> None:
        """Accepted items that never made it into a request (an encoding error)."""
        with self._lock:
            self.failed += count

    @property
    def undelivered(self) -> int:
        """Accepted and not confirmed delivered: failed, or still queued or in flight."""
        return self.accepted - self.delivered

    def reset(self) -> None:
        """Zero the counts. Run in a forked child, where another thread of the parent may have held the lock."""
        self._lock = threading.Lock()
        self.accepted = self.delivered = self.failed = self.failed_requests = 0


@dataclass
class Ledger:
    """One tally per signal. Metrics are counted in export requests: one request carries a whole collection."""

    logs: Tally = field(default_factory=Tally)
    traces: Tally = field(default_factory=Tally)
    metrics: Tally = field(default_factory=Tally)

    def tallies(self) -> dict[str, Tally]:
        return {"logs": self.logs, "traces": self.traces, "metrics": self.metrics}

    def reset(self) -> None:
        for tally in self.tallies().values():
            tally.reset()


LEDGER = Ledger()

if hasattr(os, "register_at_fork"):
    # The child's exit line and health metrics speak for the child: the parent's counts stay with the parent.
    os.register_at_fork(after_in_child=LEDGER.reset)
