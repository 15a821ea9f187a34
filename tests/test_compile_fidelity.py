"""Compile spans agree with what torch did (issue 14): failed compiles keep their function, the recompile limit says
whether torch raised, module compiles are named after the module, compiled-autograd captures have spans, backward
compiles count in the cache figures, restarts are counted, and severities use Python's level names. Each test runs a
real torch.compile and checks against torch's own record (CompilationMetrics, counters, config) or tlparse."""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import torch_otel
from inmemory import LogCapture
from torch_otel import catalog
from torch_otel.exporters.file_export import JsonLinesFile, OtlpJsonSpanExporter
from torch_otel.tools.report import read_files, render_text
from torch_state import preserved_torch_logging

TLPARSE = Path(sys.executable).with_name("tlparse")


@pytest.fixture(autouse=True)
def clean_torch_state() -> Iterator[None]:
    with preserved_torch_logging():
        torch._dynamo.reset()
        torch._dynamo.utils.clear_compilation_metrics()
        yield


class Pipelines:
    """In-memory spans, logs and metrics, plus the same spans in an OTLP JSON file for the report."""

    def __init__(self, directory: Path) -> None:
        self.span_exporter = InMemorySpanExporter()
        self.file = directory / "spans.jsonl"
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(OtlpJsonSpanExporter(JsonLinesFile(self.file))))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.logs = LogCapture()
        self.tracer = self.tracer_provider.get_tracer("app")

    def spans(self, name: str = catalog.SPAN_COMPILE) -> list[ReadableSpan]:
        return [s for s in self.span_exporter.get_finished_spans() if s.name == name]

    def span(self, compile_id: str, name: str = catalog.SPAN_COMPILE) -> ReadableSpan:
        (span,) = [s for s in self.spans(name) if s.attributes[catalog.ATTR_COMPILE_ID] == compile_id]
        return span

    def records(self) -> list:
        return [readable.log_record for readable in self.logs.records()]

    def events(self, name: str) -> list:
        return [r for r in self.records() if r.event_name == name]

    def points(self, name: str) -> list:
        data = self.reader.get_metrics_data()
        return [
            p
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]

    def report(self):
        self.tracer_provider.force_flush()
        return read_files([str(self.file)]).report


@pytest.fixture
def pipelines(tmp_path: Path) -> Iterator[Pipelines]:
    pipelines = Pipelines(tmp_path)
    torch_otel.instrument(
        tracer_provider=pipelines.tracer_provider,
        logger_provider=pipelines.logs.provider,
        meter_provider=pipelines.meter_provider,
        settings=torch_otel.Settings(),
    )
    try:
        yield pipelines
    finally:
        torch_otel.uninstrument()


def torch_metrics(compile_id: str):
    """torch's own CompilationMetrics of a compile."""
    (metrics,) = [m for m in torch._dynamo.utils.get_compilation_metrics() if str(m.compile_id) == compile_id]
    return metrics


def code_of(function) -> dict:
    code = function.__code__
    return {
        catalog.ATTR_CODE_FUNCTION: code.co_name,
        catalog.ATTR_CODE_FILE: code.co_filename,
        catalog.ATTR_CODE_LINE: code.co_firstlineno,
    }


def identity(span: ReadableSpan) -> dict:
    return {
        key: span.attributes.get(key)
        for key in (catalog.ATTR_CODE_FUNCTION, catalog.ATTR_CODE_FILE, catalog.ATTR_CODE_LINE)
    }


def scale_and_shift(x: torch.Tensor) -> torch.Tensor:
    return x * 2 + 1


def two_graph_breaks(x: torch.Tensor) -> torch.Tensor:
    y = x.cos()
    torch._dynamo.graph_break()
    y = y.sin()
    torch._dynamo.graph_break()
    return y + 1


class TwoLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x).relu())


# -- 2. a failed compile keeps its function ----------------------------------------------------------------------
def test_the_compile_that_hits_the_recompile_limit_names_its_function_and_the_report_counts_it(pipelines):
    compiled = torch.compile(scale_and_shift, backend="eager", dynamic=False)
    with torch._dynamo.config.patch(recompile_limit=1):
        for size in (2, 3, 4):
            compiled(torch.ones(size))
    failed = pipelines.span("0/1")
    assert failed.status.status_code == StatusCode.ERROR
    assert torch_metrics("0/1").fail_type and not torch_metrics("0/1").co_name  # torch's metrics do not name it
    assert identity(failed) == code_of(scale_and_shift)
    (row,) = pipelines.report().functions  # one row, the real function's: no "?" row
    # 0/1 hit the limit: it never compiled, so it counts as a limit hit, not as a compile, recompile or failure.
    assert (row.function, row.compiles, row.recompiles, row.failures, row.limit_hits) == ("scale_and_shift", 1, 0, 0, 1)


# -- 3 and 10a. what torch does at the limit; the limit is a number -----------------------------------------------
@pytest.mark.parametrize("fullgraph", [False, True])
def test_the_recompile_limit_event_says_whether_torch_raised_to_the_caller(pipelines, fullgraph):
    compiled = torch.compile(scale_and_shift, backend="eager", dynamic=False, fullgraph=fullgraph)
    raised = []
    with torch._dynamo.config.patch(recompile_limit=1):
        for size in (2, 3):
            try:
                compiled(torch.ones(size))
            except torch._dynamo.exc.FailOnRecompileLimitHit as error:
                raised.append(error)
    assert bool(raised) == fullgraph  # what torch did
    (record,) = pipelines.events(catalog.EVENT_RECOMPILE_LIMIT)
    action = record.attributes[catalog.ATTR_LIMIT_ACTION]
    assert action == (catalog.LIMIT_RAISES if fullgraph else catalog.LIMIT_RUNS_EAGER)
    assert record.body.endswith(catalog.LIMIT_OUTCOMES[action])
    assert ("runs without compiling" in record.body) != fullgraph
    assert record.attributes[catalog.ATTR_LIMIT] == 1 and isinstance(record.attributes[catalog.ATTR_LIMIT], int)
    assert record.attributes[catalog.ATTR_CODE_FUNCTION] == "scale_and_shift"
    (limit,) = pipelines.report().limits
    assert limit.action == action
    text = render_text(pipelines.report(), width=0)  # every cell whole: the wording, not the wrapping, is tested
    assert catalog.LIMIT_OUTCOMES[action] in text
    assert ("it now runs without compiling" in text) != fullgraph


def test_the_limit_is_recorded_as_the_number_torch_was_configured_with(pipelines):
    compiled = torch.compile(scale_and_shift, backend="eager", dynamic=False)
    with torch._dynamo.config.patch(recompile_limit=2):
        for size in (2, 3, 4):
            compiled(torch.ones(size))
    (event,) = [e for e in pipelines.span("0/2").events if e.name == catalog.EVENT_RECOMPILE_LIMIT]
    assert event.attributes[catalog.ATTR_LIMIT] == 2 and isinstance(event.attributes[catalog.ATTR_LIMIT], int)


# -- 4. module compiles are named after the module -------------------------------------------------------------
def test_a_compiled_torch_nn_module_is_named_after_its_class_and_forward(pipelines):
    compiled = torch.compile(
        torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU()), backend="eager", dynamic=False
    )
    for rows in (2, 4):
        compiled(torch.ones(rows, 3))
    assert torch_metrics("0/0").co_name == "inner"  # torch names the wrap_inline frame it compiled
    forward = torch.nn.Sequential.forward.__code__
    expected = {
        catalog.ATTR_CODE_FUNCTION: "Sequential.forward",
        catalog.ATTR_CODE_FILE: forward.co_filename,
        catalog.ATTR_CODE_LINE: forward.co_firstlineno,
    }
    assert identity(pipelines.span("0/0")) == identity(pipelines.span("0/1")) == expected
    (recompile,) = pipelines.points(catalog.METRIC_RECOMPILES)
    assert recompile.attributes[catalog.LABEL_FUNCTION] == "Sequential.forward"


def test_a_compiled_user_module_is_named_after_its_class_at_its_forward(pipelines):
    torch.compile(TwoLayers(), backend="eager")(torch.ones(2, 3))
    (span,) = pipelines.spans()
    assert torch_metrics("0/0").co_name == "forward"
    assert identity(span) == {**code_of(TwoLayers.forward), catalog.ATTR_CODE_FUNCTION: "TwoLayers.forward"}
    assert span.attributes[catalog.ATTR_CODE_FILE] == inspect.getsourcefile(TwoLayers) == __file__


# -- 5. compiled-autograd captures ----------------------------------------------------------------------------
def test_each_compiled_autograd_capture_has_a_span_with_torchs_compile_id(pipelines):
    from torch._dynamo import compiled_autograd
    from torch._dynamo.utils import counters

    layer = torch.nn.Linear(3, 3)
    step = torch.compile(lambda x: layer(x).sum(), backend="aot_eager")
    counters.clear()
    with compiled_autograd._enable(torch.compile(backend="aot_eager")):
        for _ in range(2):
            with pipelines.tracer.start_as_current_span("train_step") as train_step:
                step(torch.ones(2, 3)).backward()
    captures = sorted(pipelines.spans(catalog.SPAN_COMPILED_AUTOGRAD), key=lambda s: s.start_time)
    assert len(captures) == counters["compiled_autograd"]["captures"] == 2  # torch's own count
    assert [c.attributes[catalog.ATTR_COMPILE_ID] for c in captures] == ["!0", "!1"]  # str(CompileId(...)) form
    for capture in captures:
        assert capture.attributes[catalog.ATTR_PHASE] == "compiled_autograd"
        assert capture.end_time > capture.start_time
    assert captures[1].parent.span_id == train_step.get_span_context().span_id
    # The graphs the captures made are compiled afterwards, as frames of their own.
    graphs = [
        s.attributes[catalog.ATTR_COMPILE_ID]
        for s in pipelines.spans()
        if s.attributes[catalog.ATTR_COMPILE_ID].startswith("!")
    ]
    assert sorted(graphs) == sorted(
        str(m.compile_id) for m in torch._dynamo.utils.get_compilation_metrics() if str(m.compile_id).startswith("!")
    )
    durations = [
        p
        for p in pipelines.points(catalog.METRIC_COMPILE_DURATION)
        if p.attributes[catalog.LABEL_PHASE] == catalog.SPAN_COMPILED_AUTOGRAD
    ]
    assert [p.count for p in durations] == [2]


# -- 6. backward compiles count in the cache figures -------------------------------------------------------------
@pytest.mark.slow
def test_backward_compiles_count_in_the_spans_cache_figures(pipelines, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # empty: every lookup misses
    layer = torch.nn.Linear(4, 4)
    torch.compile(lambda x: layer(x).relu().sum(), backend="inductor")(torch.ones(2, 4)).backward()
    backward = pipelines.span("0/0", catalog.SPAN_BACKWARD_COMPILE)
    assert backward.attributes["pytorch.compile.is_forward"] is False
    assert backward.attributes["pytorch.compile.inductor_fx_local_cache_miss_count"] == 1
    spans = pipelines.spans() + pipelines.spans(catalog.SPAN_BACKWARD_COMPILE)
    metric = {
        (p.attributes[catalog.LABEL_CACHE], p.attributes[catalog.LABEL_CACHE_RESULT]): p.value
        for p in pipelines.points(catalog.METRIC_CACHE_LOOKUPS)
    }
    from_spans = {
        key: sum(s.attributes.get(f"pytorch.compile.{key[0]}_cache_{key[1]}_count", 0) for s in spans) for key in metric
    }
    assert from_spans == metric and metric[("inductor_fx_local", "miss")] == 2  # forward graph + backward graph
    rows = {row.cache: row for row in pipelines.report().caches}
    assert rows["inductor_fx_local"].span_misses == 2


# -- 7. restarts -----------------------------------------------------------------------------------------------
def test_restarts_are_counted_on_each_compile_span_and_in_the_report(pipelines):
    torch.compile(two_graph_breaks, backend="eager")(torch.ones(3))
    restarts = {s.attributes[catalog.ATTR_COMPILE_ID]: s.attributes[catalog.ATTR_RESTARTS] for s in pipelines.spans()}
    # A graph break in a frame restarts its analysis once; the last resume function has none left.
    assert restarts == {"0/0": 1, "1/0": 1, "2/0": 0}
    for compile_id, count in restarts.items():
        assert bool(torch_metrics(compile_id).restart_reasons) == (count > 0)  # torch's own record agrees
    rows = pipelines.report().functions
    assert sum(row.restarts for row in rows) == 2
    assert "restarts" in render_text(pipelines.report())


@pytest.mark.slow
def test_restarts_total_agrees_with_tlparse(tmp_path):
    """tlparse reads TORCH_TRACE independently: its compile directory holds one entry per attempt."""
    script = tmp_path / "workload.py"
    script.write_text(
        "import torch, torch_otel\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter(); provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "torch_otel.instrument(tracer_provider=provider, settings=torch_otel.Settings())\n"
        + inspect.getsource(two_graph_breaks)
        + "torch.compile(two_graph_breaks, backend='eager')(torch.ones(3))\n"
        "print(sum(s.attributes.get('pytorch.compile.restarts', 0) for s in exporter.get_finished_spans()))\n"
    )
    env = {**os.environ, "TORCH_TRACE": str(tmp_path / "trace")}
    env.pop("TORCH_LOGS", None)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    (trace_file,) = (tmp_path / "trace").iterdir()  # one process, one log
    subprocess.run(
        [str(TLPARSE), str(trace_file), "-o", str(tmp_path / "out"), "--overwrite", "--no-browser"],
        capture_output=True,
        check=True,
        timeout=300,
    )
    directory = json.loads((tmp_path / "out" / "compile_directory.json").read_text())
    # Keys are tlparse's compile ids: "[0/0]" for a first attempt, "[0/0_1]" for attempt 1 (the first restart).
    tlparse_restarts = sum(bool(re.fullmatch(r"\[\d+/\d+_[1-9]\d*\]", key)) for key in directory)
    assert tlparse_restarts == int(run.stdout.split()[-1]) == 2


# -- 10b. one spelling of severity ---------------------------------------------------------------------------------
def test_product_events_and_bridged_torch_records_spell_severity_alike(pipelines):
    compiled = torch.compile(scale_and_shift, backend="eager", dynamic=False)
    with torch._dynamo.config.patch(recompile_limit=1):
        for size in (2, 3):
            compiled(torch.ones(size))
    records = pipelines.records()
    (bridged,) = [r for r in records if r.event_name is None and "hit config.recompile_limit" in str(r.body)]
    (recompile,) = [r for r in records if r.event_name == catalog.EVENT_RECOMPILE]
    (limit,) = [r for r in records if r.event_name == catalog.EVENT_RECOMPILE_LIMIT]
    assert bridged.severity_text == recompile.severity_text == logging.getLevelName(logging.WARNING) == "WARNING"
    assert bridged.severity_number == recompile.severity_number
    assert limit.severity_text == "ERROR"
    assert catalog.severity_text(logging.INFO) == "INFO"
