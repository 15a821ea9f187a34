"""Attaches the log handler to every logger torch configured, keeps it attached across torch's log re-inits,
and runs the background thread that hands queued records to OpenTelemetry."""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry._logs import LoggerProvider

from torch_otel import catalog
from torch_otel.capture import torch_internals
from torch_otel.capture.log_handler import (
    Component,
    RecordQueue,
    TorchLogHandler,
    TraceIdFilteredHandler,
    exporting,
)
from torch_otel.capture.torch_import import torch_version
from torch_otel.config.settings import Settings
from torch_otel.exporters.otlp_wire import WireLogSink
from torch_otel.signals.log_records import LogRecordConverter
from torch_otel.signals.redaction import Redactor

_EXPORT_INTERVAL_S = 0.2
_MAX_DEFERRED_TICKS = 10  # export at least every 2 s, burst or not
_FORK_WAIT_S = 0.5
_warn = logging.getLogger("torch_otel").warning


class LogBridge:
    """Owns the handlers, the queue and the export thread. ``start`` and ``stop`` are exact inverses."""

    def __init__(
        self, logger_provider: LoggerProvider, settings: Settings, wire_sink: WireLogSink | None = None
    ) -> None:
        self._wire_sink = wire_sink
        self._provider = logger_provider
        self._settings = settings
        # Waking the export thread in the middle of a burst makes it fight the logging thread for the GIL (about
        # 3 µs a record here), so the tick exports once a burst is over and the wake-up at 3/4 full only keeps the
        # queue from overflowing: a quarter of it is ample headroom, since a drain empties it in a millisecond.
        self._queue = RecordQueue(
            settings.queue_size,
            max(1, settings.queue_size * 3 // 4),
            self._wake,
            self._arrived,
            settings.queue_bytes,
            settings.max_body_bytes,
        )
        self._current_compile, compile_id_text = torch_internals.compile_readers()
        self._trace_id_filter = torch_internals.trace_id_filter_check(self._current_compile, compile_id_text)
        self._converter = LogRecordConverter(
            logger_provider,
            torch_version(),
            settings.max_body_bytes,
            torch_internals.logger_artifact,
            compile_id_text,
            Redactor(settings.redact_paths, settings.redact_code),
        )
        self._handlers: dict[str, TorchLogHandler] = {}
        self._removed_stderr: list[tuple[logging.Logger, logging.Handler]] = []
        self._patched: list[torch_internals.Patch] = []
        self._export_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flusher: _Flush | None = None
        self._wakeup = threading.Event()  # the queue is 3/4 full, or the bridge stops: export now
        self._arrival = threading.Event()  # a record landed in an empty queue: start the export ticks
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.emitted = 0
        self.export_errors = 0
        self.in_hand = 0  # drained, not yet handed to the SDK logger (without the fast path)
        self._conversion_failures = 0
        # What a multiprocessing worker runs on its way out (it leaves through os._exit, skipping atexit).
        # `torch-otel run` replaces it with its own bounded finish of every signal.
        self.at_worker_exit: Callable[[], None] = self._flush_in_worker_exit

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._patched = torch_internals.after_init_logs(self._reattach)
        self.attach()
        self._stopping = False
        self._start_thread()
        _register_fork_handler(self)
        # Runs in multiprocessing children after their finalizer registry is reset, so the finalizer survives.
        multiprocessing.util.register_after_fork(self, _flush_at_worker_exit)

    def stop(self) -> None:
        """Flush, stop the export thread and detach, within TORCH_OTEL_SHUTDOWN_TIMEOUT in all."""
        deadline = time.monotonic() + self._settings.shutdown_timeout
        self.flush(self._settings.shutdown_timeout)
        self._stopping = True
        self._wakeup.set()
        self._arrival.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
            self._thread = None
        for patch in reversed(self._patched):
            torch_internals.unwrap(patch)
        self._patched = []
        self._detach()

    # -- attaching to torch ----------------------------------------------------------------------------
    def attach(self) -> None:
        """Put a handler (last, after torch's own) on every registered torch logger."""
        qnames, aliases = torch_internals.registered_loggers()
        for qname in qnames:
            logger = logging.getLogger(qname)
            handler = self._handlers.get(qname)
            if handler is None:
                component = Component(qname, catalog.component_of_qname(qname, aliases))
                handler = self._handlers[qname] = self._log_handler(component)
            if handler in logger.handlers:
                logger.removeHandler(handler)
            if not self._settings.torch_stderr:
                self._remove_torch_stderr(logger)
            logger.addHandler(handler)
        trace_log = torch_internals.structured_trace_logger() if self._settings.structured else None
        if trace_log is not None:
            self._attach_structured_trace(trace_log)

    def _log_handler(self, component: Component) -> TorchLogHandler:
        """The handler for a torch logger: under TORCH_LOGS_TRACE_ID_FILTER, one that exports only what torch's own
        handlers print. Only torch's log records are filtered: torch-otel's compile spans, metrics and events
        (``pytorch.recompile``, ``pytorch.graph_break``, ``pytorch.compile.start``) are not torch log output and stay
        complete, and so do TORCH_TRACE records, which torch's trace handler never filters."""
        if self._trace_id_filter is None:
            return TorchLogHandler(component, self._queue, self._current_compile)
        return TraceIdFilteredHandler(component, self._queue, self._current_compile, self._trace_id_filter)

    def _attach_structured_trace(self, trace_log: logging.Logger) -> None:
        handler = self._handlers.get(trace_log.name)
        if handler is None:
            # Unfiltered: torch's own trace handler formats with TorchLogsFormatter(trace=True), which has no filter.
            component = Component(catalog.STRUCTURED_TRACE_SCOPE, catalog.STRUCTURED_TRACE_COMPONENT)
            handler = self._handlers[trace_log.name] = TorchLogHandler(component, self._queue, self._current_compile)
        if handler not in trace_log.handlers:
            trace_log.addHandler(handler)

    def _remove_torch_stderr(self, logger: logging.Logger) -> None:
        for handler in list(logger.handlers):
            if torch_internals.is_torch_stderr_handler(handler):
                logger.removeHandler(handler)
                self._removed_stderr.append((logger, handler))

    def _detach(self) -> None:
        for qname, handler in self._handlers.items():
            logging.getLogger(qname).removeHandler(handler)
        self._handlers.clear()
        for logger, stderr_handler in self._removed_stderr:
            if torch_internals.is_torch_handler(stderr_handler) and stderr_handler not in logger.handlers:
                logger.addHandler(stderr_handler)
        self._removed_stderr.clear()

    def _reattach(self) -> None:
        """After torch re-applied its log settings (which drops its old handlers and adds new ones)."""
        self._removed_stderr.clear()
        try:
            self.attach()
        except Exception as error:  # noqa: BLE001 - never raise into torch
            _warn("torch-otel: could not re-attach to torch's loggers: %s", error)

    # -- exporting -------------------------------------------------------------------------------------
    def _wake(self) -> None:
        self._wakeup.set()

    def _arrived(self) -> None:
        self._arrival.set()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="torch-otel-export", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        exporting.set(True)
        seen, deferred = 0, 0
        while not self._stopping:
            if not len(self._queue):
                # Idle: no timer wake-ups (each one takes the GIL from the program) until a record arrives.
                self._arrival.wait()
                self._arrival.clear()
                continue
            full = self._wakeup.wait(_EXPORT_INTERVAL_S)
            self._wakeup.clear()
            queued = len(self._queue)
            # While torch is still logging a burst (a compile at +dynamo emits thousands of records), exporting
            # would compete with it for the GIL; wait for the burst to end, up to a bound.
            if full or queued <= seen or deferred >= _MAX_DEFERRED_TICKS:
                self._export_pending()
                seen, deferred = 0, 0
            else:
                seen, deferred = queued, deferred + 1

    def _prepared(self, items: list, tally: Any) -> Any:
        for item in items:
            try:
                prepared = self._converter.prepare(item)
            except Exception:  # noqa: BLE001 - one bad record must not stop the rest
                self.export_errors += 1
                tally.lose()
                continue
            self.emitted += 1
            yield prepared

    def drain(self) -> None:
        """Hand every queued record to the SDK now (without waiting for the SDK to export them)."""
        self._export_pending()

    def _export_pending(self) -> None:
        with self._export_lock:
            token = exporting.set(True)
            try:
                items = self._queue.drain()
                try:
                    self._export(items)
                finally:
                    self._queue.release(items)
            finally:
                exporting.reset(token)

    def _export(self, items: list) -> None:
        if self._wire_sink is not None:
            self._wire_sink.export(self._prepared(items, self._wire_sink.tally), len(items))
            return
        self.in_hand = len(items)
        for item in items:
            try:
                self._converter.emit(item)
                self.emitted += 1
            except Exception:  # noqa: BLE001 - one bad record must not stop the rest
                self.export_errors += 1
                self._conversion_failures += 1
            self.in_hand -= 1

    def flush(self, timeout: float | None = None) -> bool:
        """Export every queued record and flush the SDK's log processors; True if that finished within
        ``timeout`` seconds (default TORCH_OTEL_SHUTDOWN_TIMEOUT). The caller never waits longer: the flush runs on
        a daemon thread, which a stuck send (a collector that never answers) may keep busy after the caller has
        gone on; a later flush then waits for that one instead of starting another."""
        timeout = self._settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        with self._flush_lock:
            flusher = self._flusher
            if flusher is None or not flusher.is_alive():
                flusher = self._flusher = _Flush(self, time.monotonic() + timeout)
        return flusher.wait(timeout)

    def _flush_now(self, deadline: float) -> bool:
        self._export_pending()
        remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
        force_flush = getattr(self._provider, "force_flush", None)
        return bool(force_flush(remaining_ms)) if force_flush else True

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def undelivered(self) -> int:
        """Records the bridge took and never passed on: still queued, drained but not yet handed to the SDK, or
        failed to convert on their way to it. (On the fast path, the sink's tally counts what it was handed.)"""
        return len(self._queue) + self.in_hand + self._conversion_failures

    @property
    def truncated(self) -> int:
        return self._converter.truncated

    def _before_fork(self) -> None:
        # Fork between exports, not in the middle of one: a request half-sent on an inherited gRPC channel can
        # arrive twice. Bounded, so a stalled export never holds up DataLoader workers.
        self._held_for_fork = self._export_lock.acquire(timeout=_FORK_WAIT_S)

    def _after_fork_in_parent(self) -> None:
        if getattr(self, "_held_for_fork", False):
            self._held_for_fork = False
            self._export_lock.release()

    def _after_fork_in_child(self) -> None:
        # The parent exports what it queued; the child starts empty so nothing is sent twice.
        self._held_for_fork = False
        self._queue.drain()
        self._queue.dropped = self._converter.truncated = 0
        self.in_hand = self.export_errors = self._conversion_failures = self.emitted = 0
        if self._wire_sink is not None:
            self._wire_sink.after_fork_in_child()
        self._export_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flusher = None
        self._wakeup = threading.Event()
        self._arrival = threading.Event()
        if self._thread is not None and not self._stopping:
            self._start_thread()

    def _flush_in_worker_exit(self) -> None:
        """multiprocessing children (DataLoader workers) leave through os._exit, skipping atexit, but run
        multiprocessing's finalizers first. Kept short: DataLoader terminates workers that linger."""
        from torch_otel.exporters.sdk_setup import run_bounded

        budget = min(1.0, self._settings.shutdown_timeout)
        run_bounded({"logs": lambda: self.flush(budget)}, seconds=budget)


class _Flush:
    """One flush of a bridge, on its own daemon thread."""

    def __init__(self, bridge: LogBridge, deadline: float) -> None:
        self.succeeded = False
        self._thread = threading.Thread(target=self._run, args=(bridge, deadline), name="torch-otel-flush", daemon=True)
        self._thread.start()

    def _run(self, bridge: LogBridge, deadline: float) -> None:
        try:
            self.succeeded = bridge._flush_now(deadline)
        except Exception:  # noqa: BLE001 - a flush that fails is a flush that did not finish
            self.succeeded = False

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive() and self.succeeded


_fork_targets: weakref.WeakSet[LogBridge] = weakref.WeakSet()
_fork_hook_installed = False


def _register_fork_handler(bridge: LogBridge) -> None:
    global _fork_hook_installed
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_reinit_after_fork
        )
        _fork_hook_installed = True
    _fork_targets.add(bridge)


def _flush_at_worker_exit(bridge: LogBridge) -> None:
    if not bridge._stopping:
        multiprocessing.util.Finalize(bridge, bridge.at_worker_exit, exitpriority=100)


def _before_fork() -> None:
    for bridge in list(_fork_targets):
        bridge._before_fork()


def _after_fork_in_parent() -> None:
    for bridge in list(_fork_targets):
        bridge._after_fork_in_parent()


def _reinit_after_fork() -> None:
    for bridge in list(_fork_targets):
        bridge._after_fork_in_child()
