"""The public names torch-otel emits (a contract users query by) and how torch loggers map to them."""

from __future__ import annotations

import logging
from typing import Iterable, Mapping, Sequence

# Log record attributes.
ATTR_COMPONENT = "pytorch.log.component"
ATTR_ARTIFACT = "pytorch.log.artifact"
ATTR_COMPILE_ID = "pytorch.compile.id"
ATTR_TRUNCATED = "pytorch.log.truncated"
ATTR_ORIGINAL_SIZE = "pytorch.log.original_size"
ATTR_LOGGER = "pytorch.log.logger"
ATTR_CODE_FILE = "code.file.path"
ATTR_CODE_LINE = "code.line.number"
ATTR_CODE_FUNCTION = "code.function.name"

# Log record event names.
ARTIFACT_EVENT_PREFIX = "pytorch.artifact."
EVENT_RECOMPILE = "pytorch.recompile"
EVENT_GRAPH_BREAK = "pytorch.graph_break"

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


_OTEL_SEVERITY_BY_LEVEL = ((logging.CRITICAL, 21), (logging.ERROR, 17), (logging.WARNING, 13), (logging.INFO, 9), (logging.DEBUG, 5))


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
ATTR_PHASE = "pytorch.compile.phase"
ATTR_RECOMPILE_REASON = "pytorch.compile.recompile_reason"
ATTR_RECOMPILE_REASONS = "pytorch.compile.recompile_reasons"
ATTR_RESTART_REASONS = "pytorch.compile.restart_reasons"
ATTR_GRAPH_BREAK_REASON = "pytorch.graph_break.reason"
ATTR_LIMIT_TYPE = "pytorch.compile.limit_type"
ATTR_LIMIT = "pytorch.compile.limit"
EVENT_RECOMPILE_LIMIT = "pytorch.recompile_limit"

# Structured trace (TORCH_TRACE) records, when TORCH_OTEL_STRUCTURED=on.
STRUCTURED_TRACE_COMPONENT = "trace"
STRUCTURED_TRACE_SCOPE = "torch"
STRUCTURED_TRACE_EVENT_PREFIX = "pytorch.trace."
ATTR_TRACE_METADATA = "pytorch.trace.metadata"
