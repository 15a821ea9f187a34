"""Compile metrics: duration by phase and outcome, recompiles by cause and function, graph breaks, cache
lookups, and the bridge's own health. A CompileListener fed by the same hooks as the spans."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from torch_otel import catalog
from torch_otel.capture.torch_hooks import FunctionIdentity, Phase
from torch_otel.exporters.delivery import LEDGER, Ledger

_CAUSE_PATTERNS = (
    ("shape", re.compile(r"size mismatch|stride mismatch|dimensionality|dim mismatch|rank mismatch|ndim", re.I)),
    ("dtype", re.compile(r"dtype mismatch", re.I)),
    ("device", re.compile(r"device mismatch|device index", re.I)),
    ("grad_mode", re.compile(r"requires_grad|grad_mode|grad mode", re.I)),
    ("object_identity", re.compile(r"___check_obj_id|___check_type_id|ID_MATCH|TYPE_MATCH|\bis not\b|\bis\b", re.I)),
    ("constant_value", re.compile(r"==|!=")),
)


def recompile_cause(reason: str) -> str:
    """The bounded cause category of a guard failure reason (see ``catalog.RECOMPILE_CAUSES``)."""
    for cause, pattern in _CAUSE_PATTERNS:
        if pattern.search(reason):
            return cause
    return "other"


class LabelCap:
    """Passes through the first ``limit`` distinct values, then answers ``other``: label sets stay bounded."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value:
            return catalog.OTHER_LABEL
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return catalog.OTHER_LABEL


class BridgeHealth:
    """What the health counters read: the bridge's own drops and cuts, and the export ledger."""

    def __init__(self, ledger: Ledger = LEDGER) -> None:
        self.ledger = ledger
        self.dropped: Callable[[], int] = lambda: 0
        self.truncated: Callable[[], int] = lambda: 0


HEALTH = BridgeHealth()


class CompileMetrics:
    """A CompileListener recording metrics; durations are recorded when the whole compile ends, with its outcome."""

    def __init__(self, meter: Meter, health: BridgeHealth = HEALTH) -> None:
        self._health = health
        self._functions = LabelCap(catalog.MAX_FUNCTION_LABELS)
        self._graph_break_types = LabelCap(catalog.MAX_FUNCTION_LABELS)
        self._local = threading.local()
        self.rebind(meter)

    def rebind(self, meter: Meter) -> None:
        """Record into instruments of ``meter`` from now on (a forked child's own meter provider)."""
        self._duration = meter.create_histogram(
            catalog.METRIC_COMPILE_DURATION,
            unit="s",
            description="Time spent compiling, per torch phase",
            explicit_bucket_boundaries_advisory=list(catalog.COMPILE_DURATION_BUCKETS),
        )
        self._recompiles = meter.create_counter(catalog.METRIC_RECOMPILES, description="Frame recompiles by cause")
        self._graph_breaks = meter.create_counter(catalog.METRIC_GRAPH_BREAKS, description="Graph breaks")
        self._cache_lookups = meter.create_counter(
            catalog.METRIC_CACHE_LOOKUPS, description="Compile cache lookups by cache and result"
        )
        # Labelled by the compile root only (COMPILE_ROOTS' three names): bounded, and never two at once per thread.
        self._in_progress = meter.create_up_down_counter(
            catalog.METRIC_IN_PROGRESS, description="Compiles running now, by compile root"
        )
        self._compile_time = meter.create_counter(
            catalog.METRIC_COMPILE_TIME,
            unit="s",
            description="Time spent compiling (finished compile roots, failures included); increase() over a step",
        )
        # Observed only once non-zero: a process with nothing to report exports no points, so it leaves no file
        # and its exit waits for no export.
        meter.create_observable_counter(
            catalog.METRIC_RECORDS_DROPPED,
            [self._observe_dropped],
            description="Log records dropped because the bridge queue was full",
        )
        meter.create_observable_counter(
            catalog.METRIC_RECORDS_TRUNCATED,
            [self._observe_truncated],
            description="Log record bodies cut to TORCH_OTEL_MAX_BODY_BYTES",
        )
        meter.create_observable_counter(
            catalog.METRIC_EXPORT_FAILURES,
            [self._observe_failures],
            description="Export requests that failed, by signal",
        )
        meter.create_observable_counter(
            catalog.METRIC_EXPORT_LOST,
            [self._observe_lost],
            description="Log records, spans or metric exports in failed export requests, by signal",
        )

    def _state(self) -> Any:
        local = self._local
        if not hasattr(local, "finished"):
            local.finished, local.failed = [], False
        return local

    def phase_started(self, phase: Phase) -> None:
        if phase.depth == 0:
            state = self._state()
            state.finished, state.failed = [], False
            self._in_progress.add(1, {catalog.LABEL_PHASE: phase.label})

    def phase_ended(self, phase: Phase, end_ns: int) -> None:
        state = self._state()
        seconds = max(0, end_ns - phase.start_ns) / 1e9
        state.finished.append((phase.label, seconds))
        if phase.depth == 0:
            root = {catalog.LABEL_PHASE: phase.label}
            self._in_progress.add(-1, root)
            self._compile_time.add(seconds, root)
            outcome = "failure" if state.failed else "success"
            for label, phase_seconds in state.finished:
                self._duration.record(phase_seconds, {catalog.LABEL_PHASE: label, catalog.LABEL_OUTCOME: outcome})
            state.finished = []

    def compilation_metrics(self, metrics: Any) -> None:
        if getattr(metrics, "fail_type", None):
            self._state().failed = True
        for cache in catalog.CACHES:
            for result in ("hit", "miss"):
                count = getattr(metrics, f"{cache}_cache_{result}_count", None)
                if isinstance(count, int) and count > 0:
                    self._cache_lookups.add(count, {catalog.LABEL_CACHE: cache, catalog.LABEL_CACHE_RESULT: result})

    def recompiled(self, reasons: Sequence[str], function: FunctionIdentity | None) -> None:
        self._recompiles.add(
            1,
            {
                catalog.LABEL_CAUSE: recompile_cause(reasons[0] if reasons else ""),
                catalog.LABEL_FUNCTION: self._functions(function.function if function else None),
            },
        )

    def graph_break(
        self,
        reason: str,
        filename: str | None,
        lineno: int | None,
        function: str | None = None,
        break_type: str | None = None,
    ) -> None:
        self._graph_breaks.add(
            1,
            {
                catalog.LABEL_FUNCTION: self._functions(function),
                catalog.LABEL_GRAPH_BREAK_TYPE: self._graph_break_types(break_type),
            },
        )

    def recompile_limit_hit(self, limit_type: str, limit: Any, raises: bool) -> None:
        """Counted as recompiles already; the ERROR event is the spans' job."""

    def _observe_dropped(self, options: CallbackOptions) -> list[Observation]:
        return _nonzero(self._health.dropped())

    def _observe_truncated(self, options: CallbackOptions) -> list[Observation]:
        return _nonzero(self._health.truncated())

    def _observe_failures(self, options: CallbackOptions) -> list[Observation]:
        return [
            observation
            for signal, tally in self._health.ledger.tallies().items()
            for observation in _nonzero(tally.failed_requests, {catalog.LABEL_SIGNAL: signal})
        ]

    def _observe_lost(self, options: CallbackOptions) -> list[Observation]:
        return [
            observation
            for signal, tally in self._health.ledger.tallies().items()
            for observation in _nonzero(tally.failed, {catalog.LABEL_SIGNAL: signal})
        ]


def _nonzero(value: int, attributes: dict[str, str] | None = None) -> list[Observation]:
    return [Observation(value, attributes)] if value else []
