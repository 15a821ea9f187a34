"""Turns a queued torch LogRecord into an OpenTelemetry log record: body, severity, attributes, event name."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from opentelemetry._logs import LoggerProvider, SeverityNumber

from torch_otel import catalog
from torch_otel.capture.log_handler import QueuedRecord
from torch_otel.signals.redaction import Redactor


def valid_utf8(text: str) -> str:
    """``text`` with lone surrogates (from undecodable file names or bytes) replaced by ``?``: OTLP strings must be
    UTF-8, and one invalid string makes a collector (or protobuf) reject the whole request it is in."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def cap_body(message: str, max_bytes: int) -> tuple[str, int | None]:
    """Cut ``message`` to at most ``max_bytes`` of UTF-8; returns the body and the original size if it was cut."""
    if len(message) * 4 <= max_bytes:
        return message, None
    if message.isascii():
        return (message, None) if len(message) <= max_bytes else (message[:max_bytes], len(message))
    encoded = message.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return message, None
    return encoded[:max_bytes].decode("utf-8", "ignore"), len(encoded)


class CallSite:
    """What every record from one logging call (logger, level, file, line, function) shares. Identity-hashed,
    so encoders can cache its encoding."""

    __slots__ = ("scope", "severity_number", "severity_text", "attributes", "event_name", "kind")

    def __init__(
        self,
        scope: str,
        severity_number: int,
        severity_text: str,
        attributes: Mapping[str, Any],
        event_name: str | None,
        kind: str | None = None,
    ) -> None:
        self.scope = scope
        self.severity_number = severity_number
        self.severity_text = severity_text
        self.attributes = attributes
        self.event_name = event_name
        self.kind = kind  # the artifact or TORCH_TRACE event kind, for redaction rules


class WireRecord(NamedTuple):
    """What the bridge knows about one record, ready to encode: its call site plus what differs per record."""

    site: CallSite
    timestamp_ns: int
    body: str
    attributes: Mapping[str, Any]  # per record (compile id, truncation, exception), beside the site's
    context: Any


def exception_attributes(exception: Any, redact: Any = lambda text: text) -> dict[str, str]:
    """OpenTelemetry's exception attributes from a ``CapturedException`` (type, message, formatted traceback)."""
    return {
        "exception.type": exception.type,
        "exception.message": redact(exception.message),
        "exception.stacktrace": redact(exception.stacktrace),
    }


_new_wire_record = tuple.__new__  # a WireRecord without the Python-level __new__ of a NamedTuple
_SITE_LIMIT = 20_000  # call sites and compile ids remembered; beyond it they are rebuilt per record

_TRACE_CONTEXT_KEYS = {
    "rank",
    "compiled_autograd_id",
    "frame_id",
    "frame_compile_id",
    "attempt",
    "stack",
    "has_payload",
    "subgraph_name",
}


def structured_trace_fields(trace_extras: Any) -> tuple[str, str, str]:
    """Event name, body and metadata JSON of a TORCH_TRACE record, from its ``metadata`` and ``payload`` extras."""
    raw_metadata, payload = trace_extras or ({}, None)
    metadata: dict[str, Any] = raw_metadata or {}
    kind = next((key for key in metadata if key not in _TRACE_CONTEXT_KEYS), "unknown")
    details = metadata.get(kind)
    if kind == "artifact" and isinstance(details, dict) and details.get("name"):
        kind = str(details["name"])
    encoded = json.dumps(details, default=repr)
    return catalog.STRUCTURED_TRACE_EVENT_PREFIX + kind, encoded if payload is None else str(payload), encoded


class LogRecordConverter:
    """Turns queued records into wire records and emits them through the OTel logs API, one cached logger per
    component scope. What a call site always produces is built once per site."""

    def __init__(
        self,
        logger_provider: LoggerProvider,
        scope_version: str | None,
        max_body_bytes: int,
        artifact_of_logger: Callable[[str], str | None],
        compile_id_text: Callable[[Any], str] = str,
        redactor: Redactor | None = None,
    ) -> None:
        self._redactor = redactor or Redactor()
        self._provider = logger_provider
        self._scope_version = scope_version
        self._max_body_bytes = max_body_bytes
        self._artifact_of_logger = artifact_of_logger
        self._compile_id_text = compile_id_text
        self._loggers: dict[str, Any] = {}
        self._sites: dict[tuple, CallSite] = {}
        self._compile_ids: dict[Any, str] = {}
        self.truncated = 0

    def prepare(self, item: QueuedRecord) -> WireRecord:
        """Everything exported about one record: body capped (and redacted if asked), attributes, event name."""
        attributes: dict[str, Any] = {}
        if item.compile_key is not None:
            attributes[catalog.ATTR_COMPILE_ID] = self._compile_id(item.compile_key)
        message = item.message
        trace_event = None
        if item.component.alias == catalog.STRUCTURED_TRACE_COMPONENT:
            trace_event, message, metadata = structured_trace_fields(item.trace_extras)
            metadata = valid_utf8(self._redactor.text(metadata))
            attributes[catalog.ATTR_TRACE_METADATA] = cap_body(metadata, self._max_body_bytes)[0]
        key = (item.component, item.name, item.levelno, item.pathname, item.lineno, item.func_name, trace_event)
        site = self._sites.get(key) or self._site(key, item.levelname)
        if self._redactor.active:
            message, code_removed = self._redactor.artifact_body(site.kind, message)
            if code_removed:
                attributes[catalog.ATTR_REDACTED] = True
        if item.exception is not None:
            redact = self._redactor.text
            attributes.update(exception_attributes(item.exception, lambda text: valid_utf8(redact(text))))
        body, original_size = cap_body(valid_utf8(message), self._max_body_bytes)
        original_size = getattr(item.message, "original_size", original_size)  # cut when queued
        if original_size is not None:
            self.truncated += 1
            attributes[catalog.ATTR_TRUNCATED] = True
            attributes[catalog.ATTR_ORIGINAL_SIZE] = original_size
        return _new_wire_record(WireRecord, (site, int(item.created * 1e9), body, attributes, item.context))

    def _site(self, key: tuple, levelname: str) -> CallSite:
        component, logger_name, levelno, pathname, lineno, func_name, trace_event = key
        attributes: dict[str, Any] = {
            catalog.ATTR_COMPONENT: component.alias,
            catalog.ATTR_LOGGER: logger_name,
            catalog.ATTR_CODE_FILE: valid_utf8(self._redactor.path(pathname)),
            catalog.ATTR_CODE_LINE: lineno,
            catalog.ATTR_CODE_FUNCTION: func_name,
        }
        event_name, kind = trace_event, None
        if trace_event is not None:
            kind = trace_event[len(catalog.STRUCTURED_TRACE_EVENT_PREFIX) :]
        elif (artifact := self._artifact_of_logger(logger_name)) is not None:
            attributes[catalog.ATTR_ARTIFACT] = kind = artifact
            event_name = catalog.artifact_event_name(artifact)
        site = CallSite(component.scope, catalog.otel_severity_number(levelno), levelname, attributes, event_name, kind)
        if len(self._sites) < _SITE_LIMIT:
            self._sites[key] = site
        return site

    def _compile_id(self, compile_key: Any) -> str:
        try:
            return self._compile_ids[compile_key]
        except KeyError:
            text = self._compile_id_text(compile_key)
            if len(self._compile_ids) < _SITE_LIMIT:
                self._compile_ids[compile_key] = text
            return text

    def emit(self, item: QueuedRecord) -> None:
        """Through the SDK's logger provider (its processors and exporters see the record)."""
        prepared = self.prepare(item)
        site = prepared.site
        self._logger(site.scope).emit(
            timestamp=prepared.timestamp_ns,
            observed_timestamp=prepared.timestamp_ns,  # the handler saw it as torch logged it
            context=prepared.context,
            severity_number=SeverityNumber(site.severity_number),
            severity_text=site.severity_text,
            body=prepared.body,
            attributes={**site.attributes, **prepared.attributes},
            event_name=site.event_name,
        )

    def _logger(self, scope: str) -> Any:
        logger = self._loggers.get(scope)
        if logger is None:
            logger = self._loggers[scope] = self._provider.get_logger(scope, self._scope_version)
        return logger
