"""One line of an OTLP JSON Lines file -> a :class:`Batch` of spans, log records and metric points.

The input is the OTLP JSON file format (the OpenTelemetry file exporter spec): every line is one JSON-encoded
``ExportTraceServiceRequest`` (``{"resourceSpans": [...]}``), ``ExportLogsServiceRequest`` (``{"resourceLogs":
[...]}``) or ``ExportMetricsServiceRequest`` (``{"resourceMetrics": [...]}``). Unknown fields are ignored, as
OTLP/JSON readers must.

:func:`parse_line` is pure and raises nothing but :class:`ReportParseError`, so it can be tested (and fuzzed) on
its own.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch_otel import catalog

MAX_VALUE_DEPTH = 32  # nesting of arrayValue/kvlistValue inside one attribute value

# Which resource attributes tell one process from another (compile ids restart at 0/0 in every process).
PROCESS_KEYS = ("service.name", "service.instance.id", "host.name", "process.pid", catalog.RESOURCE_RANK)
Process = tuple  # tuple[tuple[str, str], ...] of the PROCESS_KEYS a resource has


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
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0,
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
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
            events.append(
                SpanEvent(
                    _str(event.get("name"), "name"),
                    _int64(event.get("timeUnixNano"), "timeUnixNano"),
                    _attributes(event.get("attributes")),
                )
            )
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
    time_ns = _int64(raw.get("timeUnixNano"), "timeUnixNano") or _int64(
        raw.get("observedTimeUnixNano"), "observedTimeUnixNano"
    )
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
                        value = (
                            _double(point["asDouble"], "asDouble")
                            if point.get("asDouble") is not None
                            else float(_int64(point.get("asInt"), "asInt"))
                        )
                    else:
                        value = _double(point.get("sum"), "sum")
                    points.append(
                        MetricPoint(
                            name,
                            kind,
                            _attributes(point.get("attributes")),
                            value,
                            _int64(point.get("startTimeUnixNano"), "startTimeUnixNano"),
                            _int64(point.get("timeUnixNano"), "timeUnixNano"),
                            temporality,
                            process,
                            scope,
                        )
                    )
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
            raise ReportParseError(
                f"truncated JSON: the line ends inside a value (after {len(text)} characters)"
            ) from None
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
