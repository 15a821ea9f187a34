"""The long-compile watchdog: a WARNING record ``pytorch.compile.slow`` while a compile is still running past
TORCH_OTEL_SLOW_COMPILE, and again each time its run time doubles (threshold, 2x, 4x, ...).

A CompileListener fed by the same hooks as the spans. The compiling thread only records, without a lock except at
a compile root's start and end, which phases it has open and since when. One daemon thread, started by the first
compile, sleeps on a Condition until the nearest deadline of the compiles running (indefinitely while none runs);
when one is due it reads the compiling thread's Python stack (``sys._current_frames()``: read-only, the compiling
thread is never stopped or signalled) and emits the record. It never raises, and ``stop`` (on uninstrument) ends it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber

from torch_otel import catalog
from torch_otel.capture.torch_hooks import CompileListener, FunctionIdentity, Phase
from torch_otel.signals.log_records import cap_body, valid_utf8
from torch_otel.signals.redaction import Redactor

_log = logging.getLogger("torch_otel")

THREAD_NAME = "torch-otel-watchdog"
_JOIN_SECONDS = 2.0


@dataclass
class _Running:
    """A compile root running on one thread. ``phases`` (the open phases, root first, with when each started) is
    replaced whole by the compiling thread, and read by the watchdog thread."""

    thread_id: int
    thread_name: str
    compile_id: str | None
    function: FunctionIdentity | None
    label: str
    started: float  # the watchdog clock's reading
    phases: tuple[tuple[str, float], ...]
    context: Any  # the OTel context current once every listener before this one started the compile
    threshold: float  # the next run time that warns: the threshold, then twice as long each time
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = self.started + self.threshold


@dataclass(frozen=True)
class _Due:
    running: _Running
    now: float
    threshold: float
    phases: tuple[tuple[str, float], ...]


_WATCHDOGS: weakref.WeakSet[CompileWatchdog] = weakref.WeakSet()


class CompileWatchdog(CompileListener):
    """A CompileListener that warns about compiles running longer than ``threshold`` seconds, while they run."""

    def __init__(
        self,
        threshold: float,
        event_logger: Any,
        redactor: Redactor | None = None,
        max_body_bytes: int = 64 << 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._event_logger = event_logger
        self._redactor = redactor or Redactor()
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._reset()
        _WATCHDOGS.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._running: dict[int, _Running] = {}
        self._thread: threading.Thread | None = None
        self._stopped = False
        # The deadline the thread sleeps until; -inf while it is awake (it looks at every compile before sleeping).
        self._wakes_at = -math.inf

    @property
    def thread(self) -> threading.Thread | None:
        """The watchdog thread, once a compile has started it."""
        return self._thread

    # -- the compiling thread's side: record, never wait on the watchdog ----------------------------------------
    def phase_started(self, phase: Phase) -> None:
        now = self._clock()
        thread_id = threading.get_ident()
        if phase.depth:
            running = self._running.get(thread_id)
            if running is not None:
                running.phases = running.phases[: phase.depth] + ((phase.name, now),)
            return
        running = _Running(
            thread_id,
            threading.current_thread().name,
            phase.compile_id,
            phase.function,
            phase.label,
            now,
            ((phase.name, now),),
            otel_context.get_current(),
            self._threshold,
        )
        with self._cond:
            if self._stopped:
                return
            self._running[thread_id] = running
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self._thread.start()
            elif running.deadline < self._wakes_at:
                self._cond.notify()

    def phase_ended(self, phase: Phase, end_ns: int) -> None:
        thread_id = threading.get_ident()
        if phase.depth:
            running = self._running.get(thread_id)
            if running is not None:
                running.phases = running.phases[: phase.depth]
            return
        # Not woken: if it sleeps for this compile's deadline, it wakes then, finds nothing due and sleeps on.
        with self._cond:
            self._running.pop(thread_id, None)

    def stop(self) -> None:
        """End the watchdog thread (uninstrument); compiles started afterwards are not watched."""
        with self._cond:
            self._stopped = True
            self._running.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_SECONDS)

    # -- the watchdog thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    due = self._wait_for_due()
                if due is None:
                    return
                for item in due:
                    try:
                        self._warn(item)
                    except Exception:  # noqa: BLE001 - one failed record, never the thread
                        _log.debug("torch-otel could not report a slow compile", exc_info=True)
        except BaseException:  # noqa: BLE001 - never raise, even at interpreter shutdown
            _log.debug("torch-otel watchdog stopped", exc_info=True)

    def _wait_for_due(self) -> list[_Due] | None:
        """Under the lock: sleep until a compile passes its deadline (None once stopped), then move every compile
        that passed it on to twice its threshold."""
        while not self._stopped:
            now = self._clock()
            nearest = min((running.deadline for running in self._running.values()), default=math.inf)
            if nearest <= now:
                due = []
                for running in self._running.values():
                    if running.deadline <= now:
                        due.append(_Due(running, now, running.threshold, running.phases))
                        while running.deadline <= now:  # a late wake still warns once, at the largest one passed
                            running.threshold *= 2
                            running.deadline = running.started + running.threshold
                return due
            self._wakes_at = nearest
            self._cond.wait(None if nearest == math.inf else nearest - now)
            self._wakes_at = -math.inf
        return None

    def _warn(self, due: _Due) -> None:
        running, now = due.running, due.now
        phase, phase_started = due.phases[-1] if due.phases else (running.label, running.started)
        elapsed, in_phase = now - running.started, now - phase_started
        attributes: dict[str, Any] = {
            catalog.ATTR_PHASE: phase,
            catalog.ATTR_OPEN_PHASES: [name for name, _ in due.phases],
            catalog.ATTR_PHASE_ELAPSED: round(in_phase, 3),
            catalog.ATTR_ELAPSED: round(elapsed, 3),
            catalog.ATTR_SLOW_THRESHOLD: due.threshold,
            catalog.ATTR_THREAD_ID: running.thread_id,
            catalog.ATTR_THREAD_NAME: valid_utf8(running.thread_name),
        }
        if running.compile_id is not None:
            attributes[catalog.ATTR_COMPILE_ID] = running.compile_id
        function = running.function
        if function is not None:
            attributes[catalog.ATTR_CODE_FUNCTION] = valid_utf8(self._redactor.text(function.function))
            attributes[catalog.ATTR_CODE_FILE] = valid_utf8(self._redactor.path(function.file))
            attributes[catalog.ATTR_CODE_LINE] = function.line
        what = attributes.get(catalog.ATTR_CODE_FUNCTION, "a frame")
        summary = (
            f"{running.label} of {what} (compile {running.compile_id or 'unknown'}) has run {elapsed:.1f} s "
            f"(TORCH_OTEL_SLOW_COMPILE passed: {due.threshold:g} s); in {phase} for {in_phase:.1f} s"
        )
        span = trace.get_current_span(running.context)
        if span.is_recording():
            span.add_event(catalog.EVENT_COMPILE_SLOW, attributes)
        body, original_size = self._body(summary, running)
        if original_size is not None:
            attributes[catalog.ATTR_TRUNCATED] = True
            attributes[catalog.ATTR_ORIGINAL_SIZE] = original_size
        self._event_logger.emit(
            timestamp=time.time_ns(),
            context=running.context,
            severity_number=SeverityNumber(catalog.otel_severity_number(logging.WARNING)),
            severity_text=catalog.severity_text(logging.WARNING),
            body=body,
            event_name=catalog.EVENT_COMPILE_SLOW,
            attributes={**attributes, catalog.ATTR_COMPONENT: "dynamo"},
        )

    def _body(self, summary: str, running: _Running) -> tuple[str, int | None]:
        """The summary and the compiling thread's stack (most recent call last), redacted; over the body cap, the
        outermost frames go first, so the frames torch is in now stay."""
        frame = sys._current_frames().get(running.thread_id)
        if frame is None:
            return cap_body(valid_utf8(summary), self._max_body_bytes)
        frames = [valid_utf8(self._redactor.text(text)) for text in traceback.format_stack(frame)]
        del frame
        head = f"{summary}\nStack of thread {valid_utf8(running.thread_name)} (most recent call last):\n"
        full = head + "".join(frames)
        size = len(full.encode("utf-8", "surrogatepass"))
        if size <= self._max_body_bytes:
            return full, None
        budget = self._max_body_bytes - len(head.encode("utf-8")) - 64
        kept: list[str] = []
        for text in reversed(frames):
            cost = len(text.encode("utf-8", "surrogatepass"))
            if cost > budget:
                break
            kept.append(text)
            budget -= cost
        omitted = f"  ... {len(frames) - len(kept)} outer frames omitted\n"
        body, _ = cap_body(head + omitted + "".join(reversed(kept)), self._max_body_bytes)
        return body, size


def _after_fork_in_child() -> None:
    """The parent's watchdog thread does not exist in a forked child, and its lock may have been held: start over
    (the child's next compile starts a thread of its own)."""
    for watchdog in list(_WATCHDOGS):
        stopped = watchdog._stopped
        watchdog._reset()
        watchdog._stopped = stopped


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
