"""Live compile events on real torch.compile runs (eager backends): ``pytorch.compile.start`` when a compile starts,
in the application span's context, and the watchdog's ``pytorch.compile.slow`` while a compile is still running."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator

import pytest
import torch
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import torch_otel
from torch_otel import catalog
from torch_otel.capture.torch_hooks import Phase
from torch_otel.config.settings import Settings, SettingsError
from torch_otel.instrumentor import TorchInstrumentor
from torch_otel.signals import watchdog as watchdog_module
from torch_otel.signals.redaction import Redactor
from torch_otel.signals.watchdog import CompileWatchdog

from inmemory import LogCapture
from torch_state import preserved_torch_logging


@pytest.fixture(autouse=True)
def clean_torch_state() -> Iterator[None]:
    with preserved_torch_logging():
        torch._dynamo.reset()
        yield


class _InternalErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_internal_errors() -> Iterator[None]:
    """No torch-otel hook, listener or watchdog failure may pass silently."""
    logger = logging.getLogger("torch_otel")
    handler, level = _InternalErrors(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not [f"{r.getMessage()}: {r.exc_info[1]!r}" for r in handler.records if r.exc_info]


class Pipeline:
    def __init__(self) -> None:
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.logs = LogCapture()
        self.tracer = self.tracer_provider.get_tracer("app")

    def events(self, name: str) -> list[Any]:
        return [r.log_record for r in self.logs.records() if r.log_record.event_name == name]

    def span(self, name: str) -> Any:
        (span,) = [s for s in self.span_exporter.get_finished_spans() if s.name == name]
        return span


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    pipeline = Pipeline()
    yield pipeline
    torch_otel.uninstrument()


def instrument(pipeline: Pipeline, settings: Settings) -> None:
    torch_otel.instrument(tracer_provider=pipeline.tracer_provider, logger_provider=pipeline.logs.provider,
                          settings=settings)


def watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == watchdog_module.THREAD_NAME]


def sleeping_backend(seconds: float):
    def slow_backend(graph_module, example_inputs):
        time.sleep(seconds)
        return graph_module.forward

    return slow_backend


def step(x):
    return torch.sin(x) * 2 + 1


# -- pytorch.compile.start ---------------------------------------------------------------------------------------
def test_start_record_carries_the_requests_trace_context_and_the_compiles_identity(pipeline, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    instrument(pipeline, Settings())
    with pipeline.tracer.start_as_current_span("request") as request:
        torch.compile(step, backend="eager")(torch.ones(3))
    (start,) = pipeline.events(catalog.EVENT_COMPILE_START)
    compile_span = pipeline.span("torch.compile")
    # The request's context, not the compile span's: the record says which request paid for the compile.
    assert (start.trace_id, start.span_id) == (request.get_span_context().trace_id, request.get_span_context().span_id)
    assert compile_span.parent.span_id == request.get_span_context().span_id
    # Emitted as the compile started: before the compile span ended, stamped with the span's start.
    assert start.timestamp == compile_span.start_time
    assert start.observed_timestamp < compile_span.end_time
    attributes = dict(start.attributes)
    assert attributes[catalog.ATTR_COMPILE_ID] == compile_span.attributes[catalog.ATTR_COMPILE_ID] == "0/0"
    for key in (catalog.ATTR_CODE_FUNCTION, catalog.ATTR_CODE_FILE, catalog.ATTR_CODE_LINE):
        assert attributes[key] == compile_span.attributes[key]
    assert attributes[catalog.ATTR_CODE_FUNCTION] == "step"
    assert attributes[catalog.ATTR_PHASE] == "dynamo"
    assert catalog.ATTR_RANK not in attributes
    assert start.severity_text == "INFO"


def test_start_record_carries_the_rank_torchrun_set(pipeline, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    instrument(pipeline, Settings())
    torch.compile(step, backend="eager")(torch.ones(3))
    (start,) = pipeline.events(catalog.EVENT_COMPILE_START)
    assert start.attributes[catalog.ATTR_RANK] == 3


def test_every_compile_root_starts_with_a_record(pipeline):
    instrument(pipeline, Settings())
    x = torch.ones(3, requires_grad=True)
    torch.compile(step, backend="aot_eager")(x).sum().backward()
    starts = pipeline.events(catalog.EVENT_COMPILE_START)
    assert [s.attributes[catalog.ATTR_PHASE] for s in starts] == ["dynamo", "entire_backward_compile"]


def test_no_start_records_without_spans(pipeline):
    instrument(pipeline, Settings(spans=False))
    torch.compile(step, backend="eager")(torch.ones(3))
    assert not pipeline.events(catalog.EVENT_COMPILE_START)


# -- pytorch.compile.slow ----------------------------------------------------------------------------------------
def test_a_compile_held_past_the_threshold_is_reported_while_it_runs_and_again_at_twice_it(pipeline, monkeypatch):
    monkeypatch.setenv("TORCH_OTEL_SLOW_COMPILE", "0.2")
    instrument(pipeline, Settings.from_env())
    with pipeline.tracer.start_as_current_span("request"):
        torch.compile(step, backend=sleeping_backend(1.0))(torch.ones(3))
    compile_span = pipeline.span("torch.compile")
    slow = pipeline.events(catalog.EVENT_COMPILE_SLOW)
    # 0.2 s, 0.4 s and 0.8 s into a compile of a bit over 1 s.
    assert [s.attributes[catalog.ATTR_SLOW_THRESHOLD] for s in slow] == [0.2, 0.4, 0.8]
    first, second = slow[0], slow[1]
    assert first.timestamp < compile_span.end_time and second.timestamp < compile_span.end_time
    assert first.timestamp - compile_span.start_time >= 0.2e9
    assert second.timestamp - compile_span.start_time >= 0.4e9
    assert second.timestamp - first.timestamp >= 0.15e9
    for record in slow:
        attributes = dict(record.attributes)
        assert record.severity_text == "WARNING" and record.severity_number.value == 13
        assert attributes[catalog.ATTR_PHASE] == "backend_compile"  # the innermost phase open: the backend runs
        assert attributes[catalog.ATTR_OPEN_PHASES][0] == "dynamo"
        assert attributes[catalog.ATTR_OPEN_PHASES][-1] == "backend_compile"
        assert 0 < attributes[catalog.ATTR_PHASE_ELAPSED] <= attributes[catalog.ATTR_ELAPSED]
        assert attributes[catalog.ATTR_ELAPSED] >= attributes[catalog.ATTR_SLOW_THRESHOLD]
        assert attributes[catalog.ATTR_COMPILE_ID] == "0/0"
        assert attributes[catalog.ATTR_CODE_FUNCTION] == "step"
        assert attributes[catalog.ATTR_CODE_LINE] == compile_span.attributes[catalog.ATTR_CODE_LINE]
        assert attributes[catalog.ATTR_THREAD_NAME] == threading.current_thread().name
        # The compiling thread's stack, most recent call last: the backend sleeping in it.
        body = str(record.body)
        assert "backend_compile" in body.splitlines()[0]
        assert "Stack of thread" in body and "in slow_backend" in body and "time.sleep(seconds)" in body
        assert body.rstrip().endswith("time.sleep(seconds)")
        # In the compile span's context, and on the span too.
        assert (record.trace_id, record.span_id) == (compile_span.context.trace_id, compile_span.context.span_id)
    assert [e.name for e in compile_span.events].count(catalog.EVENT_COMPILE_SLOW) == len(slow)


def test_a_fast_compile_is_not_reported_and_the_watchdog_sleeps_until_the_first_compile(pipeline):
    instrument(pipeline, Settings())
    assert TorchInstrumentor.watchdog is not None and TorchInstrumentor.watchdog.thread is None
    assert not watchdog_threads()
    torch.compile(step, backend="eager")(torch.ones(3))
    assert TorchInstrumentor.watchdog.thread is not None and TorchInstrumentor.watchdog.thread.is_alive()
    assert not pipeline.events(catalog.EVENT_COMPILE_SLOW)


def test_uninstrument_stops_the_watchdog_thread(pipeline):
    instrument(pipeline, Settings(slow_compile=0.2))
    torch.compile(step, backend="eager")(torch.ones(3))
    (thread,) = watchdog_threads()
    torch_otel.uninstrument()
    assert not thread.is_alive() and not watchdog_threads()
    assert TorchInstrumentor.watchdog is None


def test_off_disables_the_watchdog_entirely(pipeline, monkeypatch):
    monkeypatch.setenv("TORCH_OTEL_SLOW_COMPILE", "off")
    settings = Settings.from_env()
    assert settings.slow_compile is None
    instrument(pipeline, settings)
    torch.compile(step, backend=sleeping_backend(0.3))(torch.ones(3))
    assert TorchInstrumentor.watchdog is None
    assert not watchdog_threads()
    assert not pipeline.events(catalog.EVENT_COMPILE_SLOW)
    assert pipeline.events(catalog.EVENT_COMPILE_START)  # the start record does not depend on it


@pytest.mark.parametrize("raw", ["0", "-1", "1e3", "soon", "86401", "nan"])
def test_a_bad_threshold_is_one_paragraph_naming_what_is_valid(raw, monkeypatch):
    monkeypatch.setenv("TORCH_OTEL_SLOW_COMPILE", raw)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env()
    message = str(raised.value)
    assert "\n" not in message and message.startswith("TORCH_OTEL_SLOW_COMPILE=")
    assert "or off" in message


# -- the watchdog on its own, with a thread that stands in for a compile ------------------------------------------
class _Logger:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.emitted = threading.Event()

    def emit(self, **record: Any) -> None:
        self.records.append(record)
        self.emitted.set()


class _CountingClock:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return time.monotonic()


def _compile_in_thread(watchdog: CompileWatchdog, release: threading.Event, depth: int = 0) -> threading.Thread:
    def deep_in_torch(level: int) -> None:
        if level:
            deeper_in_torch(level - 1)  # two functions in turn: Python collapses repeats of one line in a stack
            return
        while not release.is_set():
            time.sleep(0.005)  # innermost frame: what the stack must keep

    def deeper_in_torch(level: int) -> None:
        deep_in_torch(level)

    def compiling() -> None:
        root = Phase("dynamo", time.time_ns(), "0/0", 0)
        inner = Phase("inductor_codegen", time.time_ns(), "0/0", 1)
        watchdog.phase_started(root)
        watchdog.phase_started(inner)
        deep_in_torch(depth)
        watchdog.phase_ended(inner, time.time_ns())
        watchdog.phase_ended(root, time.time_ns())

    thread = threading.Thread(target=compiling, name="compiler")
    thread.start()
    return thread


def test_the_watchdog_does_no_work_while_nothing_compiles():
    clock, logger, release = _CountingClock(), _Logger(), threading.Event()
    watchdog = CompileWatchdog(60.0, logger, clock=clock)
    try:
        release.set()
        _compile_in_thread(watchdog, release).join()
        time.sleep(0.2)  # the thread has woken for the compile's start and gone back to sleep
        before = clock.calls
        time.sleep(0.5)
        assert clock.calls == before
        assert watchdog.thread is not None and watchdog.thread.is_alive()
    finally:
        watchdog.stop()
    assert not watchdog.thread.is_alive() and not logger.records


def test_the_stack_is_capped_keeping_the_innermost_frames_and_redacted():
    logger, release = _Logger(), threading.Event()
    watchdog = CompileWatchdog(0.05, logger, Redactor("remove"), max_body_bytes=2048)
    try:
        thread = _compile_in_thread(watchdog, release, depth=60)
        assert logger.emitted.wait(5)
        release.set()
        thread.join()
    finally:
        watchdog.stop()
    record = logger.records[0]
    body, attributes = record["body"], record["attributes"]
    assert len(body.encode()) <= 2048
    assert attributes[catalog.ATTR_TRUNCATED] is True and attributes[catalog.ATTR_ORIGINAL_SIZE] > 2048
    assert "outer frames omitted" in body
    assert body.rstrip().endswith("time.sleep(0.005)  # innermost frame: what the stack must keep")
    assert __file__ not in body and "test_live_compile.py" in body  # the directory removed, the file name kept
    assert attributes[catalog.ATTR_PHASE] == "inductor_codegen"
    assert attributes[catalog.ATTR_THREAD_NAME] == "compiler"


def test_a_failing_logger_never_stops_the_watchdog():
    class Failing(_Logger):
        def emit(self, **record: Any) -> None:
            super().emit(**record)
            raise RuntimeError("exporter exploded")

    logger, release = Failing(), threading.Event()
    watchdog = CompileWatchdog(0.05, logger)
    watchdog_logger = logging.getLogger("torch_otel")
    level = watchdog_logger.level
    watchdog_logger.setLevel(logging.INFO)  # the failure is a DEBUG record; keep it from the autouse check
    try:
        thread = _compile_in_thread(watchdog, release)
        deadline = time.monotonic() + 5
        while len(logger.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        thread.join()
        assert len(logger.records) >= 2 and watchdog.thread.is_alive()  # 0.05 s, then 0.1 s
    finally:
        watchdog.stop()
        watchdog_logger.setLevel(level)
