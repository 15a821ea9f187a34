"""The embedded default: every signal written to one local file in the OTLP JSON file format (JSON Lines, one
Export*ServiceRequest per line), encoded with OpenTelemetry's own OTLP proto encoders and protobuf's JSON tools.

The official ``opentelemetry-exporter-otlp-json-file`` package (0.66b1) pins ``opentelemetry-exporter-otlp-common``
to a release the current OTLP exporters (1.45.2) conflict with, so it cannot be installed beside them."""

from __future__ import annotations

import base64
import datetime
import json
import os
import threading
from pathlib import Path
from typing import Any, Sequence

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_ID_FIELDS = {"traceId", "spanId", "parentSpanId"}


def default_path(directory: str | os.PathLike[str] = ".") -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(directory) / f"torch-otel-{stamp}-{os.getpid()}.jsonl"


def _hex_ids(value: Any) -> Any:
    """OTLP JSON spells trace and span ids as hex; protobuf's JSON mapping spells bytes as base64."""
    if isinstance(value, dict):
        return {key: base64.b64decode(item).hex() if key in _ID_FIELDS and isinstance(item, str) else _hex_ids(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    return value


def otlp_json_line(message: Any) -> str:
    as_dict = json_format.MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(_hex_ids(as_dict), separators=(",", ":"))


class JsonLinesFile:
    """One file shared by the three exporters; a lock keeps every request on its own line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the last exporter
        self._lock = threading.Lock()
        self._users = 0

    def write_line(self, line: str) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def acquire(self) -> JsonLinesFile:
        self._users += 1
        return self

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            with self._lock:
                self._file.close()


class OtlpJsonSpanExporter(SpanExporter):
    def __init__(self, sink: JsonLinesFile) -> None:
        self._sink = sink.acquire()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self._sink.write_line(otlp_json_line(encode_spans(spans)))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._sink.release()


class OtlpJsonLogExporter(LogRecordExporter):
    def __init__(self, sink: JsonLinesFile) -> None:
        self._sink = sink.acquire()

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self._sink.write_line(otlp_json_line(encode_logs(batch)))
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self._sink.release()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    def __init__(self, sink: JsonLinesFile) -> None:
        super().__init__()
        self._sink = sink.acquire()

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self._sink.write_line(otlp_json_line(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._sink.release()
