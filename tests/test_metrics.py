"""Compile metrics from real torch.compile runs, read with an in-memory metric reader."""

from __future__ import annotations

import pytest
import torch
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import torch_otel
from torch_otel import catalog
from torch_otel.exporters.delivery import LEDGER
from torch_otel.signals.metrics import LabelCap, recompile_cause
from torch_otel.config.settings import Settings

from inmemory import LogCapture, recompiling_workload
from torch_state import preserved_torch_logging


@pytest.fixture(autouse=True)
def clean_torch_logging():
    with preserved_torch_logging():
        yield


class Pipelines:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.logs = LogCapture()

    def points(self, name: str) -> list:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [point for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
                if metric.name == name for point in metric.data.data_points]


@pytest.fixture
def pipelines():
    pipelines = Pipelines()
    torch_otel.instrument(tracer_provider=pipelines.tracer_provider, logger_provider=pipelines.logs.provider,
                          meter_provider=pipelines.meter_provider, settings=Settings())
    try:
        yield pipelines
    finally:
        torch_otel.uninstrument()


def by_labels(points, *keys):
    return {tuple(p.attributes.get(k) for k in keys): p for p in points}


def test_recompiles_are_counted_by_cause_and_function(pipelines):
    recompiling_workload()
    points = by_labels(pipelines.points(catalog.METRIC_RECOMPILES), catalog.LABEL_CAUSE, catalog.LABEL_FUNCTION)
    assert points[("shape", "step")].value == 1
    resume = [key for key in points if key[1].startswith("torch_dynamo_resume_in_step")]
    assert len(resume) == 1 and points[resume[0]].value == 1
    assert set(pipelines.points(catalog.METRIC_RECOMPILES)[0].attributes) == {catalog.LABEL_CAUSE, catalog.LABEL_FUNCTION}


def test_recompile_data_point_has_an_exemplar_linking_to_its_compile_span(pipelines):
    recompiling_workload()
    point = by_labels(pipelines.points(catalog.METRIC_RECOMPILES), catalog.LABEL_FUNCTION)[("step",)]
    spans = {s.context.span_id: s for s in pipelines.spans.get_finished_spans()}
    assert point.exemplars
    exemplar = point.exemplars[-1]
    # The exemplar points at the phase span that was current when torch found the guard failure; walk up to
    # the torch.compile span it belongs to.
    span = spans[exemplar.span_id]
    while span.name != "torch.compile":
        span = spans[span.parent.span_id]
    assert span.attributes["pytorch.compile.id"] == "0/1"
    assert exemplar.trace_id == span.context.trace_id


@pytest.mark.parametrize(
    "second_call, cause",
    [
        (lambda f: f(torch.ones(3, dtype=torch.float64), 2), "dtype"),
        (lambda f: f(torch.ones(3), 5), "constant_value"),
        (lambda f: f(torch.ones(3, requires_grad=True), 2), "grad_mode"),
        (lambda f: f(torch.ones(4), 2), "shape"),
    ],
)
def test_cause_categories_from_real_guard_failures(pipelines, second_call, cause):
    def scaled(x, factor):
        return x * factor

    compiled = torch.compile(scaled, backend="eager", dynamic=False)
    compiled(torch.ones(3), 2)
    second_call(compiled)
    (point,) = pipelines.points(catalog.METRIC_RECOMPILES)
    assert point.attributes[catalog.LABEL_CAUSE] == cause


def test_object_identity_cause():
    assert recompile_cause("0/0: ___check_obj_id(L['m'], 140221)") == "object_identity"
    assert recompile_cause("1/0: ___check_type_id(o, 94500719171264), type=<class 'A'>") == "object_identity"
    assert recompile_cause("something new") == "other"
    assert set(catalog.RECOMPILE_CAUSES) >= {"shape", "dtype", "device", "constant_value", "object_identity",
                                             "grad_mode", "other"}


def test_function_labels_are_capped(monkeypatch):
    monkeypatch.setattr(catalog, "MAX_FUNCTION_LABELS", 2)
    pipelines = Pipelines()
    torch_otel.instrument(tracer_provider=pipelines.tracer_provider, logger_provider=pipelines.logs.provider,
                          meter_provider=pipelines.meter_provider, settings=Settings())
    try:
        for index in range(4):
            namespace: dict = {}
            exec(f"def fn_{index}(x):\n    return x + {index}\n", namespace)
            compiled = torch.compile(namespace[f"fn_{index}"], backend="eager", dynamic=False)
            compiled(torch.ones(2))
            compiled(torch.ones(3))
    finally:
        torch_otel.uninstrument()
    points = by_labels(pipelines.points(catalog.METRIC_RECOMPILES), catalog.LABEL_FUNCTION)
    assert set(points) == {("fn_0",), ("fn_1",), ("other",)}
    assert points[("other",)].value == 2


def test_label_cap_is_stable():
    cap = LabelCap(1)
    assert [cap("a"), cap("b"), cap("a"), cap(None)] == ["a", "other", "a", "other"]


def test_compile_duration_by_phase_and_outcome(pipelines):
    recompiling_workload()
    points = pipelines.points(catalog.METRIC_COMPILE_DURATION)
    phases = by_labels(points, catalog.LABEL_PHASE, catalog.LABEL_OUTCOME)
    whole = phases[("torch.compile", "success")]
    assert whole.count == 4  # two frames (the graph break's resume function is one), each compiled twice
    assert 0 < whole.sum < 60
    assert tuple(whole.explicit_bounds) == catalog.COMPILE_DURATION_BUCKETS
    assert ("bytecode_tracing", "success") in phases and ("build_guards", "success") in phases
    spans = [s for s in pipelines.spans.get_finished_spans() if s.name == "torch.compile"]
    assert whole.sum == pytest.approx(sum((s.end_time - s.start_time) / 1e9 for s in spans), rel=1e-3)


def test_failed_compile_has_failure_outcome(pipelines):
    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("backend exploded")

    with pytest.raises(Exception, match="backend exploded"):
        torch.compile(lambda x: x.sin() + 1, backend=broken_backend)(torch.ones(2))
    phases = by_labels(pipelines.points(catalog.METRIC_COMPILE_DURATION), catalog.LABEL_PHASE, catalog.LABEL_OUTCOME)
    assert ("torch.compile", "failure") in phases and ("torch.compile", "success") not in phases


def test_graph_breaks_are_counted_by_function_and_type(pipelines):
    recompiling_workload()
    (point,) = pipelines.points(catalog.METRIC_GRAPH_BREAKS)
    assert point.value == 2  # once per compile of `step`
    assert point.attributes[catalog.LABEL_FUNCTION] == "step"
    assert point.attributes[catalog.LABEL_GRAPH_BREAK_TYPE]


@pytest.mark.slow
def test_inductor_cache_lookups_count_hits_and_misses(pipelines, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fx_graph_cache", True)

    def gelu_twice(x):
        return torch.nn.functional.gelu(x) * 2

    for _ in range(2):
        torch._dynamo.reset()
        torch.compile(gelu_twice, backend="inductor")(torch.ones(8))
    points = by_labels(pipelines.points(catalog.METRIC_CACHE_LOOKUPS), catalog.LABEL_CACHE, catalog.LABEL_CACHE_RESULT)
    assert points[("inductor_fx_local", "miss")].value >= 1
    assert points[("inductor_fx_local", "hit")].value >= 1
    assert {key[0] for key in points} <= set(catalog.CACHES)


def test_bridge_health_is_observable_once_non_zero(pipelines):
    bridge = torch_otel.TorchInstrumentor.bridge
    assert not pipelines.points(catalog.METRIC_EXPORT_FAILURES) and not pipelines.points(catalog.METRIC_EXPORT_LOST)
    bridge._queue.dropped += 3
    LEDGER.traces.accept(5)
    LEDGER.traces.settle(2, succeeded=True)
    LEDGER.traces.settle(3, succeeded=False)
    try:
        (point,) = pipelines.points(catalog.METRIC_RECORDS_DROPPED)
        assert point.value == bridge.dropped >= 3
        (failures,) = pipelines.points(catalog.METRIC_EXPORT_FAILURES)
        (lost,) = pipelines.points(catalog.METRIC_EXPORT_LOST)
        assert failures.attributes[catalog.LABEL_SIGNAL] == lost.attributes[catalog.LABEL_SIGNAL] == "traces"
        assert (failures.value, lost.value) == (1, 3)
    finally:
        LEDGER.reset()


def test_metrics_off_records_nothing():
    pipelines = Pipelines()
    torch_otel.instrument(tracer_provider=pipelines.tracer_provider, logger_provider=pipelines.logs.provider,
                          meter_provider=pipelines.meter_provider, settings=Settings(metrics=False))
    try:
        recompiling_workload()
    finally:
        torch_otel.uninstrument()
    assert not pipelines.points(catalog.METRIC_RECOMPILES)


def in_progress(pipelines) -> dict:
    return {p.attributes[catalog.LABEL_PHASE]: p.value for p in pipelines.points(catalog.METRIC_IN_PROGRESS)}


def test_compiles_in_progress_go_up_while_compiling_and_back_to_zero(pipelines):
    seen = []

    def watching_backend(graph_module, example_inputs):
        seen.append(in_progress(pipelines))  # read from inside the compile
        return graph_module.forward

    torch.compile(lambda x: x.sin() + 1, backend=watching_backend)(torch.ones(2))
    assert seen == [{"torch.compile": 1}]
    assert in_progress(pipelines) == {"torch.compile": 0}
    (point,) = pipelines.points(catalog.METRIC_IN_PROGRESS)
    assert set(point.attributes) == {catalog.LABEL_PHASE}


def test_a_failed_compile_is_no_longer_in_progress(pipelines):
    def broken_backend(graph_module, example_inputs):
        assert in_progress(pipelines) == {"torch.compile": 1}
        raise RuntimeError("backend exploded")

    with pytest.raises(Exception, match="backend exploded"):
        torch.compile(lambda x: x.sin() + 1, backend=broken_backend)(torch.ones(2))
    assert in_progress(pipelines) == {"torch.compile": 0}


def test_backward_compiles_are_in_progress_under_their_own_bounded_label(pipelines):
    x = torch.ones(3, requires_grad=True)
    torch.compile(lambda t: (t.sin() * 2).sum(), backend="aot_eager")(x).backward()
    assert in_progress(pipelines) == {"torch.compile": 0, "torch.compile.backward": 0}


def test_compile_time_is_a_monotonic_sum_of_whole_compiles(pipelines):
    recompiling_workload()
    (point,) = pipelines.points(catalog.METRIC_COMPILE_TIME)
    assert point.attributes == {catalog.LABEL_PHASE: "torch.compile"}
    spans = [s for s in pipelines.spans.get_finished_spans() if s.name == "torch.compile"]
    assert len(spans) == 4
    assert point.value == pytest.approx(sum((s.end_time - s.start_time) / 1e9 for s in spans), rel=1e-3)
    data = pipelines.reader.get_metrics_data()
    (metric,) = [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                 if m.name == catalog.METRIC_COMPILE_TIME]
    assert metric.unit == "s" and metric.data.is_monotonic
