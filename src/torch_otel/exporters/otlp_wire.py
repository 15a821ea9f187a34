"""The fast path: queued torch records encoded straight to OTLP protobuf bytes (no SDK record objects, cached
fragments for what repeats) and sent in byte-bounded batches by the SDK's own OTLP exporters, whose transport,
headers, TLS, compression and retries are reused as they are."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, NamedTuple

from opentelemetry import trace

from torch_otel.exporters.delivery import Tally
from torch_otel.signals.log_records import CallSite, WireRecord

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack
_CACHE_LIMIT = 20_000


def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = tuple(_encode_varint(value) for value in range(1 << 14))


def varint(value: int) -> bytes:
    return _SMALL_VARINTS[value] if 0 <= value < 16384 else _encode_varint(value)


def field_bytes(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_string(number: int, text: str) -> bytes:
    return field_bytes(number, text.encode("utf-8", "surrogatepass"))


def any_value(value: Any) -> bytes:
    """An encoded AnyValue for the attribute types torch-otel emits (str, bool, int, float, list of those)."""
    if isinstance(value, str):
        return field_string(1, value)
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, (list, tuple)):
        return field_bytes(5, b"".join(field_bytes(1, any_value(item)) for item in value))
    return field_string(1, str(value))


def key_value(key: str, value: Any, number: int = 6) -> bytes:
    """A KeyValue as field ``number`` (6 = LogRecord.attributes, 1 = Resource.attributes)."""
    return field_bytes(number, field_string(1, key) + field_bytes(2, any_value(value)))


class LogEncoder:
    """Encodes LogRecords field by field; call sites, repeated attribute pairs and scopes are encoded once."""

    def __init__(self, resource_attributes: Mapping[str, Any], scope_version: str | None) -> None:
        self._resource = field_bytes(1, b"".join(key_value(k, v, 1) for k, v in resource_attributes.items()))
        self._scope_version = scope_version
        self._scopes: dict[str, bytes] = {}
        self._sites: dict[CallSite, tuple[bytes, bytes, bytes]] = {}
        self._pairs: dict[tuple[str, Any], bytes] = {}
        self._last_context: Any = None
        self._last_span_fields = b""

    def record(self, record: WireRecord) -> bytes:
        """The record as ScopeLogs field 2 (a LogRecord), framed and ready to join into a request."""
        try:
            severity, attributes, event_name = self._sites[record.site]
        except KeyError:
            severity, attributes, event_name = self._site(record.site)
        body = record.body.encode("utf-8", "surrogatepass")
        body_size = varint(len(body))
        timestamp = _FIXED64(record.timestamp_ns)
        parts = [
            b"\x09",
            timestamp,
            b"\x59",  # observed_time_unix_nano (11): the handler saw the record as torch logged it
            timestamp,
            severity,
            b"\x2a",
            varint(len(body) + len(body_size) + 1),
            b"\x0a",
            body_size,
            body,
            attributes,
        ]
        if record.attributes:
            parts += map(self._pair, record.attributes.items())
        if record.context is not self._last_context:
            self._last_context, self._last_span_fields = record.context, _span_fields(record.context)
        parts += (self._last_span_fields, event_name)
        encoded = b"".join(parts)
        return b"".join((b"\x12", varint(len(encoded)), encoded))

    def _site(self, site: CallSite) -> tuple[bytes, bytes, bytes]:
        """The site's severity (fields 2, 3), attributes (6) and event name (12), encoded."""
        encoded = (
            b"\x10" + varint(site.severity_number) + field_string(3, site.severity_text),
            b"".join(key_value(key, value) for key, value in site.attributes.items()),
            field_string(12, site.event_name) if site.event_name else b"",
        )
        if len(self._sites) < _CACHE_LIMIT:
            self._sites[site] = encoded
        return encoded

    def _pair(self, pair: tuple[str, Any]) -> bytes:
        pairs = self._pairs
        try:
            return pairs[pair]
        except KeyError:
            encoded = key_value(*pair)
            if len(pairs) < _CACHE_LIMIT:
                pairs[pair] = encoded
            return encoded
        except TypeError:  # unhashable (a list): encode every time
            return key_value(*pair)

    def _scope(self, name: str) -> bytes:
        try:
            return self._scopes[name]
        except KeyError:
            scope = field_string(1, name) + (field_string(2, self._scope_version) if self._scope_version else b"")
            encoded = self._scopes[name] = field_bytes(1, scope)
            return encoded

    def request(self, records_by_scope: Mapping[str, Sequence[bytes]]) -> bytes:
        """An ExportLogsServiceRequest holding the encoded records, grouped by scope; copied once, in one join."""
        tail: list[bytes] = []
        for scope, records in records_by_scope.items():
            scope_field = self._scope(scope)
            tail += (b"\x12", varint(len(scope_field) + sum(map(len, records))), scope_field)
            tail += records
        resource_logs_size = len(self._resource) + sum(map(len, tail))
        return b"".join((b"\x0a", varint(resource_logs_size), self._resource, *tail))


def _span_fields(context: Any) -> bytes:
    """Trace flags, trace id and span id (fields 8, 9, 10) of the span current in ``context``, if any."""
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return b""
    return b"".join(
        (
            b"\x45",
            _FIXED32(span_context.trace_flags),
            b"\x4a\x10",
            span_context.trace_id.to_bytes(16, "big"),
            b"\x52\x08",
            span_context.span_id.to_bytes(8, "big"),
        )
    )


class EncodedBatch(NamedTuple):
    data: bytes
    records: int


# What the fast path overrides or calls in the SDK's gRPC exporter, all private. All four exist from
# opentelemetry-exporter-otlp-proto-grpc 1.42 (read off 1.39.0 to 1.45.2: 1.39 builds its channel inline in
# __init__, 1.40 and 1.41 have no _count_data); 1.45 is tested on the fast path, 1.39 on the fallback.
_GRPC_MEMBERS = ("_initialize_channel_and_stub", "_translate_data", "_count_data", "_export")


def grpc_log_exporter_for_bytes(**kwargs: Any) -> Any | None:
    """The SDK's gRPC OTLP log exporter, sending pre-encoded requests (same channel, headers, retries), or None
    where this release of the exporter lacks a private member the fast path relies on (``_GRPC_MEMBERS``)."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    if not all(callable(getattr(OTLPLogExporter, member, None)) for member in _GRPC_MEMBERS):
        return None

    class PreEncodedGrpcLogExporter(OTLPLogExporter):
        def _initialize_channel_and_stub(self) -> None:
            super()._initialize_channel_and_stub()
            channel: Any = self._channel  # set by the parent's initialisation just above
            send = channel.unary_unary(
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                request_serializer=bytes,
                response_deserializer=ExportLogsServiceResponse.FromString,
            )
            self._client = SimpleNamespace(Export=send)  # type: ignore[assignment]  # a stub with gRPC's Export

        def _translate_data(self, data: EncodedBatch) -> bytes:  # type: ignore[override]  # bytes in, not SDK records
            return data.data

        def _count_data(self, data: EncodedBatch) -> int:  # type: ignore[override]  # bytes in, not SDK records
            return data.records

        def send(self, batch: EncodedBatch) -> bool:
            from opentelemetry.sdk._logs.export import LogRecordExportResult

            # The mixin is generic over SDK record types; what goes through here is already-encoded bytes.
            return OTLPExporterMixin._export(self, batch) == LogRecordExportResult.SUCCESS  # type: ignore[misc]  # see above

    exporter = PreEncodedGrpcLogExporter(**kwargs)
    if isinstance(exporter._client, SimpleNamespace):
        return exporter
    _discard(exporter)  # the parent never called the hook that installs the bytes stub
    return None


def http_log_exporter_for_bytes(**kwargs: Any) -> Any | None:
    """The SDK's HTTP/protobuf OTLP log exporter, sending pre-encoded requests, or None where this release of the
    exporter has no ``_client.export(bytes)`` (it appeared in opentelemetry-exporter-otlp-proto-http 1.45; 1.44
    and older post with a private ``_export`` that has no retries of its own)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    class PreEncodedHttpLogExporter(OTLPLogExporter):
        def send(self, batch: EncodedBatch) -> bool:
            if self._shutdown:
                return False
            return bool(self._client.export(batch.data).success)

    exporter = PreEncodedHttpLogExporter(**kwargs)
    if callable(getattr(getattr(exporter, "_client", None), "export", None)):
        return exporter
    _discard(exporter)
    return None


def _discard(exporter: Any) -> None:
    try:
        exporter.shutdown()
    except Exception:  # noqa: BLE001, S110 - a half-usable exporter may fail to shut down; it sent nothing
        pass


class WireLogSink:
    """Encodes drained records and sends them in requests of at most ``max_bytes``, settling each request in
    ``tally``."""

    def __init__(self, exporter: Any, encoder: LogEncoder, max_bytes: int, tally: Tally) -> None:
        self.exporter = exporter
        self.encoder = encoder
        self.max_bytes = max_bytes
        self.tally = tally
        self._closed = False

    def export(self, records: Iterable[WireRecord], count: int) -> None:
        """Send ``records``, ``count`` of them, accepted into the tally before the first is encoded: records still
        waiting to be encoded when the process exits are counted as undelivered."""
        self.tally.accept(count)
        by_scope: dict[str, list[bytes]] = {}
        size = count = 0
        for record in records:
            encoded = self.encoder.record(record)
            if count and size + len(encoded) > self.max_bytes:
                self._send(by_scope, count)
                by_scope, size, count = {}, 0, 0
            by_scope.setdefault(record.site.scope, []).append(encoded)
            size += len(encoded)
            count += 1
        if count:
            self._send(by_scope, count)

    def _send(self, by_scope: Mapping[str, Sequence[bytes]], count: int) -> None:
        try:
            succeeded = self.exporter.send(EncodedBatch(self.encoder.request(by_scope), count))
        except Exception:  # noqa: BLE001 - a transport error is a failed export, counted like one
            succeeded = False
        self.tally.settle(count, succeeded)

    def after_fork_in_child(self) -> None:
        """gRPC channels do not survive fork (gRPC's fork support is off by default): give the child a new one.
        The inherited channel is left alone; closing it would touch the parent's connection."""
        reconnect = getattr(self.exporter, "_initialize_channel_and_stub", None)
        if reconnect is not None:
            try:
                reconnect()
            except Exception:  # noqa: BLE001 - the child then exports through the inherited channel, as before
                pass

    def shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        """Shut the exporter down, once; called early, it interrupts a send waiting in retries."""
        if not self._closed:
            self._closed = True
            self.exporter.shutdown()
