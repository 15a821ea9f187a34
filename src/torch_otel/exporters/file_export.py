"""The embedded default: every signal written to one local file in the OTLP JSON file format (JSON Lines, one
Export*ServiceRequest per line), encoded with OpenTelemetry's own OTLP proto encoders and protobuf's JSON tools.

The official ``opentelemetry-exporter-otlp-json-file`` package (0.66b1) pins ``opentelemetry-exporter-otlp-common``
to a release the current OTLP exporters (1.45.2) conflict with, so it cannot be installed beside them."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from torch_otel.console import say

_ID_FIELDS = {"traceId", "spanId", "parentSpanId"}


def _hex_ids(value: Any) -> Any:
    """OTLP JSON spells trace and span ids as hex; protobuf's JSON mapping spells bytes as base64."""
    if isinstance(value, dict):
        return {
            key: base64.b64decode(item).hex() if key in _ID_FIELDS and isinstance(item, str) else _hex_ids(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    return value


def otlp_json_line(message: Any) -> str:
    as_dict = json_format.MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(_hex_ids(as_dict), separators=(",", ":"))


class JsonLinesFile:
    """One file shared by the three exporters of a process, and by every process of a `torch-otel run`. It is
    created by the first line written, so a process with nothing to say leaves no file. Each line goes out in one
    ``write`` on a descriptor opened with O_APPEND: on a local file system, lines from different processes never
    interleave (the kernel holds the file's lock for the whole write)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._closed = False
        self._reported = False
        self._users = 0
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it; the descriptor is shared as it is

    def write_line(self, line: str) -> bool:
        """Append one line; False if it could not be written (a full disk, a vanished directory), which is said
        once on stderr and counted by the caller as a failed export."""
        data = (line + "\n").encode("utf-8")
        with self._lock:
            if self._closed:
                return False
            try:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as error:
                self._report(error)
                return False
        return True

    def _report(self, error: OSError) -> None:
        if not self._reported:
            self._reported = True
            say(
                f"cannot write to {self.path} ({error.strerror or error}); what is not written is counted as "
                "not delivered at exit."
            )

    def acquire(self) -> JsonLinesFile:
        self._users += 1
        return self

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            with self._lock:
                self._closed = True
                if self._fd is not None:
                    try:
                        os.close(self._fd)
                    except OSError:
                        pass
                    self._fd = None


class OtlpJsonSpanExporter(SpanExporter):
    def __init__(self, sink: JsonLinesFile) -> None:
        self._sink = sink.acquire()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        written = self._sink.write_line(otlp_json_line(encode_spans(spans)))
        return SpanExportResult.SUCCESS if written else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._sink.release()


class OtlpJsonLogExporter(LogRecordExporter):
    def __init__(self, sink: JsonLinesFile) -> None:
        self._sink = sink.acquire()

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        written = self._sink.write_line(otlp_json_line(encode_logs(batch)))
        return LogRecordExportResult.SUCCESS if written else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self._sink.release()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    def __init__(self, sink: JsonLinesFile) -> None:
        super().__init__()
        self._sink = sink.acquire()

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        written = self._sink.write_line(otlp_json_line(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS if written else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._sink.release()
