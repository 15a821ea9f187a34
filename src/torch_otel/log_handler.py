"""The hot path: a logging handler on torch's loggers that captures a record and queues it, nothing more."""

from __future__ import annotations

import logging
from collections import deque
from contextvars import ContextVar
from typing import Any, Callable, NamedTuple

from opentelemetry import context as otel_context

# Set on the bridge's own export thread so anything it logs can never loop back into the queue.
exporting: ContextVar[bool] = ContextVar("torch_otel_exporting", default=False)


class Component(NamedTuple):
    """A registered torch logger and the names it is exported under."""

    scope: str
    alias: str


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
    exc_info: Any
    trace_extras: Any  # (metadata, payload) of a TORCH_TRACE record, else None
    message: str
    component: Component
    compile_key: Any  # (CompileId, attempt) while torch compiles, else None
    context: otel_context.Context


_new_queued_record = tuple.__new__  # builds a QueuedRecord without the Python-level __new__ of a NamedTuple


class RecordQueue:
    """A bounded FIFO that drops (and counts) new records when full instead of blocking or growing. It calls
    ``arrived`` when a record lands in an empty queue and ``wake`` when the queue reaches ``wake_at``."""

    def __init__(self, capacity: int, wake_at: int, wake: Callable[[], None], arrived: Callable[[], None]) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._items: deque[QueuedRecord] = deque()
        self._wake_at = wake_at
        self._wake = wake
        self._arrived = arrived

    def put(self, item: QueuedRecord) -> None:
        size = len(self._items)
        if size >= self.capacity:
            self.dropped += 1
            return
        self._items.append(item)
        if size == 0:
            self._arrived()
        elif size + 1 == self._wake_at:
            self._wake()

    def drain(self) -> list[QueuedRecord]:
        items = self._items
        taken = []
        while items:
            taken.append(items.popleft())
        return taken

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
            self._queue.put(_new_queued_record(QueuedRecord, (
                record.name, record.levelno, record.levelname, record.pathname, record.lineno, record.funcName,
                record.created, record.exc_info, None if metadata is None else (metadata, fields.get("payload")),
                message, self.component, self._current_compile(), otel_context.get_current(),
            )))
        except Exception:  # noqa: BLE001 - the bridge must never raise into torch
            self._queue.dropped += 1
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def flush(self) -> None:
        """logging.shutdown calls this at exit; the bridge flushes itself, so never block here."""

