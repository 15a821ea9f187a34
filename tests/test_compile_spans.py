"""Compile spans on real torch.compile runs (CPU, eager/aot_eager backends), exported to in-memory OTel pipelines."""

from __future__ import annotations

import importlib
import json
import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest
import torch
import torch._logging._internal as internal
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import torch_otel
from torch_otel import catalog
from torch_otel.instrumentor import TorchInstrumentor
from torch_otel.capture.log_handler import TorchLogHandler
from torch_otel.config.settings import Settings
from torch_otel.capture.torch_hooks import FEATURES, supported_features
from torch_otel.exporters.file_export import JsonLinesFile, OtlpJsonLogExporter, OtlpJsonSpanExporter

from inmemory import LogCapture
from torch_state import preserved_torch_logging

SIZE_MISMATCH_4_TO_8 = "size mismatch at index 0. expected 4, actual 8"


# -- fixtures and helpers -----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def clean_torch_state() -> Iterator[None]:
    with preserved_torch_logging():
        torch._dynamo.reset()  # compile ids start at 0/0 whatever ran before
        torch._dynamo.utils.clear_compilation_metrics()
        yield


class _InternalErrors(logging.Handler):
    """Collects torch-otel's own 'listener failed' reports (logged with exc_info, never raised into torch)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_internal_errors() -> Iterator[_InternalErrors]:
    """Every test here also checks that no torch-otel hook or listener failed silently."""
    logger = logging.getLogger("torch_otel")
    handler, level = _InternalErrors(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    failures = [f"{r.getMessage()}: {r.exc_info[1]!r}" for r in handler.records if r.exc_info]
    assert not failures, f"torch-otel failed internally: {failures}"


class Pipeline:
    """In-memory span and log exporters, and an application tracer on the same TracerProvider."""

    def __init__(self) -> None:
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=Resource.create({"service.name": "unit"}))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.logs = LogCapture()
        self.tracer = self.tracer_provider.get_tracer("app")

    def spans(self) -> list[ReadableSpan]:
        return list(self.span_exporter.get_finished_spans())

    def records(self) -> list:
        return [readable.log_record for readable in self.logs.records()]

    def compile_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == "torch.compile"]

    def compile_span(self, compile_id: str) -> ReadableSpan:
        (span,) = [s for s in self.compile_spans() if s.attributes[catalog.ATTR_COMPILE_ID] == compile_id]
        return span

    def of_compile(self, compile_id: str) -> list[ReadableSpan]:
        """The torch.compile span of a compile id and all its phase spans."""
        return [s for s in self.spans() if (s.attributes or {}).get(catalog.ATTR_COMPILE_ID) == compile_id]


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline()


@contextmanager
def instrumented(pipeline: Pipeline, settings: Settings | None = None) -> Iterator[Pipeline]:
    torch_otel.instrument(tracer_provider=pipeline.tracer_provider, logger_provider=pipeline.logs.provider,
                          settings=settings or Settings())
    try:
        yield pipeline
    finally:
        torch_otel.uninstrument()


def compile_ids_torch_reported() -> list[str]:
    """Every frame compile torch itself recorded metrics for (independent of torch-otel)."""
    return sorted(str(metrics.compile_id) for metrics in torch._dynamo.utils.get_compilation_metrics())


def parent_in(span: ReadableSpan, candidates: Sequence[ReadableSpan]) -> ReadableSpan | None:
    """The candidate that is ``span``'s parent (same trace, parent span id), or None."""
    if span.parent is None:
        return None
    found = [c for c in candidates if c.context.span_id == span.parent.span_id
             and c.context.trace_id == span.context.trace_id and c is not span]
    assert len(found) <= 1, f"{span.name}: several candidate parents {[c.name for c in found]}"
    return found[0] if found else None


def is_child_of(span: ReadableSpan, parent: trace.Span | ReadableSpan) -> bool:
    context = parent.get_span_context() if isinstance(parent, trace.Span) else parent.context
    return (span.parent is not None and span.parent.span_id == context.span_id
            and span.context.trace_id == context.trace_id)


def events(span: ReadableSpan | trace.Span, name: str) -> list:
    return [event for event in span.events if event.name == name]


def scale_and_shift(x: torch.Tensor) -> torch.Tensor:
    return x * 2 + 1


def two_inputs(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x * 2 + y


def with_graph_break(x: torch.Tensor) -> torch.Tensor:
    y = x.cos() * 2
    torch._dynamo.graph_break()
    return y + 1


GRAPH_BREAK_LINE = with_graph_break.__code__.co_firstlineno + 2


def serve_requests(pipeline: Pipeline, fn: Callable[..., torch.Tensor], sizes: Sequence[int],
                   inputs: int = 1) -> list[trace.Span]:
    """One ``request`` span per size, calling the compiled ``fn`` inside it; returns the request spans."""
    compiled = torch.compile(fn, backend="eager", dynamic=False)
    requests = []
    for size in sizes:
        with pipeline.tracer.start_as_current_span("request", attributes={"size": size}) as span:
            result = compiled(*[torch.ones(size) for _ in range(inputs)])
        assert result.shape == (size,)
        requests.append(span)
    return requests


# -- 1. one span per frame compile, under the application span ---------------------------------------------
def test_one_compile_span_per_frame_compile_under_the_request_that_compiled(pipeline):
    with instrumented(pipeline):
        first, second, third = serve_requests(pipeline, with_graph_break, [4, 4, 8])
    compile_spans = pipeline.compile_spans()
    # The graph break makes two frames (the function and its resume function); size 8 recompiles both.
    assert compile_ids_torch_reported() == ["0/0", "0/1", "1/0", "1/1"]
    assert sorted(s.attributes["pytorch.compile.id"] for s in compile_spans) == compile_ids_torch_reported()
    by_id = {s.attributes["pytorch.compile.id"]: s for s in compile_spans}
    for compile_id in ("0/0", "1/0"):
        assert is_child_of(by_id[compile_id], first)
    for compile_id in ("0/1", "1/1"):
        assert is_child_of(by_id[compile_id], third)
    assert not [s for s in compile_spans if is_child_of(s, second)]  # a cache hit compiles nothing
    for span in compile_spans:
        assert span.attributes["pytorch.compile.phase"] == "dynamo"
        assert span.kind == trace.SpanKind.INTERNAL
        assert span.instrumentation_scope.name == "torch._dynamo"
        assert span.instrumentation_scope.version == torch.__version__
        assert span.resource.attributes["service.name"] == "unit"
        assert span.status.status_code == StatusCode.UNSET
    assert by_id["0/0"].attributes["code.function.name"] == "with_graph_break"
    assert by_id["0/0"].attributes["code.file.path"] == __file__
    assert by_id["0/0"].attributes["code.line.number"] == with_graph_break.__code__.co_firstlineno
    assert by_id["1/0"].attributes["code.function.name"].startswith("torch_dynamo_resume_in_with_graph_break")
    assert by_id["0/0"].attributes["pytorch.compile.graph_op_count"] >= 1
    assert by_id["0/0"].attributes["pytorch.compile.guard_count"] >= 1
    assert by_id["0/0"].attributes["pytorch.compile.dynamo_cumulative_compile_time_us"] > 0


def test_compile_span_is_a_root_span_when_no_span_is_current(pipeline):
    assert not trace.get_current_span().get_span_context().is_valid
    compiled = torch.compile(scale_and_shift, backend="eager")
    with instrumented(pipeline):
        compiled(torch.ones(3))
    (compile_span,) = pipeline.compile_spans()
    assert compile_span.parent is None
    assert compile_span.attributes[catalog.ATTR_COMPILE_ID] == "0/0"
    phases = [s for s in pipeline.of_compile("0/0") if s is not compile_span]
    assert phases and all(s.context.trace_id == compile_span.context.trace_id for s in phases)
    assert not trace.get_current_span().get_span_context().is_valid  # nothing left attached


def test_a_compile_left_by_keyboard_interrupt_is_an_error_not_a_success(pipeline):
    """Ctrl-C during a compile: torch's metrics record only Exceptions, so the span says it was interrupted."""

    def interrupted_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        raise KeyboardInterrupt

    compiled = torch.compile(scale_and_shift, backend=interrupted_backend)
    with instrumented(pipeline), pytest.raises(KeyboardInterrupt):
        compiled(torch.ones(3))
    (compile_span,) = pipeline.compile_spans()
    assert compile_span.status.status_code == trace.StatusCode.ERROR
    assert compile_span.status.description == "interrupted: KeyboardInterrupt"
    ok = torch.compile(scale_and_shift, backend="eager")
    with instrumented(pipeline):
        ok(torch.ones(5))
    assert [s.status.status_code for s in pipeline.compile_spans()][-1] == trace.StatusCode.UNSET


# -- 2. phases nest as torch nests them -----------------------------------------------------------------------
def test_phases_are_nested_children_inside_their_parent_interval(pipeline):
    with instrumented(pipeline):
        (request,) = serve_requests(pipeline, with_graph_break, [4])
    for compile_id in ("0/0", "1/0"):
        spans = pipeline.of_compile(compile_id)
        compile_span = pipeline.compile_span(compile_id)
        assert is_child_of(compile_span, request)
        names = {s.name for s in spans}
        assert {"torch.compile", "entire_frame_compile", "compile_attempt_0", "bytecode_tracing", "backend_compile",
                "build_guards"} <= names
        for span in spans:
            assert span.context.trace_id == request.get_span_context().trace_id
            assert span.start_time <= span.end_time
            if span is compile_span:
                continue
            assert span.attributes[catalog.ATTR_PHASE] == span.name  # phases keep torch's names
            parent = parent_in(span, spans)
            assert parent is not None, f"{compile_id} {span.name} is not inside its compile"
            assert parent.start_time <= span.start_time and span.end_time <= parent.end_time, span.name

        def parent_name(name: str) -> set[str]:
            return {parent_in(s, spans).name for s in spans if s.name == name}

        assert parent_name("entire_frame_compile") == {"torch.compile"}
        attempts = {s.name for s in spans if s.name.startswith("compile_attempt_")}
        assert parent_name("bytecode_tracing") == attempts  # every attempt traces bytecode once
        assert all(parent_name(attempt) == {"entire_frame_compile"} for attempt in attempts)
        assert parent_name("backend_compile") <= attempts
        assert parent_name("build_guards") == {"entire_frame_compile"}
    # The graph break restarts the analysis of the first frame: a second attempt, with restart reasons.
    first_frame = pipeline.of_compile("0/0")
    assert {"compile_attempt_0", "compile_attempt_1"} <= {s.name for s in first_frame}
    attempt_0 = next(s for s in first_frame if s.name == "compile_attempt_0")
    attempt_1 = next(s for s in first_frame if s.name == "compile_attempt_1")
    assert attempt_0.end_time <= attempt_1.start_time


# -- 3. recompiles, with torch's recompiles artifact NOT enabled ----------------------------------------------
def test_recompile_reason_and_events_without_torch_logs(pipeline):
    torch._logging.set_logs()  # torch's defaults, whatever TORCH_LOGS says
    assert not internal.log_state.is_artifact_enabled("recompiles")
    assert not logging.getLogger("torch._dynamo").isEnabledFor(logging.INFO)
    with instrumented(pipeline):
        first, second, third = serve_requests(pipeline, two_inputs, [4, 8, 16], inputs=2)
        records = pipeline.records()

    assert not [r for r in records if r.event_name == "pytorch.artifact.recompiles"]  # torch logged nothing
    recompile = pipeline.compile_span("0/1")
    assert is_child_of(recompile, second)
    assert SIZE_MISMATCH_4_TO_8 in recompile.attributes["pytorch.compile.recompile_reason"]
    assert "pytorch.compile.recompile_reason" not in pipeline.compile_span("0/0").attributes

    (on_compile,) = events(recompile, "pytorch.recompile")
    (on_request,) = events(second, "pytorch.recompile")
    for event in (on_compile, on_request):
        (reason,) = event.attributes["pytorch.compile.recompile_reasons"]
        assert SIZE_MISMATCH_4_TO_8 in reason and reason.startswith("0/0: ")
        assert event.attributes["pytorch.compile.id"] == "0/1"
        assert event.attributes["code.function.name"] == "two_inputs"
        assert event.attributes["code.file.path"] == __file__
        assert event.attributes["code.line.number"] == two_inputs.__code__.co_firstlineno
    assert not events(first, "pytorch.recompile")

    # The third size fails the guards of both cached entries: every reason is kept.
    (on_third,) = events(third, "pytorch.recompile")
    reasons = on_third.attributes["pytorch.compile.recompile_reasons"]
    assert len(reasons) == 2
    assert any("0/0: " in r and "expected 4, actual 16" in r for r in reasons)
    assert any("0/1: " in r and "expected 8, actual 16" in r for r in reasons)
    assert events(pipeline.compile_span("0/2"), "pytorch.recompile")[0].attributes == on_third.attributes

    recompile_records = [r for r in records if r.event_name == "pytorch.recompile"]
    assert [r.attributes["pytorch.compile.id"] for r in recompile_records] == ["0/1", "0/2"]
    record = recompile_records[0]
    assert record.severity_number == SeverityNumber.WARN
    assert SIZE_MISMATCH_4_TO_8 in record.body and "two_inputs" in record.body
    assert list(record.attributes["pytorch.compile.recompile_reasons"]) == \
        list(on_compile.attributes["pytorch.compile.recompile_reasons"])
    assert record.attributes["pytorch.log.component"] == "dynamo"
    assert record.trace_id == second.get_span_context().trace_id
    assert record.span_id in {s.context.span_id for s in pipeline.of_compile("0/1")}
    (readable,) = [r for r in pipeline.logs.records() if r.log_record is record]
    assert readable.instrumentation_scope.name == "torch._dynamo"


# -- 4. graph breaks --------------------------------------------------------------------------------------------
def test_graph_break_event_points_at_the_users_line(pipeline):
    with instrumented(pipeline):
        (request,) = serve_requests(pipeline, with_graph_break, [4])
        records = pipeline.records()
    assert "torch._dynamo.graph_break()" in Path(__file__).read_text().splitlines()[GRAPH_BREAK_LINE - 1]
    (event,) = events(pipeline.compile_span("0/0"), "pytorch.graph_break")
    assert "graph_break" in event.attributes["pytorch.graph_break.reason"]
    assert event.attributes["code.file.path"] == __file__
    assert Path(event.attributes["code.file.path"]).name == "test_compile_spans.py"
    assert event.attributes["code.line.number"] == GRAPH_BREAK_LINE
    assert event.attributes["pytorch.compile.id"] == "0/0"

    (record,) = [r for r in records if r.event_name == "pytorch.graph_break"]
    assert record.attributes["code.file.path"] == __file__
    assert record.attributes["code.line.number"] == GRAPH_BREAK_LINE
    assert record.attributes["pytorch.graph_break.reason"] == event.attributes["pytorch.graph_break.reason"]
    assert f"test_compile_spans.py:{GRAPH_BREAK_LINE}" in record.body
    assert record.trace_id == request.get_span_context().trace_id


# -- 5. the recompile limit --------------------------------------------------------------------------------------
def test_recompile_limit_is_an_error_on_the_request_span_and_in_the_logs(pipeline):
    compiled = torch.compile(scale_and_shift, backend="eager", dynamic=False)
    with instrumented(pipeline), torch._dynamo.config.patch(recompile_limit=1):
        with pipeline.tracer.start_as_current_span("request") as request:
            results = [compiled(torch.ones(size)) for size in (2, 3, 4)]
        records = pipeline.records()
    assert [r.shape[0] for r in results] == [2, 3, 4]  # past the limit torch runs the function uncompiled
    (on_request,) = events(request, "pytorch.recompile_limit")
    assert on_request.attributes["pytorch.compile.limit_type"] == "recompile_limit"
    assert on_request.attributes["pytorch.compile.limit"] == 1
    assert on_request.attributes["pytorch.compile.limit_action"] == "run_eager"
    assert on_request.attributes["code.function.name"] == "scale_and_shift"
    limit_span = pipeline.compile_span(on_request.attributes["pytorch.compile.id"])
    assert is_child_of(limit_span, request)
    assert events(limit_span, "pytorch.recompile_limit")[0].attributes == on_request.attributes

    (record,) = [r for r in records if r.event_name == "pytorch.recompile_limit"]
    assert record.severity_number == SeverityNumber.ERROR and record.severity_text == "ERROR"
    assert "recompile_limit" in record.body and "scale_and_shift" in record.body
    assert record.attributes["pytorch.compile.limit"] == 1
    assert record.body.endswith("it now runs without compiling")
    assert record.trace_id == request.get_span_context().trace_id


# -- 6. a failed compile -----------------------------------------------------------------------------------------
class BackendExploded(RuntimeError):
    pass


def exploding_backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> Callable:
    raise BackendExploded("backend exploded on purpose")


def test_failed_compile_span_has_error_status_and_nothing_leaks(pipeline):
    compiled = torch.compile(scale_and_shift, backend=exploding_backend)
    with instrumented(pipeline):
        with pipeline.tracer.start_as_current_span("request") as request:
            with pytest.raises(torch._dynamo.exc.BackendCompilerFailed) as raised:
                compiled(torch.ones(3))
            assert trace.get_current_span() is request  # every compile phase was detached
        with pipeline.tracer.start_as_current_span("next request") as next_request:
            torch.compile(two_inputs, backend="eager")(torch.ones(2), torch.ones(2))
    # What reached the caller is torch's error about our backend, not anything from torch-otel.
    assert isinstance(raised.value.inner_exception, BackendExploded)

    failed = pipeline.compile_span("0/0")
    assert is_child_of(failed, request)
    assert failed.status.status_code == StatusCode.ERROR
    assert "BackendCompilerFailed" in failed.status.description
    assert "backend exploded on purpose" in failed.status.description
    assert "BackendCompilerFailed" in failed.attributes["pytorch.compile.fail_type"]
    assert all(s.end_time is not None for s in pipeline.of_compile("0/0"))
    # The next compile on this thread is a fresh torch.compile span under its own request.
    (later,) = [s for s in pipeline.compile_spans() if s is not failed]
    assert is_child_of(later, next_request)
    assert later.status.status_code == StatusCode.UNSET


# -- 7. the backward compile --------------------------------------------------------------------------------------
def test_backward_compile_span_is_under_the_train_step_and_links_to_the_forward(pipeline):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    compiled = torch.compile(model, backend="aot_eager")
    with instrumented(pipeline):
        with pipeline.tracer.start_as_current_span("train_step") as step:
            compiled(torch.randn(3, 4)).sum().backward()
        with pipeline.tracer.start_as_current_span("train_step") as second_step:
            compiled(torch.randn(3, 4)).sum().backward()
    assert model.weight.grad is not None
    (forward,) = pipeline.compile_spans()
    (backward,) = [s for s in pipeline.spans() if s.name == "torch.compile.backward"]
    assert is_child_of(forward, step) and is_child_of(backward, step)
    assert backward.attributes["pytorch.compile.phase"] == "entire_backward_compile"
    assert backward.attributes["pytorch.compile.id"] == forward.attributes["pytorch.compile.id"] == "0/0"
    assert forward.end_time <= backward.start_time  # compiled lazily, inside loss.backward()
    assert step.start_time <= backward.start_time and backward.end_time <= step.end_time
    (link,) = backward.links
    assert link.context.trace_id == forward.context.trace_id
    assert link.context.span_id == forward.context.span_id
    assert backward.context.span_id != forward.context.span_id  # a link to itself would be no link at all
    assert not [s for s in pipeline.spans() if s.name.startswith("torch.compile") and is_child_of(s, second_step)]


# -- 8. torch's log records inside compile spans -------------------------------------------------------------------
def test_log_records_during_a_compile_carry_that_compiles_span(pipeline):
    torch._logging.set_logs(dynamo=logging.DEBUG, recompiles=True, guards=True)
    with instrumented(pipeline):
        requests = serve_requests(pipeline, scale_and_shift, [4, 8])
        records = pipeline.records()
    checked: dict[str, int] = {}
    for compile_span in pipeline.compile_spans():
        compile_id = compile_span.attributes["pytorch.compile.id"]
        span_ids = {s.context.span_id for s in pipeline.of_compile(compile_id)}
        during = [r for r in records if r.attributes.get("pytorch.compile.id") == compile_id
                  and compile_span.start_time < (r.timestamp or r.observed_timestamp) < compile_span.end_time]
        for record in during:
            assert record.trace_id == compile_span.context.trace_id, record.body[:200]
            assert record.span_id in span_ids, f"{compile_id}: {record.body[:200]!r} is not in a compile span"
        checked[compile_id] = len(during)
    assert set(checked) == {"0/0", "0/1"} and all(count >= 5 for count in checked.values()), checked
    artifacts = {r.attributes.get("pytorch.log.artifact") for r in records
                 if r.attributes.get("pytorch.compile.id") == "0/1"}
    assert {"recompiles", "guards"} <= artifacts
    assert {r.trace_id for r in records if r.attributes.get("pytorch.compile.id") == "0/1"} == \
        {requests[1].get_span_context().trace_id}


# -- 9. spans off ----------------------------------------------------------------------------------------------------
def torch_attribute(module_name: str, path: str) -> object:
    owner: object = importlib.import_module(module_name)
    for name in path.split("."):
        owner = getattr(owner, name)
    return owner


def current_torch_functions() -> dict[str, object]:
    """What each hooked torch function is right now, looked up the way torch's own callers find it."""
    return {feature: torch_attribute(*where) for feature, where in FEATURES.items()}


def test_spans_off_installs_no_hooks_and_records_still_flow(pipeline):
    originals = current_torch_functions()
    torch._logging.set_logs(recompiles=True)
    with instrumented(pipeline, Settings(spans=False, metrics=False)):
        assert TorchInstrumentor.hooks is None
        assert all(current_torch_functions()[f] is originals[f] for f in FEATURES)
        first, second = serve_requests(pipeline, scale_and_shift, [4, 8])
        records = pipeline.records()
    assert [s.name for s in pipeline.spans()] == ["request", "request"]
    assert not second.events
    recompiles = [r for r in records if r.event_name == "pytorch.artifact.recompiles"]
    assert recompiles and SIZE_MISMATCH_4_TO_8 in recompiles[0].body
    assert recompiles[0].span_id == second.get_span_context().span_id
    assert not [r for r in records if r.event_name in ("pytorch.recompile", "pytorch.graph_break")]


# -- 10. uninstrument restores torch ---------------------------------------------------------------------------------
def test_uninstrument_restores_every_patched_torch_function(pipeline):
    assert all(supported_features().values()), supported_features()  # this torch has every feature: all patched
    originals = current_torch_functions()
    for _ in range(2):
        with instrumented(pipeline):
            patched = current_torch_functions()
            for feature, original in originals.items():
                assert patched[feature] is not original, feature
                assert patched[feature].__wrapped__ is original, feature
        assert all(current_torch_functions()[f] is originals[f] for f in FEATURES)
        assert TorchInstrumentor.hooks is None
    torch.compile(scale_and_shift, backend="eager")(torch.ones(2))
    assert not pipeline.spans()  # nothing is traced after uninstrument


# -- 11. threads -------------------------------------------------------------------------------------------------------
def test_each_threads_compile_span_is_under_that_threads_span(pipeline):
    def thread_a(x: torch.Tensor) -> torch.Tensor:
        return x.sin() + 1

    def thread_b(x: torch.Tensor) -> torch.Tensor:
        return x.cos() - 1

    barrier = threading.Barrier(2)
    app_spans: dict[str, trace.Span] = {}
    errors: list[BaseException] = []

    def work(name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        try:
            compiled = torch.compile(fn, backend="eager")
            barrier.wait(timeout=30)
            with pipeline.tracer.start_as_current_span(f"work {name}") as span:
                app_spans[name] = span
                compiled(torch.ones(3))
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            errors.append(error)

    with instrumented(pipeline):
        threads = [threading.Thread(target=work, args=(name, fn)) for name, fn in
                   (("thread_a", thread_a), ("thread_b", thread_b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors and not any(thread.is_alive() for thread in threads)
    compile_spans = pipeline.compile_spans()
    assert len(compile_spans) == 2
    assert len({s.attributes["pytorch.compile.id"] for s in compile_spans}) == 2
    assert app_spans["thread_a"].get_span_context().trace_id != app_spans["thread_b"].get_span_context().trace_id
    for span in compile_spans:
        name = span.attributes["code.function.name"]
        assert is_child_of(span, app_spans[name]), name
        for phase in pipeline.of_compile(span.attributes["pytorch.compile.id"]):
            assert phase.context.trace_id == app_spans[name].get_span_context().trace_id


def test_spans_started_on_other_threads_during_a_compile_keep_unique_ids(pipeline):
    """Dynamo saves Python's global ``random`` state when a frame compile starts and restores it when it ends;
    ids the SDK's default generator drew meanwhile on other threads must not be drawn a second time."""
    compiling, created_during, compiled = threading.Event(), threading.Event(), threading.Event()
    other_spans: list[trace.Span] = []

    def waiting_backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> Callable:
        compiling.set()
        assert created_during.wait(30)
        return graph_module.forward

    def other_requests(tracer: trace.Tracer) -> None:
        compiling.wait(30)
        for phase in (created_during, compiled):
            for _ in range(5):
                with tracer.start_as_current_span("other request") as span:
                    other_spans.append(span)
            phase.set()
            compiled.wait(30)

    with instrumented(pipeline):
        other = threading.Thread(target=other_requests, args=(pipeline.tracer_provider.get_tracer("other"),))
        other.start()
        with pipeline.tracer_provider.get_tracer("app").start_as_current_span("request"):
            torch.compile(scale_and_shift, backend=waiting_backend)(torch.ones(2))
        compiled.set()
        other.join(timeout=60)
    assert len(other_spans) == 10
    trace_ids = [s.get_span_context().trace_id for s in other_spans]
    assert len(set(trace_ids)) == 10, "independent requests share trace ids"
    span_ids = [s.context.span_id for s in pipeline.spans()]
    assert len(span_ids) == len(set(span_ids))


# -- 12. structured (TORCH_TRACE) records --------------------------------------------------------------------------------
def our_trace_log_handlers() -> list[logging.Handler]:
    return [h for h in internal.trace_log.handlers if isinstance(h, TorchLogHandler)]


def test_structured_records_are_linked_to_compile_spans(pipeline):
    with instrumented(pipeline, Settings(structured=True)):
        assert len(our_trace_log_handlers()) == 1
        (request,) = serve_requests(pipeline, scale_and_shift, [4])
        readables = pipeline.logs.records()
    assert not our_trace_log_handlers()
    structured = [r for r in readables if (r.log_record.event_name or "").startswith("pytorch.trace.")]
    names = {r.log_record.event_name for r in structured}
    assert {"pytorch.trace.compilation_metrics", "pytorch.trace.dynamo_output_graph"} <= names
    compile_span_ids = {s.context.span_id for s in pipeline.of_compile("0/0")}
    for name in ("pytorch.trace.compilation_metrics", "pytorch.trace.dynamo_output_graph"):
        (readable,) = [r for r in structured if r.log_record.event_name == name]
        record = readable.log_record
        assert readable.instrumentation_scope.name == "torch"
        assert record.attributes["pytorch.compile.id"] == "0/0"
        assert record.attributes["pytorch.log.component"] == "trace"
        assert record.trace_id == request.get_span_context().trace_id
        assert record.span_id in compile_span_ids, name
    (metrics,) = [r.log_record for r in structured if r.log_record.event_name == "pytorch.trace.compilation_metrics"]
    assert '"co_name": "scale_and_shift"' in metrics.body
    (graph,) = [r.log_record for r in structured if r.log_record.event_name == "pytorch.trace.dynamo_output_graph"]
    assert "class GraphModule" in graph.body


def test_structured_off_leaves_torchs_trace_log_alone(pipeline):
    handlers_before = list(internal.trace_log.handlers)
    with instrumented(pipeline):
        assert not our_trace_log_handlers()
        serve_requests(pipeline, scale_and_shift, [4])
        assert not our_trace_log_handlers()
        records = pipeline.records()
    assert not [r for r in records if (r.event_name or "").startswith("pytorch.trace.")]
    assert pipeline.compile_spans()
    assert all(h in handlers_before for h in internal.trace_log.handlers)


# -- strings from the user's code objects are valid UTF-8 on the wire ----------------------------------------------------
def test_an_undecodable_file_name_is_exported_with_a_replacement_character(pipeline, tmp_path, capfd):
    """A file name with a byte that is not UTF-8 reaches Python as a lone surrogate in ``co_filename``; the SDK's
    OTLP encoder cannot encode it, drops the attribute and prints a traceback."""
    namespace: dict = {}
    exec(compile("def shaped(x):\n    return x * 2 + 1\n", "/tmp/caf\udce9.py", "exec"), namespace)
    with instrumented(pipeline):
        serve_requests(pipeline, namespace["shaped"], [4, 8])
        records = pipeline.logs.records()
    out = JsonLinesFile(tmp_path / "otlp.jsonl")
    sdk_logger, sdk_errors = logging.getLogger("opentelemetry"), _InternalErrors()
    sdk_logger.addHandler(sdk_errors)
    try:
        assert OtlpJsonSpanExporter(out).export(pipeline.spans()).name == "SUCCESS"
        assert OtlpJsonLogExporter(out).export(records).name == "SUCCESS"
    finally:
        sdk_logger.removeHandler(sdk_errors)
    assert not [r.getMessage() for r in sdk_errors.records]
    assert "Failed to encode" not in capfd.readouterr().err

    lines = [json.loads(line) for line in (tmp_path / "otlp.jsonl").read_bytes().decode("utf-8").splitlines()]
    (spans,) = [line["resourceSpans"] for line in lines if "resourceSpans" in line]
    exported = [span for resource in spans for scope in resource["scopeSpans"] for span in scope["spans"]]
    paths = {attribute["value"]["stringValue"]
             for span in exported if span["name"] == "torch.compile"
             for item in (span["attributes"], *(event.get("attributes", []) for event in span.get("events", [])))
             for attribute in item if attribute["key"] == catalog.ATTR_CODE_FILE}
    assert paths == {"/tmp/caf\ufffd.py"} or paths == {"/tmp/caf?.py"}, paths
    recompile_events = [span for span in exported if span["name"] == "request"
                        and any(event["name"] == catalog.EVENT_RECOMPILE for event in span.get("events", []))]
    assert recompile_events, "the recompile event on the request span was not exported"
    (logs,) = [line["resourceLogs"] for line in lines if "resourceLogs" in line]
    record_paths = {attribute["value"]["stringValue"]
                    for resource in logs for scope in resource["scopeLogs"] for record in scope["logRecords"]
                    for attribute in record.get("attributes", []) if attribute["key"] == catalog.ATTR_CODE_FILE}
    assert record_paths == paths


# -- inductor: its phases nest under backend_compile, and every span stays in the request's trace ---------------------
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled", "ignore:.*torch.jit.script_method:DeprecationWarning")
def test_inductor_phases_nest_under_backend_compile(pipeline):
    def relu_affine(x: torch.Tensor) -> torch.Tensor:
        return (x * 2 + 1).relu()

    with torch._inductor.config.patch(force_disable_caches=True), instrumented(pipeline):
        compiled = torch.compile(relu_affine, backend="inductor")
        with pipeline.tracer.start_as_current_span("request") as request:
            assert torch.equal(compiled(torch.ones(3)), torch.full((3,), 3.0))
    spans = pipeline.spans()
    compile_spans = pipeline.of_compile("0/0")
    (inductor,) = [s for s in compile_spans if s.name == "inductor_compile"]
    ancestors = []
    span = inductor
    while (span := parent_in(span, compile_spans)) is not None:
        ancestors.append(span.name)
    assert ancestors[-3:] == ["compile_attempt_0", "entire_frame_compile", "torch.compile"]
    assert "backend_compile" in ancestors
    # Phases torch runs on its own worker threads (the C++ compile) must not become separate root traces.
    strays = [s.name for s in spans if s.context.trace_id != request.get_span_context().trace_id]
    assert not strays, f"spans outside the request's trace: {strays}"
