"""`torch-otel report FILE... [--html OUT]`: what torch.compile did, read back from OTLP JSON Lines files.

The input is the OTLP JSON file format (the OpenTelemetry file exporter spec): every line is one JSON-encoded
``ExportTraceServiceRequest`` (``{"resourceSpans": [...]}``), ``ExportLogsServiceRequest`` (``{"resourceLogs":
[...]}``) or ``ExportMetricsServiceRequest`` (``{"resourceMetrics": [...]}``). torch-otel's embedded default
(``torch_otel.file_export``) writes all three signals into one file, as opentelemetry-exporter-otlp-json-file does;
an OpenTelemetry Collector ``file`` exporter writes the same format, sometimes one signal per file. Unknown fields
are ignored; gzip-compressed files are read as they are.

Layers, so that each can be tested (and fuzzed) on its own:

* :func:`parse_line` turns one line into a :class:`Batch` of spans, log records and metric points. It is pure and
  raises nothing but :class:`ReportParseError`.
* :class:`ReportBuilder` aggregates batches, one at a time, into a :class:`Report` (pure; log records are counted,
  never kept, so a file of gigabytes of torch logs costs little memory).
* :func:`render_text` (here) and :func:`torch_otel.report_html.render_html` turn a Report into text or HTML.
* :func:`read_files` streams files line by line through the two, in bounded memory and time (MAX_LINE_BYTES,
  MAX_FILE_BYTES), and :func:`main` is the command.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import gzip
import json
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Iterable, Iterator, Mapping, Sequence

from torch_otel import catalog

EXIT_OK = 0
EXIT_BAD_LINES = 1
EXIT_USAGE = 2
MAX_ERRORS_SHOWN = 5
DEFAULT_WIDTH = 160  # when stdout is not a terminal
MIN_FLEX_WIDTH = 40
NAME_CAP = 40  # function names in the tables
MAX_VALUE_DEPTH = 32  # nesting of arrayValue/kvlistValue inside one attribute value
MAX_LANES = 2000  # HTML timeline: traces shown
MAX_BARS = 25000  # HTML timeline: spans drawn, in all lanes together
APP_SPAN_MAX_ATTRIBUTES = 32  # attributes kept of an application span (torch's own spans keep all)
APP_SPAN_MAX_VALUE_CHARS = 256

# Limits on reading, so that a wrong or hostile input (a gzip bomb, /dev/zero, a binary file, an endless pipe) ends
# in a one-paragraph error instead of exhausting memory or time. Read at each call, so tests may monkeypatch them.
# Both count bytes of the input after gzip decompression ("inflated"), the newline not included in a line.
# The command's --max-line-bytes and --max-file-bytes override them.
MAX_LINE_BYTES = 64 * 1024 * 1024  # bytes in one line: 64 MiB. With its default settings torch-otel writes lines of
#   a few MiB (log requests are cut at TORCH_OTEL_MAX_BATCH_BYTES, 3 MiB by default) and a Collector's lines are
#   batches of the same order; memory use is about this much plus what json.loads makes of one line. A longer line
#   stops the reading of its file there.
MAX_FILE_BYTES = 4 * 1024 * 1024 * 1024  # bytes read from one file (or stdin): 4 GiB; reading that file stops there.
READ_CHUNK_BYTES = 1024 * 1024  # bytes asked of the (inflating) stream at a time: 1 MiB

# torch's CompilationMetrics fields become pytorch.compile.<field> span attributes (see spans.METRIC_FIELDS);
# the catalog has no constant per field, so these are derived from the compile id attribute's namespace.
_COMPILE_NS = catalog.ATTR_COMPILE_ID.rpartition(".")[0] + "."
ATTR_DURATION_US = _COMPILE_NS + "duration_us"
CACHE_RESULTS = ("hit", "miss")


def cache_count_attribute(cache: str, result: str) -> str:
    """The compile span attribute holding ``cache``'s ``result`` count, e.g. pytorch.compile.aotautograd_local_cache_hit_count."""
    return f"{_COMPILE_NS}{cache}_cache_{result}_count"


# Which resource attributes tell one process from another (compile ids restart at 0/0 in every process).
PROCESS_KEYS = ("service.name", "service.instance.id", "host.name", "process.pid", catalog.RESOURCE_RANK)
Process = tuple  # tuple[tuple[str, str], ...] of the PROCESS_KEYS a resource has


# ---------------------------------------------------------------------------------------------------------------
# Parsing: one line -> Batch
# ---------------------------------------------------------------------------------------------------------------
class ReportParseError(ValueError):
    """A line that is not a well-formed OTLP JSON export request; the only exception :func:`parse_line` raises.

    ``reason`` says what is wrong and ``where`` the JSON path to it (e.g. ``resourceSpans[0].scopeSpans[1]``)."""

    def __init__(self, reason: str, where: Sequence[str] = ()) -> None:
        self.reason = reason
        self.where = tuple(part for part in where if part)
        super().__init__(f"{'.'.join(self.where).replace('.[', '[')}: {reason}" if self.where else reason)

    def within(self, *parts: str) -> ReportParseError:
        return ReportParseError(self.reason, (*parts, *self.where))


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    events: tuple[SpanEvent, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id)
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    process: Process = ()
    scope: str = ""


@dataclass(frozen=True, slots=True)
class LogRecord:
    event_name: str
    time_ns: int
    trace_id: str
    span_id: str
    attributes: Mapping[str, Any]
    process: Process = ()
    scope: str = ""


@dataclass(frozen=True, slots=True)
class MetricPoint:
    name: str
    kind: str  # sum | gauge | histogram | exponentialHistogram | summary
    attributes: Mapping[str, Any]
    value: float  # sum and gauge: the value; the histogram kinds: their sum
    start_ns: int
    time_ns: int
    temporality: int  # 0 unspecified, 1 delta, 2 cumulative (OTLP's AggregationTemporality)
    process: Process = ()
    scope: str = ""


@dataclass
class Batch:
    spans: list[Span] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    points: list[MetricPoint] = field(default_factory=list)


_SIGNALS = ("resourceSpans", "resourceLogs", "resourceMetrics")
_HEX = re.compile(r"[0-9a-fA-F]*")
_INT = re.compile(r"\s*[-+]?[0-9]{1,20}\s*")
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_CUT_TOKEN = re.compile(r"[-+.eE0-9]*|t(r(u)?)?|f(a(l(se?)?)?)?|n(u(l)?)?|N(a)?|-?I(n(f(i(n(i(ty?)?)?)?)?)?)?")
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_TEMPORALITIES = {
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0, "AGGREGATION_TEMPORALITY_DELTA": 1, "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}
_METRIC_KINDS = ("sum", "gauge", "histogram", "exponentialHistogram", "summary")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _list(value: Any, name: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportParseError(f"expected a list, got {_kind(value)}", (name,))
    return value


def _obj(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReportParseError(f"expected an object, got {_kind(value)}", (name,))
    return value


def _str(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReportParseError(f"expected a string, got {_kind(value)}", (name,))
    return value


def _int64(value: Any, name: str) -> int:
    """OTLP JSON writes (u)int64 as a decimal string; plain JSON numbers are accepted too."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ReportParseError("expected an integer, got a boolean", (name,))
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INT.fullmatch(value):
        number = int(value)
    if number is None:
        raise ReportParseError(f"expected an integer, got {_kind(value)}", (name,))
    if not _INT64_MIN <= number <= _UINT64_MAX:
        raise ReportParseError("integer out of the 64-bit range", (name,))
    return number


def _double(value: Any, name: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    raise ReportParseError(f"expected a number, got {_kind(value)}", (name,))


def _id(value: Any, name: str) -> str:
    """Trace and span ids: lowercase hex, as OTLP JSON writes them (base64, protobuf's JSON mapping, is accepted)."""
    text = _str(value, name)
    if _HEX.fullmatch(text) and len(text) % 2 == 0:
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) in (8, 16):
        return raw.hex()
    raise ReportParseError("expected a hex trace or span id", (name,))


def _any_value(value: Any, depth: int = 0) -> Any:
    """An OTLP AnyValue as a Python value: str, bool, int, float, tuple (arrayValue), dict (kvlistValue) or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ReportParseError(f"expected an AnyValue object, got {_kind(value)}")
    if depth >= MAX_VALUE_DEPTH:
        raise ReportParseError("attribute value nested too deeply")
    if "stringValue" in value:
        return _str(value["stringValue"], "stringValue")
    if "boolValue" in value:
        flag = value["boolValue"]
        if flag is None:
            return False
        if not isinstance(flag, bool):
            raise ReportParseError(f"expected a boolean, got {_kind(flag)}", ("boolValue",))
        return flag
    if "intValue" in value:
        return _int64(value["intValue"], "intValue")
    if "doubleValue" in value:
        return _double(value["doubleValue"], "doubleValue")
    if "arrayValue" in value:
        values = _obj(value["arrayValue"], "arrayValue").get("values")
        try:
            return tuple(_any_value(item, depth + 1) for item in _list(values, "values"))
        except ReportParseError as error:
            raise error.within("arrayValue") from None
    if "kvlistValue" in value:
        values = _obj(value["kvlistValue"], "kvlistValue").get("values")
        try:
            return _attributes(values, depth + 1, "values")
        except ReportParseError as error:
            raise error.within("kvlistValue") from None
    if "bytesValue" in value:
        return _str(value["bytesValue"], "bytesValue")  # base64, kept as written
    return None  # an empty AnyValue, or a kind this reader does not know


def _attributes(items: Any, depth: int = 0, name: str = "attributes") -> dict[str, Any]:
    result: dict[str, Any] = {}
    for i, item in enumerate(_list(items, name)):
        try:
            item = _obj(item, "")
            value = item.get("value")
            result[sys.intern(_str(item.get("key"), "key"))] = None if value is None else _any_value(value, depth)
        except ReportParseError as error:
            raise error.within(f"{name}[{i}]") from None
    return result


def _resource(container: dict) -> Process:
    resource = _obj(container.get("resource"), "resource")
    try:
        attributes = _attributes(resource.get("attributes"))
    except ReportParseError as error:
        raise error.within("resource") from None
    return tuple((key, str(attributes[key])) for key in PROCESS_KEYS if attributes.get(key) is not None)


def _scope_name(container: dict) -> str:
    return _str(_obj(container.get("scope"), "scope").get("name"), "name")


def _code(value: Any, table: Mapping[str, int], name: str) -> int:
    if isinstance(value, str) and value in table:
        return table[value]
    return _int64(value, name)


def _span(raw: Any, process: Process, scope: str) -> Span:
    raw = _obj(raw, "")
    events = []
    for i, event in enumerate(_list(raw.get("events"), "events")):
        try:
            event = _obj(event, "")
            events.append(SpanEvent(_str(event.get("name"), "name"), _int64(event.get("timeUnixNano"), "timeUnixNano"),
                                    _attributes(event.get("attributes"))))
        except ReportParseError as error:
            raise error.within(f"events[{i}]") from None
    links = []
    for i, link in enumerate(_list(raw.get("links"), "links")):
        try:
            link = _obj(link, "")
            links.append((_id(link.get("traceId"), "traceId"), _id(link.get("spanId"), "spanId")))
        except ReportParseError as error:
            raise error.within(f"links[{i}]") from None
    status = _obj(raw.get("status"), "status")
    try:
        status_code = _code(status.get("code"), _STATUS_CODES, "code")
        status_message = _str(status.get("message"), "message")
    except ReportParseError as error:
        raise error.within("status") from None
    return Span(
        trace_id=_id(raw.get("traceId"), "traceId"),
        span_id=_id(raw.get("spanId"), "spanId"),
        parent_span_id=_id(raw.get("parentSpanId"), "parentSpanId"),
        name=sys.intern(_str(raw.get("name"), "name")),
        start_ns=_int64(raw.get("startTimeUnixNano"), "startTimeUnixNano"),
        end_ns=_int64(raw.get("endTimeUnixNano"), "endTimeUnixNano"),
        attributes=_attributes(raw.get("attributes")),
        events=tuple(events),
        links=tuple(links),
        status_code=status_code,
        status_message=status_message,
        process=process,
        scope=scope,
    )


def _log(raw: Any, process: Process, scope: str) -> LogRecord:
    raw = _obj(raw, "")
    time_ns = _int64(raw.get("timeUnixNano"), "timeUnixNano") or _int64(raw.get("observedTimeUnixNano"), "observedTimeUnixNano")
    return LogRecord(
        event_name=_str(raw.get("eventName"), "eventName"),
        time_ns=time_ns,
        trace_id=_id(raw.get("traceId"), "traceId"),
        span_id=_id(raw.get("spanId"), "spanId"),
        attributes=_attributes(raw.get("attributes")),
        process=process,
        scope=scope,
    )


def _points(raw: Any, process: Process, scope: str) -> list[MetricPoint]:
    raw = _obj(raw, "")
    name = _str(raw.get("name"), "name")
    points = []
    for kind in _METRIC_KINDS:
        if raw.get(kind) is None:
            continue
        data = _obj(raw[kind], kind)
        try:
            temporality = _code(data.get("aggregationTemporality"), _TEMPORALITIES, "aggregationTemporality")
            for i, point in enumerate(_list(data.get("dataPoints"), "dataPoints")):
                try:
                    point = _obj(point, "")
                    if kind in ("sum", "gauge"):
                        value = (_double(point["asDouble"], "asDouble") if point.get("asDouble") is not None
                                 else float(_int64(point.get("asInt"), "asInt")))
                    else:
                        value = _double(point.get("sum"), "sum")
                    points.append(MetricPoint(
                        name, kind, _attributes(point.get("attributes")), value,
                        _int64(point.get("startTimeUnixNano"), "startTimeUnixNano"),
                        _int64(point.get("timeUnixNano"), "timeUnixNano"), temporality, process, scope,
                    ))
                except ReportParseError as error:
                    raise error.within(f"dataPoints[{i}]") from None
        except ReportParseError as error:
            raise error.within(kind) from None
    return points


_WALK = {
    "resourceSpans": ("scopeSpans", "spans"),
    "resourceLogs": ("scopeLogs", "logRecords"),
    "resourceMetrics": ("scopeMetrics", "metrics"),
}


def _decode_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ReportParseError("JSON nested too deeply") from None
    except json.JSONDecodeError as error:
        # A line cut short ends inside a string, or fails at its very end, or on the start of a number or literal
        # it cut ("0." of "0.5", "tr" of "true"); garbage, or a line damaged in the middle, fails before that.
        if error.msg.startswith("Unterminated string") or _CUT_TOKEN.fullmatch(text, error.pos):
            raise ReportParseError(f"truncated JSON: the line ends inside a value (after {len(text)} characters)") from None
        raise ReportParseError(f"invalid JSON at column {error.colno}: {error.msg}") from None
    except ValueError as error:  # e.g. an integer literal longer than Python converts
        raise ReportParseError(f"invalid JSON: {error}") from None


def parse_line(line: str | bytes) -> Batch:
    """One line of an OTLP JSON file as spans, log records and metric points.

    Unknown fields are ignored, as OTLP/JSON readers must; a blank line is an empty Batch. Anything else that is not
    an OTLP export request raises :class:`ReportParseError`, and nothing else is raised."""
    if isinstance(line, (bytes, bytearray)):
        try:
            line = bytes(line).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ReportParseError(f"not UTF-8 text (bad byte at offset {error.start})") from None
    text = line.strip().lstrip("\ufeff")
    if not text:
        return Batch()
    document = _decode_json(text)
    if not isinstance(document, dict):
        raise ReportParseError(f"not an OTLP export request: expected a JSON object, got {_kind(document)}")
    if not any(key in document for key in _SIGNALS):
        if any(isinstance(key, str) and key.startswith("resource") for key in document):
            return Batch()  # another signal (e.g. resourceProfiles): valid OTLP, nothing for this report
        raise ReportParseError("not an OTLP export request: no resourceSpans, resourceLogs or resourceMetrics")
    batch = Batch()
    for signal, (scopes_key, items_key) in _WALK.items():
        for r, resource_container in enumerate(_list(document.get(signal), signal)):
            try:
                resource_container = _obj(resource_container, "")
                process = _resource(resource_container)
                for s, scope_container in enumerate(_list(resource_container.get(scopes_key), scopes_key)):
                    try:
                        scope_container = _obj(scope_container, "")
                        scope = _scope_name(scope_container)
                        for i, item in enumerate(_list(scope_container.get(items_key), items_key)):
                            try:
                                if signal == "resourceSpans":
                                    batch.spans.append(_span(item, process, scope))
                                elif signal == "resourceLogs":
                                    batch.logs.append(_log(item, process, scope))
                                else:
                                    batch.points.extend(_points(item, process, scope))
                            except ReportParseError as error:
                                raise error.within(f"{items_key}[{i}]") from None
                    except ReportParseError as error:
                        raise error.within(f"{scopes_key}[{s}]") from None
            except ReportParseError as error:
                raise error.within(f"{signal}[{r}]") from None
    return batch


# ---------------------------------------------------------------------------------------------------------------
# Aggregation: Batches -> Report
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FunctionRow:
    function: str
    file: str
    line: int | None
    compiles: int
    recompiles: int
    failures: int
    total_us: float
    max_us: float
    backward_compiles: int
    backward_total_us: float
    compile_ids: tuple[str, ...] = ()  # forward compiles, in compile id order (per process: "rank 1 0/0")


@dataclass(frozen=True)
class RecompileRow:
    process: str  # a label when the input holds several processes, else ""
    compile_id: str
    function: str
    reasons: tuple[str, ...]
    app_span: str | None  # the application span that paid for it; None: the compile was a root span
    trace_id: str
    time_ns: int


@dataclass(frozen=True)
class GraphBreakRow:
    process: str
    compile_id: str
    function: str
    reason: str  # in full; reason_summary() gives the line to show
    file: str
    line: int | None
    count: int


@dataclass(frozen=True)
class LimitRow:
    process: str
    compile_id: str
    function: str
    limit_type: str
    limit: str


@dataclass(frozen=True)
class CacheRow:
    cache: str
    span_hits: int | None  # None: no compile span carried this cache's counts
    span_misses: int | None
    metric_hits: float | None  # None: no pytorch.compile.cache.lookups points for this cache
    metric_misses: float | None


@dataclass(frozen=True)
class ArtifactRow:
    process: str
    compile_id: str | None
    counts: tuple[tuple[str, int], ...]  # (event name, records), most first

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


@dataclass(frozen=True)
class Bar:
    """One span on the HTML timeline."""

    span: Span
    kind: str  # app | compile | recompile | failed | backward | phase
    depth: int


@dataclass(frozen=True)
class Lane:
    """One trace that holds a compile, with every span of it that the input has."""

    trace_id: str
    process: str
    start_ns: int
    end_ns: int
    bars: tuple[Bar, ...]

    @property
    def title(self) -> str:
        roots = [bar.span.name for bar in self.bars if bar.depth == 0]
        return roots[0] if roots else "(empty)"


@dataclass(frozen=True)
class Report:
    files: tuple[str, ...] = ()
    lines: int = 0
    span_count: int = 0
    log_count: int = 0
    point_count: int = 0
    compile_spans: int = 0
    backward_spans: int = 0
    processes: tuple[str, ...] = ()
    functions: tuple[FunctionRow, ...] = ()
    recompiles: tuple[RecompileRow, ...] = ()
    limits: tuple[LimitRow, ...] = ()
    graph_breaks: tuple[GraphBreakRow, ...] = ()
    caches: tuple[CacheRow, ...] = ()
    artifacts: tuple[ArtifactRow, ...] = ()
    lanes: tuple[Lane, ...] = ()
    lanes_omitted: int = 0
    traces_without_compiles: int = 0


def compile_id_sort_key(compile_id: str | None) -> tuple:
    """torch's compile ids in their natural order: 0/1 < 0/10 < 1/0; compiled-autograd ids (``!0/0/1``) last."""
    text = compile_id or ""
    return (text.startswith("!"), tuple(int(part[:18]) for part in re.findall(r"[0-9]+", text)), text)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _int_value(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", text := value.strip()):
        return int(text)  # int() itself rejects some of what str.strip() removes, such as "\x1f"
    return None


def _reasons(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (tuple, list)):
        return tuple(str(item) for item in value if item is not None)
    return (str(value),)


def reason_summary(reason: str) -> str:
    """The line of a (graph break) reason worth showing: its first line, unless that is torch's generic preamble
    ("Encountered graph break when attempting to trace ...:"), then the one that names the break."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    if not lines:
        return ""
    if len(lines) > 1 and lines[0].startswith("Encountered graph break when attempting to trace"):
        return lines[1]
    return lines[0]


def _is_torch_span(span: Span) -> bool:
    return span.name in (catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE) or catalog.ATTR_PHASE in span.attributes


def _is_recompile(span: Span) -> bool:
    return catalog.ATTR_RECOMPILE_REASON in span.attributes or any(
        event.name == catalog.EVENT_RECOMPILE for event in span.events
    )


def bar_kind(span: Span) -> str:
    if span.name == catalog.SPAN_COMPILE:
        if span.status_code == 2:
            return "failed"
        return "recompile" if _is_recompile(span) else "compile"
    if span.name == catalog.SPAN_BACKWARD_COMPILE:
        return "failed" if span.status_code == 2 else "backward"
    return "phase" if catalog.ATTR_PHASE in span.attributes else "app"


def _trim_app_span(span: Span) -> Span:
    """Application spans keep a bounded share of their attributes and only torch's events."""
    attributes = {}
    for key, value in list(span.attributes.items())[:APP_SPAN_MAX_ATTRIBUTES]:
        if isinstance(value, str) and len(value) > APP_SPAN_MAX_VALUE_CHARS:
            value = value[:APP_SPAN_MAX_VALUE_CHARS] + "…"
        elif not isinstance(value, (str, int, float, bool)) and value is not None:
            value = _text(value)[:APP_SPAN_MAX_VALUE_CHARS]  # type: ignore[index]
        attributes[key] = value
    events = tuple(event for event in span.events if event.name.startswith("pytorch."))
    return dataclasses.replace(span, attributes=attributes, events=events)


def _hashable(attributes: Mapping[str, Any]) -> str:
    return json.dumps(sorted((str(k), repr(v)) for k, v in attributes.items()))


class ReportBuilder:
    """Aggregates parsed batches into a Report. Spans are kept (the timeline and the parent lookups need them);
    log records and metric points are folded into counters as they come."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.lines = 0
        self._spans: dict[tuple[str, str], Span] = {}
        self._anonymous_spans = 0
        self._span_count = 0
        self._log_count = 0
        self._point_count = 0
        self._processes: set[Process] = set()
        self._artifacts: dict[tuple[Process, str | None], Counter[str]] = defaultdict(Counter)
        self._recompile_logs: dict[tuple[Process, str], LogRecord] = {}
        self._graph_break_logs: Counter[tuple] = Counter()
        self._limit_logs: list[LogRecord] = []
        self._cache_latest: dict[tuple, tuple[int, float]] = {}  # cumulative streams: (time, value) of the latest
        self._cache_delta: Counter[tuple[str, str]] = Counter()

    # -- input ------------------------------------------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        for span in batch.spans:
            self._add_span(span)
        for record in batch.logs:
            self._add_log(record)
        for point in batch.points:
            self._add_point(point)

    def _add_span(self, span: Span) -> None:
        self._span_count += 1
        self._processes.add(span.process)
        if not _is_torch_span(span):
            span = _trim_app_span(span)
        key = (span.trace_id, span.span_id)
        if not span.span_id or key in self._spans and self._spans[key] != span:
            self._anonymous_spans += 1
            key = (span.trace_id, f"#{self._anonymous_spans}")  # no id, or an id reused for another span
        self._spans[key] = span

    def _add_log(self, record: LogRecord) -> None:
        self._log_count += 1
        self._processes.add(record.process)
        attributes = record.attributes
        event_name = record.event_name
        if not event_name and isinstance(attributes.get(catalog.ATTR_ARTIFACT), str):
            event_name = catalog.artifact_event_name(attributes[catalog.ATTR_ARTIFACT])  # a reader without eventName
        compile_id = _text(attributes.get(catalog.ATTR_COMPILE_ID))
        if event_name.startswith(catalog.ARTIFACT_EVENT_PREFIX):
            self._artifacts[(record.process, compile_id)][event_name] += 1
        elif event_name == catalog.EVENT_RECOMPILE and compile_id is not None:
            self._recompile_logs.setdefault((record.process, compile_id), record)
        elif event_name == catalog.EVENT_GRAPH_BREAK:
            self._graph_break_logs[(record.process, compile_id or "", *self._graph_break_fields(attributes))] += 1
        elif event_name == catalog.EVENT_RECOMPILE_LIMIT:
            self._limit_logs.append(record)

    def _add_point(self, point: MetricPoint) -> None:
        self._point_count += 1
        self._processes.add(point.process)
        if point.name != catalog.METRIC_CACHE_LOOKUPS:
            return
        cache = _text(point.attributes.get(catalog.LABEL_CACHE)) or "?"
        result = _text(point.attributes.get(catalog.LABEL_CACHE_RESULT)) or "?"
        value = point.value if math.isfinite(point.value) else 0.0
        if point.temporality == 1:  # delta: every point counts
            self._cache_delta[(cache, result)] += value
            return
        # cumulative (and unspecified): each export repeats the running total, so only a stream's latest counts
        stream = (point.process, point.scope, cache, result, _hashable(point.attributes))
        if stream not in self._cache_latest or point.time_ns >= self._cache_latest[stream][0]:
            self._cache_latest[stream] = (point.time_ns, value)

    @staticmethod
    def _graph_break_fields(attributes: Mapping[str, Any]) -> tuple[str, str, int | None]:
        return (
            _text(attributes.get(catalog.ATTR_GRAPH_BREAK_REASON)) or "",
            _text(attributes.get(catalog.ATTR_CODE_FILE)) or "",
            _int_value(attributes.get(catalog.ATTR_CODE_LINE)),
        )

    # -- output -----------------------------------------------------------------------------------------------
    def build(self) -> Report:
        labels = _process_labels(self._processes)
        spans = list(self._spans.values())
        compiles = [s for s in spans if s.name == catalog.SPAN_COMPILE]
        backwards = [s for s in spans if s.name == catalog.SPAN_BACKWARD_COMPILE]
        compiles.sort(key=lambda s: (s.start_ns, compile_id_sort_key(_text(s.attributes.get(catalog.ATTR_COMPILE_ID)))))
        by_compile_id: dict[tuple[Process, str], Span] = {}
        for span in compiles:
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID))
            if compile_id is not None:
                by_compile_id.setdefault((span.process, compile_id), span)
        by_span_id = {(s.trace_id, s.span_id): s for s in compiles}
        functions = self._functions(compiles, backwards, by_compile_id, by_span_id, labels)
        recompiles = self._recompiles(compiles, spans, labels)
        graph_breaks = self._graph_breaks(spans, by_compile_id, labels)
        limits = self._limits(spans, by_compile_id, labels)
        lanes, omitted, without = self._lanes(spans, labels)
        artifacts = tuple(
            ArtifactRow(labels[process], compile_id, tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))
            for (process, compile_id), counts in sorted(
                self._artifacts.items(), key=lambda kv: (labels[kv[0][0]], kv[0][1] is None, compile_id_sort_key(kv[0][1]))
            )
        )
        return Report(
            files=tuple(self.files), lines=self.lines, span_count=self._span_count, log_count=self._log_count,
            point_count=self._point_count, compile_spans=len(compiles), backward_spans=len(backwards),
            processes=tuple(sorted(label for label in labels.values() if label)),
            functions=functions, recompiles=recompiles, limits=limits, graph_breaks=graph_breaks,
            caches=self._caches(compiles + backwards), artifacts=artifacts,
            lanes=lanes, lanes_omitted=omitted, traces_without_compiles=without,
        )

    @staticmethod
    def _function_of(span: Span) -> tuple[str, str, int | None]:
        attributes = span.attributes
        return (
            _text(attributes.get(catalog.ATTR_CODE_FUNCTION)) or "?",
            _text(attributes.get(catalog.ATTR_CODE_FILE)) or "",
            _int_value(attributes.get(catalog.ATTR_CODE_LINE)),
        )

    @staticmethod
    def _duration_us(span: Span) -> float:
        value = span.attributes.get(ATTR_DURATION_US)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            return float(value)
        return max(0, span.end_ns - span.start_ns) / 1000.0

    def _functions(self, compiles: list[Span], backwards: list[Span], by_compile_id: dict, by_span_id: dict,
                   labels: dict) -> tuple[FunctionRow, ...]:
        stats: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        compile_ids: dict[tuple, set[tuple[str, str]]] = defaultdict(set)
        for span in compiles:
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID))
            if compile_id is not None:
                compile_ids[self._function_of(span)].add((labels[span.process], compile_id))
            row = stats[self._function_of(span)]
            duration = self._duration_us(span)
            row["compiles"] += 1
            row["recompiles"] += _is_recompile(span)
            row["failures"] += span.status_code == 2
            row["total_us"] += duration
            row["max_us"] = max(row["max_us"], duration)
        for span in backwards:
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID))
            forward = by_compile_id.get((span.process, compile_id)) or next(
                (by_span_id[link] for link in span.links if link in by_span_id), None
            )
            key = self._function_of(forward) if forward is not None else self._function_of(span)
            row = stats[key]
            row["backward_compiles"] += 1
            row["backward_total_us"] += self._duration_us(span)
            row["failures"] += span.status_code == 2
        rows = [
            FunctionRow(function, file, line, int(s["compiles"]), int(s["recompiles"]), int(s["failures"]),
                        s["total_us"], s["max_us"], int(s["backward_compiles"]), s["backward_total_us"],
                        tuple(_with_process(process, compile_id) for process, compile_id in sorted(
                            compile_ids[(function, file, line)], key=lambda pc: (pc[0], compile_id_sort_key(pc[1])))))
            for (function, file, line), s in stats.items()
        ]
        rows.sort(key=lambda r: (-(r.total_us + r.backward_total_us), r.function, r.file, r.line or 0))
        return tuple(rows)

    def _app_span_of(self, span: Span) -> tuple[bool, str | None]:
        """(known, name) of the application span a compile span ran in: its nearest non-torch ancestor."""
        current = span
        for _ in range(64):
            if not current.parent_span_id:
                return True, None
            parent = self._spans.get((current.trace_id, current.parent_span_id))
            if parent is None:
                return False, None
            if not _is_torch_span(parent):
                return True, parent.name
            current = parent
        return False, None

    def _recompiles(self, compiles: list[Span], spans: list[Span], labels: dict) -> tuple[RecompileRow, ...]:
        found: dict[tuple[Process, str], dict[str, Any]] = {}

        def merge(key: tuple[Process, str], **values: Any) -> None:
            entry = found.setdefault(key, {})
            for name, value in values.items():
                if value not in (None, "", ()) and entry.get(name) in (None, "", ()):
                    entry[name] = value

        for span in compiles:  # the compile span: its attributes, its event, its parent
            if not _is_recompile(span):
                continue
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID)) or f"?{span.span_id}"
            event = next((e for e in span.events if e.name == catalog.EVENT_RECOMPILE), None)
            known, app = self._app_span_of(span)
            merge((span.process, compile_id),
                  reasons=_reasons(event.attributes.get(catalog.ATTR_RECOMPILE_REASONS)) if event else (),
                  function=_text(span.attributes.get(catalog.ATTR_CODE_FUNCTION)), time=span.start_ns,
                  trace=span.trace_id)
            merge((span.process, compile_id), reasons=_reasons(span.attributes.get(catalog.ATTR_RECOMPILE_REASON)))
            if known:
                found[(span.process, compile_id)].setdefault("app", app)
        for span in spans:  # the same event on the application span that paid for the recompile
            if span.name == catalog.SPAN_COMPILE:
                continue
            for event in span.events:
                if event.name != catalog.EVENT_RECOMPILE:
                    continue
                compile_id = _text(event.attributes.get(catalog.ATTR_COMPILE_ID))
                if compile_id is None:
                    continue
                key = (span.process, compile_id)
                merge(key, reasons=_reasons(event.attributes.get(catalog.ATTR_RECOMPILE_REASONS)),
                      function=_text(event.attributes.get(catalog.ATTR_CODE_FUNCTION)), time=event.time_ns,
                      trace=span.trace_id)
                if not _is_torch_span(span):
                    found[key].setdefault("app", span.name)
        for key, record in self._recompile_logs.items():  # the log record, for files that hold logs only
            merge(key, reasons=_reasons(record.attributes.get(catalog.ATTR_RECOMPILE_REASONS)),
                  function=_text(record.attributes.get(catalog.ATTR_CODE_FUNCTION)), time=record.time_ns,
                  trace=record.trace_id)
        rows = [
            RecompileRow(labels[process], compile_id, entry.get("function") or "?", entry.get("reasons") or ("?",),
                         entry.get("app", "?"), entry.get("trace") or "", entry.get("time") or 0)
            for (process, compile_id), entry in found.items()
        ]
        rows.sort(key=lambda r: (r.process, compile_id_sort_key(r.compile_id), r.time_ns))
        return tuple(rows)

    def _graph_breaks(self, spans: list[Span], by_compile_id: dict, labels: dict) -> tuple[GraphBreakRow, ...]:
        from_spans: Counter[tuple] = Counter()
        function_of: dict[tuple, str] = {}
        for span in spans:
            for event in span.events:
                if event.name != catalog.EVENT_GRAPH_BREAK:
                    continue
                compile_id = (_text(event.attributes.get(catalog.ATTR_COMPILE_ID))
                              or _text(span.attributes.get(catalog.ATTR_COMPILE_ID)) or "")
                key = (span.process, compile_id, *self._graph_break_fields(event.attributes))
                from_spans[key] += 1
                if span.name == catalog.SPAN_COMPILE:
                    function_of[key] = self._function_of(span)[0]
        rows = []
        for key in set(from_spans) | set(self._graph_break_logs):
            process, compile_id, reason, file, line = key
            function = function_of.get(key)
            if function is None:
                compile_span = by_compile_id.get((process, compile_id))
                function = self._function_of(compile_span)[0] if compile_span is not None else "?"
            count = max(from_spans[key], self._graph_break_logs[key])  # the span event and its log record twin
            rows.append(GraphBreakRow(labels[process], compile_id, function, reason, file, line, count))
        rows.sort(key=lambda r: (r.process, compile_id_sort_key(r.compile_id), r.file, r.line or 0, r.reason))
        return tuple(rows)

    def _limits(self, spans: list[Span], by_compile_id: dict, labels: dict) -> tuple[LimitRow, ...]:
        seen: dict[tuple, LimitRow] = {}
        sources = [(s.process, e.attributes) for s in spans for e in s.events if e.name == catalog.EVENT_RECOMPILE_LIMIT]
        sources += [(r.process, r.attributes) for r in self._limit_logs]
        for process, attributes in sources:
            compile_id = _text(attributes.get(catalog.ATTR_COMPILE_ID)) or ""
            function = _text(attributes.get(catalog.ATTR_CODE_FUNCTION))
            if function is None:
                compile_span = by_compile_id.get((process, compile_id))
                function = self._function_of(compile_span)[0] if compile_span is not None else "?"
            row = LimitRow(labels[process], compile_id, function, _text(attributes.get(catalog.ATTR_LIMIT_TYPE)) or "?",
                           _text(attributes.get(catalog.ATTR_LIMIT)) or "?")
            seen.setdefault((process, compile_id, row.function, row.limit_type), row)
        return tuple(sorted(seen.values(), key=lambda r: (r.process, compile_id_sort_key(r.compile_id))))

    def _caches(self, compile_spans: list[Span]) -> tuple[CacheRow, ...]:
        from_spans: dict[tuple[str, str], int] = {}
        for span in compile_spans:
            for cache in catalog.CACHES:
                for result in CACHE_RESULTS:
                    value = _int_value(span.attributes.get(cache_count_attribute(cache, result)))
                    if value is not None:
                        from_spans[(cache, result)] = from_spans.get((cache, result), 0) + value
        from_metric: dict[tuple[str, str], float] = dict(self._cache_delta)
        for (_, _, cache, result, _), (_, value) in self._cache_latest.items():
            from_metric[(cache, result)] = from_metric.get((cache, result), 0.0) + value
        names = list(catalog.CACHES) + sorted({cache for cache, _ in from_metric} - set(catalog.CACHES))
        return tuple(
            CacheRow(cache, from_spans.get((cache, "hit")), from_spans.get((cache, "miss")),
                     from_metric.get((cache, "hit")), from_metric.get((cache, "miss")))
            for cache in names
        )

    def _lanes(self, spans: list[Span], labels: dict) -> tuple[tuple[Lane, ...], int, int]:
        traces: dict[str, list[Span]] = defaultdict(list)
        for span in spans:
            traces[span.trace_id].append(span)
        with_compiles = [
            trace_spans for trace_spans in traces.values()
            if any(s.name in (catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE) for s in trace_spans)
        ]
        with_compiles.sort(key=lambda trace_spans: min(s.start_ns for s in trace_spans))
        lanes: list[Lane] = []
        bars_used = 0
        for trace_spans in with_compiles:
            if len(lanes) >= MAX_LANES or bars_used + len(trace_spans) > MAX_BARS:
                break
            ids = {s.span_id: s for s in trace_spans if s.span_id}
            bars = []
            for span in trace_spans:
                depth, current = 0, span
                while current.parent_span_id in ids and depth < 64:
                    current = ids[current.parent_span_id]
                    depth += 1
                bars.append(Bar(span, bar_kind(span), depth))
            bars.sort(key=lambda bar: (bar.depth, bar.span.start_ns))
            bars_used += len(bars)
            first = trace_spans[0]
            lanes.append(Lane(first.trace_id, labels[first.process], min(s.start_ns for s in trace_spans),
                              max(max(s.end_ns, s.start_ns) for s in trace_spans), tuple(bars)))
        return tuple(lanes), len(with_compiles) - len(lanes), len(traces) - len(with_compiles)


def _process_labels(processes: Iterable[Process]) -> dict[Process, str]:
    """"" for every process when the input holds one; otherwise short distinct labels (rank 0, trainer#2, ...)."""
    processes = sorted(set(processes))
    if len(processes) <= 1:
        return {process: "" for process in processes}
    labels: dict[Process, str] = {}
    used: Counter[str] = Counter()
    for process in processes:
        attributes = dict(process)
        if catalog.RESOURCE_RANK in attributes:
            base = f"rank {attributes[catalog.RESOURCE_RANK]}"
        elif "process.pid" in attributes:
            base = f"pid {attributes['process.pid']}"
        else:
            base = attributes.get("service.name") or "process"
        used[base] += 1
        labels[process] = base if used[base] == 1 else f"{base}#{used[base]}"
    return labels


def build_report(batches: Iterable[Batch]) -> Report:
    builder = ReportBuilder()
    for batch in batches:
        builder.add(batch)
    return builder.build()


# ---------------------------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean(text: Any) -> str:
    """Text from the input made safe for one terminal cell: no control characters (so no escape sequences), no
    line breaks, no lone surrogates."""
    text = str(text)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(" ", text).strip()


def truncate(text: str, width: int) -> str:
    if width <= 0 or len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…"


def truncate_left(text: str, width: int) -> str:
    if width <= 0 or len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1:]


def format_us(us: float) -> str:
    if us >= 10_000_000:
        return f"{us / 1e6:.1f} s"
    if us >= 1_000_000:
        return f"{us / 1e6:.2f} s"
    return f"{us / 1000:.1f} ms"


def format_count(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def location(file: str, line: int | None, width: int = 60) -> str:
    """``file:line``, the file cut from the left to ``width`` characters (0: never)."""
    if not file:
        return "?"
    return truncate_left(clean(file), width) + (f":{line}" if line is not None else "")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, flex: int = -1,
           right: Sequence[int] = (), caps: Mapping[int, int] | None = None) -> list[str]:
    """Aligned columns. Columns in ``caps`` are cut to their cap; when the table is still wider than ``width`` the
    ``flex`` column (the reason, usually) is cut too, down to MIN_FLEX_WIDTH. ``width`` 0: nothing is cut."""
    cells = [[clean(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    flex %= len(headers)
    if width > 0:
        for i, cap in (caps or {}).items():
            widths[i] = min(widths[i], max(cap, len(headers[i])))
        others = sum(w for i, w in enumerate(widths) if i != flex) + 2 * len(headers)
        widths[flex] = min(widths[flex], max(width - others, MIN_FLEX_WIDTH, len(headers[flex])))
    lines = []
    for row in [list(headers)] + cells:
        parts = []
        for i, cell in enumerate(row):
            cell = truncate(cell, widths[i]) if width > 0 else cell
            last = i == len(row) - 1
            parts.append(cell.rjust(widths[i]) if i in right else (cell if last else cell.ljust(widths[i])))
        lines.append(("  " + "  ".join(parts)).rstrip())
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _with_process(process: str, compile_id: str | None) -> str:
    compile_id = compile_id if compile_id else "-"
    return f"{process} {compile_id}" if process else compile_id


def render_text(report: Report, width: int = DEFAULT_WIDTH) -> str:
    """The terminal summary: five sections of aligned columns; long reasons are cut to fit ``width`` (0: never)."""
    path_width = 60 if width > 0 else 0
    out: list[str] = []
    out.append(
        f"torch-otel report: {_plural(len(report.files), 'file')}, {_plural(report.lines, 'line')}: "
        f"{_plural(report.span_count, 'span')} ({report.compile_spans} torch.compile, {report.backward_spans} backward), "
        f"{_plural(report.log_count, 'log record')}, {_plural(report.point_count, 'metric point')}"
    )
    if report.processes:
        out.append(f"processes: {', '.join(clean(p) for p in report.processes)}")

    out += ["", "Compiles per function"]
    if report.functions:
        out += _table(
            ("function", "location", "compiles", "recompiles", "failed", "total", "max", "backward", "backward total",
             "compile ids"),
            [(r.function, location(r.file, r.line, path_width), str(r.compiles), str(r.recompiles), str(r.failures),
              format_us(r.total_us), format_us(r.max_us), str(r.backward_compiles),
              format_us(r.backward_total_us) if r.backward_compiles else "-", ", ".join(r.compile_ids))
             for r in report.functions],
            width, flex=-1, right=(2, 3, 4, 5, 6, 7, 8), caps={0: NAME_CAP},
        )
    else:
        out.append("  (no torch.compile spans in the input)")

    out += ["", "Recompiles"]
    if report.recompiles:
        rows = []
        for r in report.recompiles:
            reasons = "; ".join(clean(reason) for reason in r.reasons)
            rows.append((_with_process(r.process, r.compile_id), r.function,
                         "(no app span)" if r.app_span is None else r.app_span, r.trace_id or "?", reasons))
        out += _table(("compile id", "function", "triggered by", "trace id", "reason"), rows, width,
                      caps={0: 24, 1: NAME_CAP, 2: 32})
    else:
        out.append("  (none)")
    for limit in report.limits:
        out.append(f"  recompile limit hit: {clean(limit.function)} ({_with_process(limit.process, limit.compile_id)}): "
                   f"{clean(limit.limit_type)} = {clean(limit.limit)}; it now runs without compiling")

    out += ["", "Graph breaks"]
    if report.graph_breaks:
        out += _table(
            ("compile id", "function", "user location", "count", "reason"),
            [(_with_process(r.process, r.compile_id), r.function, location(r.file, r.line, path_width), str(r.count),
              reason_summary(r.reason)) for r in report.graph_breaks],
            width, right=(3,), caps={0: 24, 1: NAME_CAP, 2: 60},
        )
    else:
        out.append("  (none)")

    out += ["", "Cache"]
    if any(r.span_hits is not None or r.metric_hits is not None or r.span_misses is not None
           or r.metric_misses is not None for r in report.caches):
        out += _table(
            ("cache", "hits (spans)", "misses (spans)", "hits (metric)", "misses (metric)"),
            [(r.cache, format_count(r.span_hits), format_count(r.span_misses), format_count(r.metric_hits),
              format_count(r.metric_misses)) for r in report.caches
             if any(v is not None for v in (r.span_hits, r.span_misses, r.metric_hits, r.metric_misses))],
            width, flex=0, right=(1, 2, 3, 4),
        )
        out.append("  spans: the compile spans' pytorch.compile.<cache>_cache_hit_count / _miss_count, summed")
        out.append(f"  metric: {catalog.METRIC_CACHE_LOOKUPS}, latest value of each cumulative stream (delta points summed)")
    else:
        out.append("  (no cache counts in the input)")

    out += ["", f"Artifacts per compile id ({catalog.ARTIFACT_EVENT_PREFIX}* log records)"]
    if report.artifacts:
        prefix = catalog.ARTIFACT_EVENT_PREFIX
        out += _table(
            ("compile id", "records", "by artifact"),
            [(_with_process(r.process, r.compile_id or "(none)"), str(r.total),
              ", ".join(f"{name[len(prefix):] if name.startswith(prefix) else name} {n}" for name, n in r.counts))
             for r in report.artifacts],
            width, right=(1,), caps={0: 24},
        )
    else:
        out.append("  (none)")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------
class ReportInputError(Exception):
    """A file that cannot be read at all (missing, a directory, compressed in a way this reader does not know)."""


@dataclass(frozen=True)
class LineError:
    path: str
    line: int
    message: str


@dataclass
class ReadResult:
    report: Report
    errors: list[LineError]  # the first MAX_ERRORS_SHOWN
    error_count: int
    limit_errors: list[str] = field(default_factory=list)  # one paragraph per file that went past a read limit


class Progress:
    """"reading ... 42%" on a terminal, by bytes read; silent unless enabled, and for the first half second."""

    def __init__(self, stream: IO[str] | None, total_bytes: int, enabled: bool, interval: float = 0.25,
                 delay: float = 0.5) -> None:
        self.stream = stream
        self.total = total_bytes
        self.enabled = enabled and stream is not None
        self.interval = interval
        self.delay = delay
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = 0

    def update(self, done_bytes: int, path: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < self.delay or now - self.last < self.interval:
            return
        self.last = now
        percent = f" {100 * done_bytes / self.total:3.0f}%" if self.total else ""
        text = f"torch-otel report: reading {truncate_left(clean(os.path.basename(path)), 40)}{percent} ({_size(done_bytes)}"
        text += f" of {_size(self.total)})" if self.total else ")"
        self.stream.write("\r" + text.ljust(self.shown))  # type: ignore[union-attr]
        self.stream.flush()  # type: ignore[union-attr]
        self.shown = len(text)

    def close(self) -> None:
        if self.shown and self.stream is not None:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
            self.shown = 0


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def check_input(path: str) -> None:
    """Raise ReportInputError with a one-line reason if ``path`` cannot be read as an input file."""
    if path == "-":
        return
    if not os.path.exists(path):
        raise ReportInputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ReportInputError(f"{path}: is a directory")
    if not os.path.isfile(path):  # a pipe (<(zcat ...)), /dev/stdin, a device: reading here would consume input
        if not os.access(path, os.R_OK):
            raise ReportInputError(f"{path}: cannot read: permission denied")
        return
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as error:
        raise ReportInputError(f"{path}: cannot read: {error.strerror or error}") from None
    if magic == _ZSTD_MAGIC:
        raise ReportInputError(f"{path}: zstd-compressed; decompress it first (zstd -d {path})")


def _exact_size(n: int) -> str:
    """A byte count as written in the limits: "64 MiB", "4 GiB", "1000 bytes"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return _plural(n, "byte")


class _LimitHit(Exception):
    """Reading one file went past MAX_LINE_BYTES (``which == "line"``) or MAX_FILE_BYTES (``"file"``) in ``line``."""

    def __init__(self, which: str, line: int, limit: int, compressed: bool) -> None:
        super().__init__(which)
        self.which, self.line, self.limit, self.compressed = which, line, limit, compressed

    def message(self, path: str) -> str:
        """One paragraph (one line) for stderr."""
        before = f"the {_plural(self.line - 1, 'line')} before it are reported"
        inflated = ", counted after gzip decompression" if self.compressed else ""
        if self.which == "line":
            return (f"{clean(path)}: line {self.line} is longer than {_exact_size(self.limit)}, the limit on one line "
                    f"(--max-line-bytes{inflated}); reading of this file stopped there and {before}. With its default "
                    f"settings torch-otel writes lines of a few MiB, so this is likely not an OTLP JSON Lines file, or "
                    f"a damaged one; if its lines are really that long, pass a larger --max-line-bytes")
        return (f"{clean(path)}: the file is longer than {_exact_size(self.limit)}, the limit on one file "
                f"(--max-file-bytes{inflated}); reading of this file stopped in line {self.line} and {before}. To "
                f"read all of it, pass a larger --max-file-bytes")


_BLANK = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.strip() removes


def _skip_blank(data: bytes, pos: int, end: int) -> int:
    """The index of the first byte of ``data[pos:end]`` that is not ASCII whitespace, else ``end``. Cheap on a long
    run of blank lines: it strips growing windows in C instead of looking at each byte in Python."""
    if pos < end and data[pos] not in _BLANK:
        return pos
    window = 64
    while pos < end:
        piece = data[pos:min(pos + window, end)]
        rest = piece.lstrip()
        if rest:
            return pos + len(piece) - len(rest)
        pos += len(piece)
        window = min(window * 8, READ_CHUNK_BYTES)
    return end


def _iter_lines(path: str, stdin: BinaryIO | None, max_line: int | None = None,
                max_file: int | None = None) -> Iterator[tuple[int, bytes | None, int]]:
    """``(line number, line, bytes of the file read so far)`` for each line that is not blank, newline removed, and
    ``(lines so far, None, bytes read so far)`` after each chunk read and at the end, so that progress moves on
    through long runs of blank lines and through long lines; the last number is the file's count of lines.

    Reads READ_CHUNK_BYTES at a time (inflated, for a gzip file) and holds at most one chunk and one line, so memory
    stays bounded: raises :class:`_LimitHit` when a line grows past ``max_line`` or the file past ``max_file`` bytes
    (the lines before it have been yielded). Blank lines cost C-speed scanning only, not a Python step each."""
    max_line = MAX_LINE_BYTES if max_line is None else max_line
    max_file = MAX_FILE_BYTES if max_file is None else max_file
    with contextlib.ExitStack() as stack:
        compressed = seekable = False
        if path == "-":
            stream: Any = stdin if stdin is not None else sys.stdin.buffer
            raw_file = stream
        else:
            raw_file = stack.enter_context(open(path, "rb"))
            compressed = raw_file.peek(2)[:2] == _GZIP_MAGIC  # peek, not seek: a pipe or /dev/fd/N cannot seek
            seekable = compressed and raw_file.seekable()
            stream = stack.enter_context(gzip.GzipFile(fileobj=raw_file)) if compressed else raw_file
        read = getattr(stream, "read1", stream.read)  # read1: what is ready, so a gzip cut short loses little
        lines = total = position = 0
        pending: list[bytes] = []  # the line being read, when a chunk ended inside it
        pending_len = 0
        while True:
            room = max_file - total
            data = read(min(READ_CHUNK_BYTES, room) if room > 0 else 1)
            if not data:
                break
            if room <= 0:
                raise _LimitHit("file", lines + 1, max_file, compressed)
            total += len(data)
            position = raw_file.tell() if seekable else total
            pos, end = 0, len(data)
            while pos < end:
                if pending:
                    newline = data.find(b"\n", pos)
                    stop = end if newline < 0 else newline
                    pending_len += stop - pos
                    if pending_len > max_line:
                        raise _LimitHit("line", lines + 1, max_line, compressed)
                    pending.append(data[pos:stop])
                    if newline < 0:
                        break
                    line = b"".join(pending)
                    pending, pending_len = [], 0
                    lines += 1
                    if _skip_blank(line, 0, len(line)) < len(line):
                        yield lines, line, position
                    pos = newline + 1
                    continue
                start = _skip_blank(data, pos, end)  # the first byte of the next line that is not blank
                last = data.rfind(b"\n", pos, start)
                line_start = last + 1 if last >= 0 else pos
                lines += data.count(b"\n", pos, line_start)
                newline = data.find(b"\n", start) if start < end else -1
                if newline < 0:  # the chunk ends inside this line (or with a newline: nothing is pending)
                    if line_start < end:
                        pending, pending_len = [data[line_start:]], end - line_start
                        if pending_len > max_line:
                            raise _LimitHit("line", lines + 1, max_line, compressed)
                    break
                if newline - line_start > max_line:
                    raise _LimitHit("line", lines + 1, max_line, compressed)
                lines += 1
                yield lines, data[line_start:newline], position
                pos = newline + 1
            yield lines, None, position
        if pending:  # the last line, without a newline
            line = b"".join(pending)
            lines += 1
            if _skip_blank(line, 0, len(line)) < len(line):
                yield lines, line, position
        yield lines, None, position


def read_files(paths: Sequence[str], progress: Progress | None = None, stdin: BinaryIO | None = None,
               max_line_bytes: int | None = None, max_file_bytes: int | None = None) -> ReadResult:
    """Stream ``paths`` through parse_line and a ReportBuilder. Lines that do not parse are counted (the first
    MAX_ERRORS_SHOWN kept) and skipped; the rest is reported. A file past ``max_line_bytes`` or ``max_file_bytes``
    (default MAX_LINE_BYTES, MAX_FILE_BYTES) is read
    up to the line that went past, that file's reading stops there (with a message in ``limit_errors``), and the
    other files are read."""
    builder = ReportBuilder()
    builder.files = list(paths)
    errors: list[LineError] = []
    limit_errors: list[str] = []
    error_count = 0
    done_before = 0
    for path in paths:
        number = position = 0
        try:
            for number, raw, position in _iter_lines(path, stdin, max_line_bytes, max_file_bytes):
                if raw is not None:
                    try:
                        try:
                            batch = parse_line(raw)
                        except MemoryError:  # a long line of tiny JSON values takes many times its size
                            raise ReportParseError(
                                f"too large to parse in the memory available ({_size(len(raw))} line)") from None
                        builder.add(batch)
                    except ReportParseError as error:
                        error_count += 1
                        if len(errors) < MAX_ERRORS_SHOWN:
                            errors.append(LineError(path, number, str(error)))
                if progress is not None:
                    progress.update(done_before + position, path)
        except _LimitHit as hit:
            number = hit.line - 1
            limit_errors.append(hit.message(path))
        except (OSError, EOFError) as error:  # e.g. a gzip file cut short: what was read is still reported
            error_count += 1
            if len(errors) < MAX_ERRORS_SHOWN:
                errors.append(LineError(path, number + 1, f"cannot read further: {error}"))
        builder.lines += number
        done_before += position
    if progress is not None:
        progress.close()
    return ReadResult(builder.build(), errors, error_count, limit_errors)


# ---------------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------------
class _ParserExit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that writes to the given streams and returns instead of exiting."""

    def __init__(self, out: IO[str], err: IO[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._out, self._err = out, err

    def _print_message(self, message: str, file: IO[str] | None = None) -> None:
        if message:
            (self._err if file is sys.stderr or file is self._err else self._out).write(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # type: ignore[override]
        if message:
            self._err.write(message)
        raise _ParserExit(status)

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.print_usage(self._err)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


_SIZE = re.compile(r"\s*([0-9]{1,20})\s*(|b|kib|kb|k|mib|mb|m|gib|gb|g)\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
               "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


def _size_argument(raw: str) -> int:
    match = _SIZE.fullmatch(raw)
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a size: a whole number of bytes, optionally with KiB, MiB "
                                         f"or GiB (e.g. 256MiB)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def build_parser(out: IO[str], err: IO[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        out, err, prog="torch-otel report",
        description="Summarise torch.compile telemetry (compiles, recompiles, graph breaks, caches, artifacts) from "
                    "OTLP JSON Lines files written by torch-otel's file export or an OpenTelemetry Collector file exporter.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="OTLP JSON Lines file(s); gzip is fine; - for stdin")
    parser.add_argument("--html", metavar="OUT", help="also write a self-contained HTML report with a timeline")
    parser.add_argument("--no-progress", action="store_true", help="never show the progress line on stderr")
    parser.add_argument("--progress", action="store_true", help="show the progress line even when stderr is not a terminal")
    parser.add_argument("--max-line-bytes", type=_size_argument, default=None, metavar="SIZE",
                        help=f"longest line read, e.g. 256MiB (default: {_exact_size(MAX_LINE_BYTES).replace(' ', '')})")
    parser.add_argument("--max-file-bytes", type=_size_argument, default=None, metavar="SIZE",
                        help=f"most bytes read of one file, after gzip decompression, e.g. 16GiB (default: "
                             f"{_exact_size(MAX_FILE_BYTES).replace(' ', '')})")
    parser.add_argument("--width", type=int, default=None,
                        help=f"cut long reasons to fit this many columns (default: the terminal's, else {DEFAULT_WIDTH}; 0: never)")
    return parser


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None,
         stdin: BinaryIO | None = None) -> int:
    """``torch-otel report``: 0 when every line parsed, 1 when some did not or a file went past --max-line-bytes or
    --max-file-bytes (the rest is still reported), 2 when a file cannot be read or the arguments are wrong."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        args = build_parser(out, err).parse_args(sys.argv[1:] if argv is None else list(argv))
    except _ParserExit as stop:
        return stop.code
    try:
        for path in args.files:
            check_input(path)
    except ReportInputError as error:
        err.write(f"torch-otel report: {error}\n")
        return EXIT_USAGE
    total = sum(os.path.getsize(p) for p in args.files if p != "-")
    progress = Progress(err, total, enabled=not args.no_progress and (args.progress or _isatty(err)))
    result = read_files(args.files, progress, stdin, args.max_line_bytes, args.max_file_bytes)
    width = args.width
    if width is None:
        width = os.get_terminal_size(out.fileno()).columns if _isatty(out) and hasattr(out, "fileno") else DEFAULT_WIDTH
    try:
        out.write(render_text(result.report, width))
        out.flush()
    except BrokenPipeError:  # `torch-otel report big.jsonl | head`
        if out is sys.stdout:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the interpreter's final flush stays quiet
    if args.html:
        from torch_otel.report_html import render_html

        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(render_html(result.report))
        except OSError as error:
            err.write(f"torch-otel report: cannot write {args.html}: {error.strerror or error}\n")
            return EXIT_USAGE
        err.write(f"torch-otel report: wrote {args.html}\n")
    for line_error in result.errors:
        err.write(f"torch-otel report: {line_error.path}:{line_error.line}: {clean(line_error.message)}\n")
    if result.error_count:
        shown = f"; the first {len(result.errors)} shown" if result.error_count > len(result.errors) else ""
        err.write(f"torch-otel report: {_plural(result.error_count, 'malformed line')} skipped of {result.report.lines}"
                  f"{shown}; the other lines are reported\n")
    for message in result.limit_errors:
        err.write(f"torch-otel report: {message}\n")
    return EXIT_BAD_LINES if result.error_count or result.limit_errors else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
