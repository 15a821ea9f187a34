"""Keeps every log export request under a byte budget, so no batch of capped artifacts exceeds the 4 MiB gRPC limit."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from torch_otel.exporters.delivery import Tally
from torch_otel.exporters.fork_safety import ForkSafeExporter

_PER_RECORD_OVERHEAD = 256


def estimated_size(readable: Any) -> int:
    record = readable.log_record
    body = record.body
    size = _PER_RECORD_OVERHEAD + (len(body) * 4 if isinstance(body, str) and len(body) < 4096 else 0)
    if isinstance(body, str) and len(body) >= 4096:
        size += len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))
    for key, value in (record.attributes or {}).items():
        size += len(key) + (len(value) if isinstance(value, str) else 16)
    return size


def split_by_bytes(batch: Sequence[Any], max_bytes: int) -> Iterator[Sequence[Any]]:
    start, used = 0, 0
    for index, readable in enumerate(batch):
        size = estimated_size(readable)
        if index > start and used + size > max_bytes:
            yield batch[start:index]
            start, used = index, 0
        used += size
    if start < len(batch):
        yield batch[start:]


class ByteBudgetLogExporter(ForkSafeExporter, LogRecordExporter):
    """Wraps a log exporter and sends each batch as as many requests as the byte budget requires, settling each
    request in the logs tally."""

    def __init__(self, build: Callable[[], LogRecordExporter], max_bytes: int, tally: Tally) -> None:
        super().__init__(build)
        self.max_bytes = max_bytes
        self._tally = tally

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        result = LogRecordExportResult.SUCCESS
        for chunk in split_by_bytes(batch, self.max_bytes):
            try:
                succeeded = self.inner.export(chunk) == LogRecordExportResult.SUCCESS
            except Exception:  # noqa: BLE001 - an exporter error is a failed export, counted like one
                succeeded = False
            self._tally.settle(len(chunk), succeeded)
            if not succeeded:
                result = LogRecordExportResult.FAILURE
        return result

    def shutdown(self) -> None:
        self.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
