"""The hot path: a logging handler on torch's loggers that captures a record and queues it, nothing more."""

from __future__ import annotations

import logging
import traceback
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from sys import getsizeof
from typing import Any, NamedTuple

from opentelemetry import context as otel_context

# Set on the bridge's own export thread so anything it logs can never loop back into the queue.
exporting: ContextVar[bool] = ContextVar("torch_otel_exporting", default=False)


class Component(NamedTuple):
    """A registered torch logger and the names it is exported under."""

    scope: str
    alias: str


class CapturedException(NamedTuple):
    """An exception's type, message and formatted traceback, each cut to the body limit."""

    type: str
    message: str
    stacktrace: str


class CutText(str):
    """A message cut to the body limit when it was queued; ``original_size`` is its full size in UTF-8 bytes."""

    original_size: int


def cut_text(text: str, max_chars: int) -> str:
    """``text`` if it has at most ``max_chars`` characters, else its first ``max_chars`` as a ``CutText``. A string
    longer than N characters is longer than N bytes in UTF-8, so this never cuts what the exact byte cap at export
    would keep, and the export thread never sees more than ``max_chars`` characters."""
    if len(text) <= max_chars:
        return text
    cut = CutText(text[:max_chars])
    cut.original_size = len(text.encode("utf-8", "surrogatepass"))
    return cut


def capture_exception(record: logging.LogRecord, max_chars: int) -> CapturedException:
    """The record's exception as text; torch's stderr formatter (which runs first) usually left it in exc_text."""
    exc_type, exc_value, exc_traceback = record.exc_info  # type: ignore[misc]  # called only when exc_info is set
    stacktrace = record.exc_text or "".join(traceback.format_exception(exc_type, exc_value, exc_traceback))
    return CapturedException(
        exc_type.__qualname__ if exc_type else "", cut_text(str(exc_value), max_chars), cut_text(stacktrace, max_chars)
    )


def held_bytes(item: QueuedRecord) -> int:
    """What a queued record holds in memory, counted against TORCH_OTEL_QUEUE_BYTES: its strings' own sizes plus
    the record itself."""
    size = _RECORD_OVERHEAD + getsizeof(item.message)
    exception = item.exception
    if exception is not None:
        size += getsizeof(exception.message) + getsizeof(exception.stacktrace)
    if item.trace_extras is not None:
        size += getsizeof(item.trace_extras[1] or "")
    return size


class QueuedRecord(NamedTuple):
    """The fields of a LogRecord that are exported; the LogRecord itself is not kept, so it is freed at once
    instead of aging in the garbage collector's generations while it waits in the queue."""

    name: str
    levelno: int
    levelname: str
    pathname: str
    lineno: int
    func_name: str
    created: float
    exception: CapturedException | None  # formatted when queued, so no traceback keeps frames (and their locals) alive
    trace_extras: Any  # (metadata, payload) of a TORCH_TRACE record, else None
    message: str
    component: Component
    compile_key: Any  # (CompileId, attempt) while torch compiles, else None
    context: otel_context.Context


_RECORD_OVERHEAD = 512  # the tuple, its small fields and the OTel context it points to
_new_queued_record = tuple.__new__  # builds a QueuedRecord without the Python-level __new__ of a NamedTuple


class RecordQueue:
    """A FIFO bounded in records (``capacity``) and in bytes (``max_bytes``, records being exported included) that
    drops (and counts) new records when full instead of blocking or growing. Bodies longer than ``max_body_chars``
    are cut before they are queued. It calls ``arrived`` when a record lands in an empty queue and ``wake`` when
    the queue reaches ``wake_at`` records or 3/4 of its bytes."""

    def __init__(
        self,
        capacity: int,
        wake_at: int,
        wake: Callable[[], None],
        arrived: Callable[[], None],
        max_bytes: int = 32 << 20,
        max_body_chars: int = 64 << 10,
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.max_body_chars = max_body_chars
        self.dropped = 0
        self._items: deque[QueuedRecord] = deque()
        self._wake_at = wake_at
        self._wake_at_bytes = max_bytes * 3 // 4
        self._wake = wake
        self._arrived = arrived
        # Added to by logging threads, released by the export thread: each counter has one kind of writer.
        self._added_bytes = 0
        self._released_bytes = 0

    def put(self, item: QueuedRecord) -> None:
        size = len(self._items)
        held = held_bytes(item)
        in_use = self._added_bytes - self._released_bytes + held
        if size >= self.capacity or in_use > self.max_bytes:
            self.dropped += 1
            return
        self._added_bytes += held
        self._items.append(item)
        if size == 0:
            self._arrived()
        elif size + 1 == self._wake_at or in_use >= self._wake_at_bytes > in_use - held:
            self._wake()

    def drain(self) -> list[QueuedRecord]:
        """Take every queued record; their bytes stay counted until ``release``d after their export."""
        items = self._items
        taken = []
        while items:
            taken.append(items.popleft())
        return taken

    def release(self, items: list[QueuedRecord]) -> None:
        self._released_bytes += sum(map(held_bytes, items))

    @property
    def bytes_held(self) -> int:
        return self._added_bytes - self._released_bytes

    def __len__(self) -> int:
        return len(self._items)


class TorchLogHandler(logging.Handler):
    """One per registered torch logger; its component is fixed, so emit does no lookups."""

    def __init__(self, component: Component, queue: RecordQueue, current_compile: Callable[[], Any]) -> None:
        super().__init__(logging.NOTSET)
        self.component = component
        self._queue = queue
        self._current_compile = current_compile

    def handle(self, record: logging.LogRecord) -> bool:
        # Skips Handler.handle's lock and filter pass: the queue is safe to append to from any thread.
        if exporting.get():
            return False
        try:
            fields = record.__dict__
            message = fields.get("message")
            if message is None:
                message = record.getMessage()
            metadata = fields.get("metadata")
            queue = self._queue
            if len(message) > queue.max_body_chars:
                message = cut_text(message, queue.max_body_chars)
            if metadata is not None:
                payload = fields.get("payload")
                metadata = (metadata, cut_text(payload, queue.max_body_chars) if payload else payload)
            queue.put(
                _new_queued_record(
                    QueuedRecord,
                    (
                        record.name,
                        record.levelno,
                        record.levelname,
                        record.pathname,
                        record.lineno,
                        record.funcName,
                        record.created,
                        None if record.exc_info is None else capture_exception(record, queue.max_body_chars),
                        metadata,
                        message,
                        self.component,
                        self._current_compile(),
                        otel_context.get_current(),
                    ),
                )
            )
        except Exception:  # noqa: BLE001 - the bridge must never raise into torch
            self._queue.dropped += 1
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def flush(self) -> None:
        """logging.shutdown calls this at exit; the bridge flushes itself, so never block here."""


class TraceIdFilteredHandler(TorchLogHandler):
    """A ``TorchLogHandler`` that queues only the records ``passes`` (torch's TORCH_LOGS_TRACE_ID_FILTER, see
    ``torch_internals.trace_id_filter_check``) lets through, so a filtered record costs no queue bytes. Used only
    while a filter is active, so the unfiltered handler pays nothing for it."""

    def __init__(
        self,
        component: Component,
        queue: RecordQueue,
        current_compile: Callable[[], Any],
        passes: Callable[[logging.LogRecord], bool],
    ) -> None:
        super().__init__(component, queue, current_compile)
        self._passes = passes

    def handle(self, record: logging.LogRecord) -> bool:
        try:
            if not self._passes(record):
                return False
        except Exception:  # noqa: BLE001 - the bridge must never raise into torch
            self._queue.dropped += 1
            return False
        return super().handle(record)
