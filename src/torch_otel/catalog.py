"""The public names torch-otel emits (a contract users query by) and how torch loggers map to them.

Spans: ``torch.compile`` (one per frame compile: torch's ``dynamo`` phase), ``torch.compile.backward`` (a lazy
backward compile: ``entire_backward_compile``) and ``torch.compile.compiled_autograd`` (the capture of a
compiled-autograd graph: torch's ``compiled_autograd`` event, compile id ``!<n>/-/-``; the graph it captured is
compiled afterwards under ``torch.compile`` spans with ids ``!<n>/<frame>/<attempt>``). Each carries
``pytorch.compile.id`` and the compiled function's ``code.function.name``, ``code.file.path`` and
``code.line.number`` (failed compiles included; ``<ModuleClass>.forward`` for ``torch.compile(module)``); a
``torch.compile`` span also carries ``pytorch.compile.restarts``, how many times torch restarted its analysis.
The ``pytorch.recompile_limit`` event carries ``pytorch.compile.limit`` (a number when torch's config value is one)
and ``pytorch.compile.limit_action``: ``run_eager`` (torch runs the function without compiling from then on) or
``raise`` (``fullgraph=True`` or ``config.fail_on_recompile_limit_hit``: torch raises ``FailOnRecompileLimitHit``
to the caller).

Live compile events (log records): ``pytorch.compile.start`` (INFO) when a compile root starts (a frame compile, a
lazy backward compile, a compiled-autograd capture), emitted in the context of the application span that triggered
it (its trace and span ids are that span's), with ``pytorch.compile.id``, ``pytorch.compile.phase`` (torch's root
phase name, as on the span), the ``code.*`` identity of the compiled function and, when torch.distributed is
initialized or RANK is set, ``pytorch.distributed.rank``. ``pytorch.compile.slow`` (WARNING) while a compile has run
past TORCH_OTEL_SLOW_COMPILE, again at 2x, 4x, ... that time: ``pytorch.compile.phase`` is the innermost phase open
now, ``pytorch.compile.phases`` every open phase (outermost first), ``pytorch.compile.phase_elapsed_seconds`` and
``pytorch.compile.elapsed_seconds`` how long it has been in that phase and in the compile,
``pytorch.compile.slow_threshold_seconds`` the threshold just passed, ``thread.id``/``thread.name`` the compiling
thread, whose Python stack is in the body (redacted and capped like every body); its trace context is the compile
span's, and the open span gets the same event.

Compile time per step: ``pytorch.compile.in_progress`` (UpDownCounter) is the number of compiles running now, by
``pytorch.compile.phase`` (only ``torch.compile``, ``torch.compile.backward``, ``torch.compile.compiled_autograd``);
``pytorch.compile.time`` (Counter, seconds) is the monotonic sum of finished compile-root durations by the same
label, so ``increase(pytorch_compile_time_seconds_total[step window])`` is the time a window spent compiling. (The
``_sum`` of ``pytorch.compile.duration`` mixes roots with their nested phases, so it must be filtered to the root
labels to serve the same purpose.) Severity text is Python's level name (``WARNING``, ``ERROR``, ``INFO``), for the bridged records
and the product's own events alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

# Log record attributes.
ATTR_COMPONENT = "pytorch.log.component"
ATTR_ARTIFACT = "pytorch.log.artifact"
ATTR_COMPILE_ID = "pytorch.compile.id"
ATTR_TRUNCATED = "pytorch.log.truncated"
ATTR_ORIGINAL_SIZE = "pytorch.log.original_size"
ATTR_LOGGER = "pytorch.log.logger"
ATTR_REDACTED = "pytorch.log.redacted"
ATTR_CODE_FILE = "code.file.path"
ATTR_CODE_LINE = "code.line.number"
ATTR_CODE_FUNCTION = "code.function.name"

# Log record event names.
ARTIFACT_EVENT_PREFIX = "pytorch.artifact."
EVENT_RECOMPILE = "pytorch.recompile"
EVENT_GRAPH_BREAK = "pytorch.graph_break"
EVENT_COMPILE_START = "pytorch.compile.start"
EVENT_COMPILE_SLOW = "pytorch.compile.slow"

# Resource attributes.
RESOURCE_TORCH_VERSION = "pytorch.version"
RESOURCE_RANK = "pytorch.distributed.rank"
RESOURCE_WORLD_SIZE = "pytorch.distributed.world_size"
RESOURCE_LOCAL_RANK = "pytorch.distributed.local_rank"

ARTIFACT_LOGGER_MARKER = ".__"


def artifact_event_name(artifact: str) -> str:
    return ARTIFACT_EVENT_PREFIX + artifact


def artifact_of_logger(logger_name: str) -> str | None:
    """Torch names artifact loggers ``<module>.__<artifact>``."""
    _, marker, artifact = logger_name.rpartition(ARTIFACT_LOGGER_MARKER)
    return artifact if marker else None


def component_of_qname(qname: str, aliases: Mapping[str, Sequence[str]]) -> str:
    """The alias users name a registered logger by; the most specific alias wins when several share it
    (``torch.fx.experimental.symbolic_shapes`` belongs to ``dynamo``, ``dynamic`` and ``export``: it is ``dynamic``)."""
    owners = [alias for alias, qnames in aliases.items() if qname in qnames]
    if not owners:
        return qname
    return min(owners, key=lambda alias: len(aliases[alias]))


def owning_qname(logger_name: str, registered: Iterable[str]) -> str | None:
    """The nearest registered ancestor (or self) of a logger: the scope its records belong to."""
    registered = set(registered)
    name = logger_name
    while name:
        if name in registered:
            return name
        name = name.rpartition(".")[0]
    return None


_OTEL_SEVERITY_BY_LEVEL = (
    (logging.CRITICAL, 21),
    (logging.ERROR, 17),
    (logging.WARNING, 13),
    (logging.INFO, 9),
    (logging.DEBUG, 5),
)


def severity_text(levelno: int) -> str:
    """The severity text of a record at Python level ``levelno``: Python's level name (``WARNING``, not OTel's
    ``WARN``), as torch prints it and OTel's logging bridge sends it."""
    return logging.getLevelName(levelno)


def otel_severity_number(levelno: int) -> int:
    """Python level to OTel SeverityNumber: DEBUG=5, INFO=9, WARN=13, ERROR=17, FATAL=21, with levels in between
    stepping up within the band (e.g. 25 -> 11)."""
    for level, base in _OTEL_SEVERITY_BY_LEVEL:
        if levelno >= level:
            return min(base + (levelno - level) * 4 // 10, base + 3)
    return 1


# Spans and span events.
SPAN_COMPILE = "torch.compile"
SPAN_BACKWARD_COMPILE = "torch.compile.backward"
SPAN_COMPILED_AUTOGRAD = "torch.compile.compiled_autograd"
ATTR_PHASE = "pytorch.compile.phase"
ATTR_RECOMPILE_REASON = "pytorch.compile.recompile_reason"
ATTR_RECOMPILE_REASONS = "pytorch.compile.recompile_reasons"
ATTR_RESTART_REASONS = "pytorch.compile.restart_reasons"
ATTR_GRAPH_BREAK_REASON = "pytorch.graph_break.reason"
ATTR_GRAPH_BREAK_TYPE = "pytorch.graph_break.type"
ATTR_LIMIT_TYPE = "pytorch.compile.limit_type"
ATTR_LIMIT = "pytorch.compile.limit"
ATTR_LIMIT_ACTION = "pytorch.compile.limit_action"  # one of LIMIT_ACTIONS
LIMIT_RUNS_EAGER = "run_eager"
LIMIT_RAISES = "raise"
LIMIT_ACTIONS = (LIMIT_RUNS_EAGER, LIMIT_RAISES)
# What each action means, in the words the event body and the report use (torch._dynamo.convert_frame._compile).
LIMIT_OUTCOMES = {
    LIMIT_RUNS_EAGER: "it now runs without compiling",
    LIMIT_RAISES: "torch raised FailOnRecompileLimitHit to the caller (fullgraph=True or fail_on_recompile_limit_hit)",
}
ATTR_RESTARTS = "pytorch.compile.restarts"
ATTR_RANK = RESOURCE_RANK  # on pytorch.compile.start, when torch.distributed is initialized or RANK is set
ATTR_OPEN_PHASES = "pytorch.compile.phases"
ATTR_PHASE_ELAPSED = "pytorch.compile.phase_elapsed_seconds"
ATTR_ELAPSED = "pytorch.compile.elapsed_seconds"
ATTR_SLOW_THRESHOLD = "pytorch.compile.slow_threshold_seconds"
ATTR_THREAD_ID = "thread.id"
ATTR_THREAD_NAME = "thread.name"
EVENT_RECOMPILE_LIMIT = "pytorch.recompile_limit"

# Structured trace (TORCH_TRACE) records, when TORCH_OTEL_STRUCTURED=on.
STRUCTURED_TRACE_COMPONENT = "trace"
STRUCTURED_TRACE_SCOPE = "torch"
STRUCTURED_TRACE_EVENT_PREFIX = "pytorch.trace."
ATTR_TRACE_METADATA = "pytorch.trace.metadata"

# Metrics (instrument names, units and the only label keys they carry).
METRIC_COMPILE_DURATION = "pytorch.compile.duration"
METRIC_RECOMPILES = "pytorch.compile.recompiles"
METRIC_GRAPH_BREAKS = "pytorch.compile.graph_breaks"
METRIC_CACHE_LOOKUPS = "pytorch.compile.cache.lookups"
METRIC_IN_PROGRESS = "pytorch.compile.in_progress"
METRIC_COMPILE_TIME = "pytorch.compile.time"
METRIC_RECORDS_DROPPED = "torch_otel.records.dropped"
METRIC_RECORDS_TRUNCATED = "torch_otel.records.truncated"
METRIC_EXPORT_FAILURES = "torch_otel.export.failures"
METRIC_EXPORT_LOST = "torch_otel.export.lost"
LABEL_OUTCOME = "pytorch.compile.outcome"  # success | failure
LABEL_PHASE = "pytorch.compile.phase"  # a compile root's span name (SPAN_*), or a torch phase name
LABEL_CAUSE = "pytorch.recompile.cause"  # one of RECOMPILE_CAUSES
LABEL_FUNCTION = "code.function.name"  # capped at MAX_FUNCTION_LABELS distinct values, then "other"
LABEL_GRAPH_BREAK_TYPE = "pytorch.graph_break.type"  # torch's graph-break type, capped likewise
LABEL_CACHE = "pytorch.cache.name"  # one of CACHES
LABEL_CACHE_RESULT = "pytorch.cache.result"  # hit | miss
LABEL_SIGNAL = "torch_otel.signal"  # logs | traces | metrics
RECOMPILE_CAUSES = ("shape", "dtype", "device", "constant_value", "object_identity", "grad_mode", "other")
CACHES = ("inductor_fx_local", "inductor_fx_remote", "aotautograd_local", "aotautograd_remote")
OTHER_LABEL = "other"
MAX_FUNCTION_LABELS = 50
COMPILE_DURATION_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
# How Prometheus spells them (OTel's Prometheus exporter: dots to underscores, unit and _total suffixes).
PROMETHEUS_NAMES = {
    METRIC_COMPILE_DURATION: "pytorch_compile_duration_seconds",
    METRIC_RECOMPILES: "pytorch_compile_recompiles_total",
    METRIC_GRAPH_BREAKS: "pytorch_compile_graph_breaks_total",
    METRIC_CACHE_LOOKUPS: "pytorch_compile_cache_lookups_total",
    METRIC_IN_PROGRESS: "pytorch_compile_in_progress",
    METRIC_COMPILE_TIME: "pytorch_compile_time_seconds_total",
    METRIC_RECORDS_DROPPED: "torch_otel_records_dropped_total",
    METRIC_RECORDS_TRUNCATED: "torch_otel_records_truncated_total",
    METRIC_EXPORT_FAILURES: "torch_otel_export_failures_total",
    METRIC_EXPORT_LOST: "torch_otel_export_lost_total",
}


def prometheus_label(label: str) -> str:
    return label.replace(".", "_")
