"""`torch-otel report`: a real torch.compile run exported to one OTLP JSON Lines file (all three signals) by the
embedded default's writer (and the official json-file package's, when installed), read back and compared with what
in-memory exporters saw in the same run; Collector-style files; bad lines; the HTML page (and a headless-Chromium
screenshot of it); fuzzing of the parser."""

from __future__ import annotations

import copy
import dataclasses
import gzip
import html
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable

import markupsafe
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from torch_otel import catalog
from torch_otel.tools import report
from torch_otel.tools.report import Progress, ReportParseError, parse_line, read_files, reading, render_text
from torch_otel.tools.report.html import render_html
from torch_otel.tools.report.tables import trigger

from torch_state import preserved_torch_logging

DATA = Path(__file__).parent / "data" / "report"
STATIC = DATA / "collector_traces.jsonl"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------------------------
# The real run
# ---------------------------------------------------------------------------------------------------------------
def graph_breaking_step(x):
    y = x * 2
    import torch

    torch._dynamo.graph_break()
    return y + 1


EMBEDDED = "torch_otel.exporters.file_export"  # the embedded default's own writer
PACKAGE = "opentelemetry-exporter-otlp-json-file"  # the official writer, when it is installed
PACKAGE_MISSING = (f"{PACKAGE} is not installed (0.66b1 pins opentelemetry-exporter-otlp-common==0.66b1, which the "
                   "OTLP exporters 1.45.2 conflict with); the embedded default's writer is tested regardless")


@dataclass(frozen=True)
class RealRun:
    paths: dict  # writer -> the file it wrote, every signal in it
    spans: tuple  # ReadableSpan, from an InMemorySpanExporter on the same provider
    logs: tuple  # ReadableLogRecord, from an InMemoryLogRecordExporter on the same provider

    @property
    def path(self) -> Path:
        return self.paths[EMBEDDED]

    def lines(self, writer: str = EMBEDDED) -> list[str]:
        return self.paths[writer].read_text(encoding="utf-8").splitlines(keepends=True)


def _json_file_package_exporters(path: Path) -> tuple | None:
    try:
        from opentelemetry.exporter.otlp.json.file import FileMetricExporter, FileSpanExporter
        from opentelemetry.exporter.otlp.json.file._log_exporter import FileLogExporter  # not re-exported
    except ImportError:
        return None
    return FileSpanExporter(path), FileLogExporter(path), FileMetricExporter(path)  # three handles, one file


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    """``request`` spans around an eager-compiled function with a graph break, called with a new shape (a
    recompile), and a ``train_step`` with an aot_eager backward compile. Spans, logs and metrics all go to ONE file
    through the embedded default's three exporters (and to a second file through the official json-file package's,
    when it is installed); spans and logs also go to in-memory exporters: the truth."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import torch

    import torch_otel
    from torch_otel.exporters.file_export import JsonLinesFile, OtlpJsonLogExporter, OtlpJsonMetricExporter, OtlpJsonSpanExporter

    directory = tmp_path_factory.mktemp("report")
    paths = {EMBEDDED: directory / "embedded.jsonl"}
    sink = JsonLinesFile(paths[EMBEDDED])
    span_exporters = [OtlpJsonSpanExporter(sink)]
    log_exporters = [OtlpJsonLogExporter(sink)]
    metric_exporters = [OtlpJsonMetricExporter(sink)]
    package = _json_file_package_exporters(directory / "package.jsonl")
    if package is not None:
        paths[PACKAGE] = directory / "package.jsonl"
        span_exporters.append(package[0])
        log_exporters.append(package[1])
        metric_exporters.append(package[2])
    span_truth, log_truth = InMemorySpanExporter(), InMemoryLogRecordExporter()
    resource = Resource.create({"service.name": "report-test"})
    tracer_provider = TracerProvider(resource=resource)
    for span_exporter in (*span_exporters, span_truth):
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    logger_provider = LoggerProvider(resource=resource)
    for log_exporter in (*log_exporters, log_truth):
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    readers = [PeriodicExportingMetricReader(e, export_interval_millis=3_600_000) for e in metric_exporters]
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    with preserved_torch_logging():
        torch._logging.set_logs(recompiles=True, graph_breaks=True, guards=True)
        torch_otel.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider,
                              meter_provider=meter_provider, settings=torch_otel.Settings())
        try:
            tracer = tracer_provider.get_tracer("app")
            step = torch.compile(graph_breaking_step, backend="eager", dynamic=False)
            for size in (4, 4, 8):  # the third call recompiles (and so does the graph break's resume function)
                with tracer.start_as_current_span("request"):
                    step(torch.ones(size))
            layer = torch.nn.Linear(4, 4)

            def loss(x):
                return layer(x).relu().sum()

            train = torch.compile(loss, backend="aot_eager")
            with tracer.start_as_current_span("train_step"):
                train(torch.ones(2, 4)).backward()
            torch_otel.flush(10)
        finally:
            torch_otel.uninstrument()
    for reader in readers:
        reader.force_flush()  # one cumulative export now ...
    meter_provider.shutdown()  # ... and the same running totals again at shutdown
    tracer_provider.shutdown()
    logger_provider.shutdown()
    return RealRun(paths, tuple(span_truth.get_finished_spans()), tuple(log_truth.get_finished_logs()))


def writer_path(run: RealRun, writer: str) -> Path:
    if writer not in run.paths:
        pytest.skip(PACKAGE_MISSING)
    return run.paths[writer]


def hex_trace(span) -> str:
    return format(span.context.trace_id, "032x")


def compile_spans(run: RealRun) -> list:
    return [s for s in run.spans if s.name == catalog.SPAN_COMPILE]


def truth_compile_ids(run: RealRun) -> set[str]:
    return {s.attributes[catalog.ATTR_COMPILE_ID] for s in compile_spans(run)}


def truth_recompiles(run: RealRun) -> set[tuple[str, tuple[str, ...]]]:
    return {
        (s.attributes[catalog.ATTR_COMPILE_ID], tuple(e.attributes[catalog.ATTR_RECOMPILE_REASONS]))
        for s in compile_spans(run) for e in s.events if e.name == catalog.EVENT_RECOMPILE
    }


def truth_graph_breaks(run: RealRun) -> set[tuple[str, str, int]]:
    return {
        (e.attributes[catalog.ATTR_COMPILE_ID], e.attributes[catalog.ATTR_CODE_FILE], e.attributes[catalog.ATTR_CODE_LINE])
        for s in compile_spans(run) for e in s.events if e.name == catalog.EVENT_GRAPH_BREAK
    }


def truth_artifacts(run: RealRun) -> Counter:
    return Counter(
        (r.log_record.attributes.get(catalog.ATTR_COMPILE_ID), r.log_record.event_name) for r in run.logs
        if (r.log_record.event_name or "").startswith(catalog.ARTIFACT_EVENT_PREFIX)
    )


def report_compile_ids(rep: report.Report) -> set[str]:
    return {compile_id for row in rep.functions for compile_id in row.compile_ids}


def report_artifacts(rep: report.Report) -> Counter:
    return Counter({(row.compile_id, name): n for row in rep.artifacts for name, n in row.counts})


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = report.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("writer", [EMBEDDED, PACKAGE])
def test_one_file_holds_all_three_signals(real_run: RealRun, writer: str):
    path = writer_path(real_run, writer)
    kinds = Counter(next(iter(json.loads(line))) for line in path.read_text().splitlines())
    assert set(kinds) == {"resourceSpans", "resourceLogs", "resourceMetrics"}


@pytest.mark.parametrize("writer", [EMBEDDED, PACKAGE])
def test_report_shows_exactly_what_the_in_memory_exporter_saw(real_run: RealRun, writer: str):
    result = read_files([str(writer_path(real_run, writer))])
    assert result.error_count == 0
    rep = result.report
    assert {"0/0", "0/1", "1/0", "1/1"} <= truth_compile_ids(real_run)
    assert report_compile_ids(rep) == truth_compile_ids(real_run)
    assert rep.compile_spans == len(compile_spans(real_run))

    assert truth_recompiles(real_run)
    assert {(r.compile_id, r.reasons) for r in rep.recompiles} == truth_recompiles(real_run)
    parents = {s.context.span_id: s for s in real_run.spans}
    for span in compile_spans(real_run):
        if catalog.ATTR_RECOMPILE_REASON in span.attributes:
            (row,) = [r for r in rep.recompiles if r.compile_id == span.attributes[catalog.ATTR_COMPILE_ID]]
            assert row.app_span == parents[span.parent.span_id].name == "request"
            assert row.trace_id == hex_trace(span)
            assert row.function == span.attributes[catalog.ATTR_CODE_FUNCTION]

    assert truth_graph_breaks(real_run)
    assert {(r.compile_id, r.file, r.line) for r in rep.graph_breaks} == truth_graph_breaks(real_run)
    assert all(r.file == __file__ and r.count == 1 for r in rep.graph_breaks)  # the span event and its log twin: once

    truth_functions = Counter(s.attributes[catalog.ATTR_CODE_FUNCTION] for s in compile_spans(real_run))
    assert {r.function: r.compiles for r in rep.functions} == truth_functions
    backward = [s for s in real_run.spans if s.name == catalog.SPAN_BACKWARD_COMPILE]
    assert backward and rep.backward_spans == len(backward)
    (loss_row,) = [r for r in rep.functions if r.function == "loss"]
    assert loss_row.backward_compiles == len(backward)
    step_row = next(r for r in rep.functions if r.function == "graph_breaking_step")
    assert step_row.compiles == 2 and step_row.recompiles == 1 and step_row.file == __file__
    truth_step_us = [s.attributes["pytorch.compile.duration_us"] for s in compile_spans(real_run)
                     if s.attributes[catalog.ATTR_CODE_FUNCTION] == "graph_breaking_step"]
    assert step_row.total_us == sum(truth_step_us) and step_row.max_us == max(truth_step_us)
    truth_restarts = [s.attributes[catalog.ATTR_RESTARTS] for s in compile_spans(real_run)
                      if s.attributes[catalog.ATTR_CODE_FUNCTION] == "graph_breaking_step"]
    assert step_row.restarts == sum(truth_restarts) == 2  # the graph break restarts 0/0 and 0/1 once each

    assert report_artifacts(rep) == truth_artifacts(real_run)
    assert {name for _, name in truth_artifacts(real_run)} >= {"pytorch.artifact.recompiles", "pytorch.artifact.guards"}

    for row in rep.caches:
        if row.cache in catalog.CACHES:
            spans = compile_spans(real_run) + backward  # backward compiles count too
            truth = [sum(s.attributes.get(report.cache_count_attribute(row.cache, result), 0) for s in spans)
                     for result in ("hit", "miss")]
            assert [row.span_hits, row.span_misses] == truth

    compile_traces = {hex_trace(s) for s in real_run.spans if s.name.startswith(catalog.SPAN_COMPILE)}
    assert {lane.trace_id for lane in rep.lanes} == compile_traces
    assert {lane.title for lane in rep.lanes} == {"request", "train_step"}

    text = render_text(rep, width=0)
    for compile_id in truth_compile_ids(real_run):
        assert re.search(rf"(?<![\w/]){re.escape(compile_id)}(?![\w/])", text)
    for _, reasons in truth_recompiles(real_run):
        assert all(reason in text for reason in reasons)
    for _, file, line in truth_graph_breaks(real_run):
        assert f"{file}:{line}" in text


def test_main_prints_the_report_and_exits_0(real_run: RealRun):
    code, out, err = run_main(str(real_run.path))
    assert (code, err) == (0, "")  # stderr is no terminal: no progress line
    assert out.startswith("torch-otel report: 1 file,")
    for section in ("Compiles per function", "Recompiles", "Graph breaks", "Cache", "Artifacts per compile id"):
        assert f"\n{section}" in out
    assert "request" in out and "graph_breaking_step" in out
    assert max(len(line) for line in out.splitlines()) <= report.DEFAULT_WIDTH + 40


def test_static_collector_style_file_gives_the_exact_report():
    rep = read_files([str(STATIC)]).report
    assert (rep.lines, rep.span_count, rep.compile_spans, rep.log_count) == (4, 5, 2, 0)
    (function,) = rep.functions
    assert (function.function, function.file, function.line, function.compiles, function.recompiles) == (
        "forward", "/srv/model.py", 41, 2, 1)
    assert (function.total_us, function.max_us, function.compile_ids) == (90_000, 50_000, ("0/0", "0/1"))
    (recompile,) = rep.recompiles
    assert recompile == report.RecompileRow(
        "", "0/1", "forward",
        ("0/0: tensor 'x' size mismatch at index 0. expected 8, actual 16", "0/0: tensor 'x' dtype mismatch"),
        "POST /predict", "0af7651916cd43dd8448eb211c80319c", recompile.time_ns, (("http.request.method", "POST"),),
    )
    (graph_break,) = rep.graph_breaks
    assert (graph_break.compile_id, graph_break.file, graph_break.line) == ("0/0", "/srv/model.py", 47)
    assert report.reason_summary(graph_break.reason) == "Data-dependent branching"
    assert {r.cache: (r.span_hits, r.span_misses) for r in rep.caches}["aotautograd_local"] == (2, 0)
    assert [lane.title for lane in rep.lanes] == ["POST /predict", "POST /predict"]
    assert [bar.depth for bar in rep.lanes[0].bars] == [0, 1, 2]  # app span, torch.compile, entire_frame_compile
    text = render_text(rep)
    assert re.search(r"0/1 +forward +POST /predict +0af7651916cd43dd8448eb211c80319c +0/0: tensor .x. size mismatch", text)


# ---------------------------------------------------------------------------------------------------------------
# Collector-style files: one signal per file, unknown fields
# ---------------------------------------------------------------------------------------------------------------
def _walk(value: Any, visit: Callable[[dict], None]) -> None:
    if isinstance(value, dict):
        visit(value)
        for child in list(value.values()):
            _walk(child, visit)
    elif isinstance(value, list):
        for child in value:
            _walk(child, visit)


def collector_style(line: str) -> str:
    """The same request with fields this reader does not know at every level, and int64s as plain JSON numbers."""
    document = json.loads(line)
    document["x-collector-extension"] = {"anything": [1, "two", None]}
    for signal in ("resourceSpans", "resourceLogs", "resourceMetrics"):
        for resource in document.get(signal, []):
            resource["schemaUrl"] = "https://opentelemetry.io/schemas/1.26.0"
            resource["entityRefs"] = [{"type": "service", "idKeys": ["service.name"]}]
            resource["resource"]["droppedAttributesCount"] = 0
            for scope in resource.get("scopeSpans", []) + resource.get("scopeLogs", []):
                scope["futureScopeField"] = True
                for item in scope.get("spans", []) + scope.get("logRecords", []):
                    item["futureField"] = {"nested": [1, 2, {"x": None}]}
                    item.setdefault("attributes", []).append({"key": "future.value", "value": {"futureKind": {"a": 1}}})

    def numbers(node: dict) -> None:
        if isinstance(node.get("intValue"), str):
            node["intValue"] = int(node["intValue"])

    _walk(document, numbers)
    return json.dumps(document) + "\n"


def test_collector_spans_only_file_with_unknown_fields(real_run: RealRun, tmp_path: Path):
    lines = [collector_style(line) for line in real_run.lines() if line.startswith('{"resourceSpans"')]
    path = tmp_path / "traces.json"
    path.write_text('{"resourceProfiles":[]}\n\n' + "".join(lines))
    result = read_files([str(path)])
    assert result.error_count == 0
    rep = result.report
    assert rep.log_count == 0 and rep.point_count == 0 and not rep.artifacts
    assert report_compile_ids(rep) == truth_compile_ids(real_run)
    assert {(r.compile_id, r.reasons) for r in rep.recompiles} == truth_recompiles(real_run)
    assert {r.app_span for r in rep.recompiles} == {"request"}
    assert {(r.compile_id, r.file, r.line) for r in rep.graph_breaks} == truth_graph_breaks(real_run)


def test_collector_logs_only_file(real_run: RealRun, tmp_path: Path):
    lines = [collector_style(line) for line in real_run.lines() if line.startswith('{"resourceLogs"')]
    path = tmp_path / "logs.json"
    path.write_text("".join(lines))
    code, out, err = run_main(str(path))
    assert (code, err) == (0, "")
    rep = read_files([str(path)]).report
    assert rep.span_count == 0 and not rep.functions
    # the pytorch.recompile and pytorch.graph_break log records carry what the span events carry
    assert {(r.compile_id, r.reasons) for r in rep.recompiles} == truth_recompiles(real_run)
    assert {r.app_span for r in rep.recompiles} == {"?"}  # a log record does not say its span's name ...
    by_id = {s.attributes[catalog.ATTR_COMPILE_ID]: s for s in compile_spans(real_run)}
    for row in rep.recompiles:  # ... but it carries the trace
        assert row.trace_id == hex_trace(by_id[row.compile_id])
    assert {(r.compile_id, r.file, r.line) for r in rep.graph_breaks} == truth_graph_breaks(real_run)
    assert report_artifacts(rep) == truth_artifacts(real_run)
    assert "(no torch.compile spans in the input)" in out


def _write_cache_metrics(path: Path, temporality: str, adds: list[tuple[int, str]]) -> None:
    """Export after every add, encoded as the embedded default encodes (one request per line)."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.sdk.metrics import Counter as CounterInstrument
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

    from torch_otel.exporters.file_export import otlp_json_line

    reader = InMemoryMetricReader(preferred_temporality={CounterInstrument: getattr(AggregationTemporality, temporality)})
    provider = MeterProvider(metric_readers=[reader])
    lookups = provider.get_meter("torch._dynamo").create_counter(catalog.METRIC_CACHE_LOOKUPS)
    with path.open("w") as f:
        for value, result in adds:
            lookups.add(value, {catalog.LABEL_CACHE: "aotautograd_local", catalog.LABEL_CACHE_RESULT: result})
            f.write(otlp_json_line(encode_metrics(reader.get_metrics_data())) + "\n")
    provider.shutdown()


def test_cache_metric_counts_cumulative_totals_once_and_sums_deltas(tmp_path: Path):
    adds = [(3, "hit"), (2, "hit"), (4, "miss")]
    cumulative, delta = tmp_path / "cumulative.jsonl", tmp_path / "delta.jsonl"
    _write_cache_metrics(cumulative, "CUMULATIVE", adds)
    _write_cache_metrics(delta, "DELTA", adds)
    assert len(cumulative.read_text().splitlines()) == 3  # running totals, exported again and again
    for paths, factor in (([cumulative], 1), ([delta], 1), ([cumulative, delta], 2)):
        rep = read_files([str(p) for p in paths]).report
        row = {r.cache: r for r in rep.caches}["aotautograd_local"]
        assert (row.metric_hits, row.metric_misses) == (5 * factor, 4 * factor)
        assert row.span_hits is None
    code, out, _ = run_main(str(cumulative))
    assert code == 0 and re.search(r"aotautograd_local\s+-\s+-\s+5\s+4", out)


def test_gzip_files_are_read_and_zstd_ones_refused_clearly(tmp_path: Path):
    compressed = tmp_path / "traces.jsonl.gz"
    compressed.write_bytes(gzip.compress(STATIC.read_bytes()))
    plain = read_files([str(STATIC)]).report
    assert read_files([str(compressed)]).report == dataclasses.replace(plain, files=(str(compressed),))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(compressed.read_bytes()[:-40])
    code, out, err = run_main(str(cut))
    assert code == 1 and "3 spans (2 torch.compile" in out  # what was read before the cut
    assert re.match(rf"torch-otel report: {re.escape(str(cut))}:\d+: cannot read further: ", err)
    zstd = tmp_path / "traces.jsonl.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    code, out, err = run_main(str(zstd))
    assert (code, out) == (2, "") and err.count("\n") == 1 and "zstd" in err and str(zstd) in err


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------
def test_malformed_and_truncated_lines_are_named_and_the_rest_reported(real_run: RealRun, tmp_path: Path):
    lines = real_run.lines()
    bad = tmp_path / "damaged.jsonl"
    longest = max(lines, key=len)
    bad.write_text("".join(lines[:3]) + "garbage, not JSON\n" + "".join(lines[3:]) + longest[: len(longest) // 2])
    garbage_line, truncated_line = 4, len(lines) + 2
    code, out, err = run_main(str(bad))
    assert code == 1
    error_lines = err.splitlines()
    assert len(error_lines) == 3
    assert error_lines[0].startswith(f"torch-otel report: {bad}:{garbage_line}: invalid JSON")
    assert error_lines[1].startswith(f"torch-otel report: {bad}:{truncated_line}: truncated JSON")
    assert "2 malformed lines skipped" in error_lines[2]
    good = read_files([str(real_run.path)]).report
    damaged = read_files([str(bad)]).report
    assert damaged.recompiles == good.recompiles and damaged.graph_breaks == good.graph_breaks
    assert damaged.functions == good.functions and damaged.artifacts == good.artifacts
    for compile_id in truth_compile_ids(real_run):
        assert compile_id in out


def test_error_lines_are_capped_with_a_total(tmp_path: Path):
    path = tmp_path / "mostly-bad.jsonl"
    path.write_text("".join(f"[{i}]\n" for i in range(12)) + STATIC.read_text())
    code, out, err = run_main(str(path))
    assert code == 1
    shown = [re.match(rf"torch-otel report: {re.escape(str(path))}:(\d+): ", line) for line in err.splitlines()]
    assert [int(match.group(1)) for match in shown if match] == [1, 2, 3, 4, 5]
    assert "12 malformed lines skipped of 16; the first 5 shown" in err
    assert "POST /predict" in out  # the good lines are still reported


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_file_is_one_line_and_exit_2(tmp_path: Path, kind: str):
    path = tmp_path / "nope.jsonl"
    if kind == "directory":
        path.mkdir()
    code, out, err = run_main(str(STATIC), str(path))
    assert (code, out) == (2, "")
    assert err == f"torch-otel report: {path}: {'no such file' if kind == 'missing' else 'is a directory'}\n"


def test_usage_errors_exit_2_and_help_exits_0():
    code, out, err = run_main()
    assert code == 2 and "usage: torch-otel report" in err and out == ""
    code, out, err = run_main("--help")
    assert code == 0 and "--html OUT" in out and err == ""


def test_text_output_has_no_terminal_control_sequences():
    span = json.loads(STATIC.read_text().splitlines()[1])
    for attribute in span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]:
        if attribute["key"] == catalog.ATTR_CODE_FUNCTION:
            attribute["value"]["stringValue"] = "\x1b[2J\x1b[31mevil\nname\u2028\ud800"
    text = render_text(report.build_report([parse_line(json.dumps(span))]))
    assert "\x1b" not in text and "\ud800" not in text and "\u2028" not in text
    assert "[2J [31mevil name" in text
    text.encode("utf-8")  # printable


def test_progress_is_shown_only_when_enabled_and_cleared():
    stream = io.StringIO()
    Progress(stream, 1000, enabled=False, interval=0, delay=0).update(500, "x.jsonl")
    assert stream.getvalue() == ""
    progress = Progress(stream, 2 * 1024 * 1024, enabled=True, interval=0, delay=0)
    progress.update(1024 * 1024, "/some/where/x.jsonl")
    assert stream.getvalue() == "\rtorch-otel report: reading x.jsonl  50% (1.0 MB of 2.0 MB)"
    progress.close()
    assert stream.getvalue().endswith("\r" + " " * 58 + "\r")


# ---------------------------------------------------------------------------------------------------------------
# Exhausting input: read limits
# ---------------------------------------------------------------------------------------------------------------
def gzip_of(path: Path, *parts: tuple[bytes, int]) -> Path:
    """A gzip file of each ``(block, times)`` in turn, made by streaming (a bomb costs little to write)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    with path.open("wb") as f:
        for block, times in parts:
            for _ in range(times):
                f.write(packer.compress(block))
        f.write(packer.flush())
    return path


def assert_limit_error(code: int, err: str, path: Any, limit: str, name: str) -> None:
    """Exit 1 and, on stderr, one paragraph (one line) naming the file, the limit and which limit; no traceback."""
    assert code == 1, err
    assert "Traceback" not in err and "Error:" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"torch-otel report: {path}: ") and f" {limit}, the limit on one " in err and name in err


def test_gzip_bomb_without_newlines_stops_at_the_line_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(reading, "MAX_LINE_BYTES", 256 * 1024)
    monkeypatch.setattr(reading, "READ_CHUNK_BYTES", 64 * 1024)
    bomb = gzip_of(tmp_path / "bomb.jsonl.gz", (b"\0" * 65536, 256))  # 16 MiB inflated, no newline
    code, out, err = run_main(str(STATIC), str(bomb))
    assert_limit_error(code, err, bomb, "256 KiB", "--max-line-bytes")
    assert "line 1 is longer than 256 KiB, the limit on one line (--max-line-bytes, counted after gzip" in err
    assert "POST /predict" in out  # the other file is still reported


def test_dev_zero_stops_at_the_line_limit():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    code, out, err = run_main("/dev/zero")
    assert_limit_error(code, err, "/dev/zero", "64 MiB", "--max-line-bytes")
    assert "1 file, 0 lines" in out


def test_dev_zero_under_a_memory_limit_ends_with_the_limit_error():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    resource = pytest.importorskip("resource")
    script = Path(sys.executable).with_name("torch-otel")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "torch_otel.tools.cli"]

    def one_gib_of_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    done = subprocess.run([*command, "report", "/dev/zero"], check=False, preexec_fn=one_gib_of_memory,
                          capture_output=True, text=True, timeout=120)
    assert_limit_error(done.returncode, done.stderr, "/dev/zero", "64 MiB", "--max-line-bytes")


def test_many_blank_lines_are_read_up_to_the_file_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(reading, "READ_CHUNK_BYTES", 64 * 1024)
    blank = gzip_of(tmp_path / "blank.jsonl.gz", (b"\n" * 65536, 64), (b" \r\n\t\n", 1000), (STATIC.read_bytes(), 1))
    code, out, err = run_main(str(blank))  # 4 MiB of blank lines, then the real ones: all read, quickly
    assert (code, err) == (0, "")
    lines = 64 * 65536 + 2000 + STATIC.read_bytes().count(b"\n")
    assert f"1 file, {lines} lines: 5 spans" in out
    assert "POST /predict" in out
    monkeypatch.setattr(reading, "MAX_FILE_BYTES", 1024 * 1024)
    code, out, err = run_main(str(blank))
    assert_limit_error(code, err, blank, "1 MiB", "--max-file-bytes")
    assert "longer than 1 MiB, the limit on one file (--max-file-bytes, counted after gzip decompression)" in err
    assert f"stopped in line {1024 * 1024 + 1} and the {1024 * 1024} lines before it" in err
    assert "POST /predict" not in out


def test_a_line_over_the_limit_stops_its_file_and_one_at_the_limit_is_only_malformed(tmp_path: Path,
                                                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(reading, "MAX_LINE_BYTES", 16 * 1024)
    monkeypatch.setattr(reading, "READ_CHUNK_BYTES", 1000)  # lines cross chunk ends
    good = STATIC.read_bytes()
    first = good.count(b"\n")
    at_limit = tmp_path / "at-limit.jsonl"
    at_limit.write_bytes(good + b"x" * (16 * 1024) + b"\n" + good)
    code, out, err = run_main(str(at_limit))
    assert code == 1 and err.startswith(f"torch-otel report: {at_limit}:{first + 1}: invalid JSON")
    assert "--max-line-bytes" not in err and f"1 malformed line skipped of {2 * first + 1}" in err
    over = tmp_path / "over.jsonl"
    over.write_bytes(good + b"x" * (16 * 1024 + 1) + b"\n" + good)
    code, out, err = run_main(str(over))
    assert_limit_error(code, err, over, "16 KiB", "--max-line-bytes")
    assert f"line {first + 1} is longer than 16 KiB" in err and f"the {first} lines before it are reported" in err
    assert f"1 file, {first} lines: 5 spans" in out  # what came before the long line
    code, out, err = run_main(str(over), "--max-line-bytes", "17KiB")  # raised: the line is only malformed
    assert code == 1 and "1 malformed line skipped of 9" in err and "--max-line-bytes" not in err


def test_limit_options_take_sizes(tmp_path: Path):
    path = tmp_path / "twice.jsonl"
    path.write_bytes(STATIC.read_bytes() * 2)
    code, out, err = run_main(str(path), "--max-file-bytes", str(len(STATIC.read_bytes()) + 10))
    assert_limit_error(code, err, path, f"{len(STATIC.read_bytes()) + 10} bytes", "--max-file-bytes")
    assert "stopped in line 5 and the 4 lines before it are reported" in err and "1 file, 4 lines: 5 spans" in out
    assert run_main(str(path), "--max-file-bytes", "1MiB", "--max-line-bytes", "8k")[0] == 0
    for bad in ("0", "1x", "-5", "1.5MiB", ""):
        code, out, err = run_main(str(path), "--max-line-bytes", bad)
        assert code == 2 and out == "" and "--max-line-bytes" in err and "Traceback" not in err


def test_a_pipe_is_read_without_losing_its_first_bytes(tmp_path: Path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes")
    fifo = tmp_path / "pipe.jsonl.gz"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("wb") as f:
            f.write(gzip.compress(STATIC.read_bytes()))

    thread = threading.Thread(target=write)
    thread.start()
    try:
        piped = read_files([str(fifo)])
    finally:
        thread.join(10)
    assert piped.error_count == 0
    assert piped.report == dataclasses.replace(read_files([str(STATIC)]).report, files=(str(fifo),))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r\n", b" ", b"\t", b"{}", b"x", b"\xff", b"ab\rc"]), max_size=60),
       st.integers(1, 9))
def test_chunked_line_splitting_matches_python_lines(pieces: list[bytes], chunk: int):
    data = b"".join(pieces)
    expected = [(n, line.removesuffix(b"\n")) for n, line in enumerate(io.BytesIO(data), 1) if line.strip()]
    old_chunk = reading.READ_CHUNK_BYTES
    reading.READ_CHUNK_BYTES = chunk
    try:
        events = list(reading._iter_lines("-", io.BytesIO(data)))
    finally:
        reading.READ_CHUNK_BYTES = old_chunk
    assert [(n, line) for n, line, _ in events if line is not None] == expected
    assert events[-1][0] == len(io.BytesIO(data).readlines())  # the count of lines, blank ones too
    assert events[-1][2] == len(data)


def test_progress_moves_through_blank_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(reading, "READ_CHUNK_BYTES", 64 * 1024)
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n" * (256 * 1024))
    stream = io.StringIO()
    read_files([str(path)], Progress(stream, path.stat().st_size, enabled=True, interval=0, delay=0))
    shown = [int(percent) for percent in re.findall(r"reading blank\.jsonl +(\d+)%", stream.getvalue())]
    assert len(shown) >= 4 and shown == sorted(shown) and shown[-1] == 100  # a tick per chunk read, not per line


# ---------------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------------
class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_self_contained(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            assert name not in attrs or not re.match(r"\s*(https?:)?//", attrs[name] or ""), (tag, attrs)
        assert tag not in ("link", "iframe", "img", "object", "embed", "base")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(", page)
    assert [attrs.get("src") for tag, attrs in parser.tags if tag == "script"] == [None, None]
    assert page.count("</script>") == 2
    return parser


def test_html_is_self_contained_and_shows_compiles_and_reasons(real_run: RealRun, tmp_path: Path):
    out_html = tmp_path / "report.html"
    code, out, err = run_main(str(real_run.path), "--html", str(out_html))
    assert code == 0 and err == f"torch-otel report: wrote {out_html}\n"
    page = out_html.read_text(encoding="utf-8")
    tags = assert_self_contained(page)
    bars = [attrs for tag, attrs in tags.tags if tag == "div" and "bar" in (attrs.get("class") or "").split()]
    assert len(bars) == len([s for s in real_run.spans if any(
        hex_trace(s) == hex_trace(c) for c in real_run.spans if c.name.startswith(catalog.SPAN_COMPILE))])
    for compile_id in truth_compile_ids(real_run):
        assert re.search(rf">torch\.compile {re.escape(compile_id)}( · [^<]*)?</div>", page)  # a recompile: its reason
    for _, reasons in truth_recompiles(real_run):
        for reason in reasons:
            assert markupsafe.escape(reason) in page  # escaped as the template engine escapes
    recompile_bars = [attrs for attrs in bars if "k-recompile" in attrs["class"]]
    assert len(recompile_bars) == len(truth_recompiles(real_run))
    assert all(re.search(r"^recompile [0-9/]+: ", attrs["title"], re.M) for attrs in recompile_bars)  # on hover
    data = json.loads(re.search(r'<script type="application/json" id="span-data">(.*?)</script>', page, re.S).group(1))
    assert len(data) == len(bars)
    assert {d["a"].get(catalog.ATTR_COMPILE_ID) for d in data if d["n"] == catalog.SPAN_COMPILE} == truth_compile_ids(real_run)


def test_html_escapes_a_script_injected_as_function_and_span_name(real_run: RealRun, tmp_path: Path):
    payload = "<script>alert(1)</script>"

    def inject(node: dict) -> None:
        if node.get("key") == catalog.ATTR_CODE_FUNCTION:
            node["value"] = {"stringValue": payload}
        if node.get("name") == "request":
            node["name"] = payload + '"onmouseover="alert(2)'

    lines = []
    for line in real_run.lines():
        document = json.loads(line)
        _walk(document, inject)
        lines.append(json.dumps(document) + "\n")
    path = tmp_path / "injected.jsonl"
    path.write_text("".join(lines))
    out_html = tmp_path / "injected.html"
    code, out, _ = run_main(str(path), "--html", str(out_html))
    assert code == 0
    page = out_html.read_text(encoding="utf-8")
    assert payload not in page and "<script>alert" not in page
    assert html.escape(payload) in page
    assert '"onmouseover="' not in page
    assert_self_contained(page)
    assert payload in out  # the terminal shows it as the text it is


@pytest.mark.parametrize("injected", ["</script><script>alert(1)</script>", "<!--", "]]>", "\u2028"])
def test_html_embeds_span_data_safely(injected: str):
    line = json.loads(STATIC.read_text().splitlines()[0])
    line["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["attributes"].append(
        {"key": "user.note", "value": {"stringValue": injected}})
    page = render_html(report.build_report([parse_line(json.dumps(line))]))
    assert_self_contained(page)
    blob = re.search(r'<script type="application/json" id="span-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in blob and any(d["a"].get("user.note") == injected for d in json.loads(blob))


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) bytes of an 8-bit truecolor PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        position += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0
    channels = 3 if color == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, up_left = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, channels)]


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium); "
                                               "it renders the HTML report headless for a screenshot")
def test_html_renders_in_headless_chromium(real_run: RealRun, tmp_path: Path):
    page, png, profile = tmp_path / "report.html", tmp_path / "shot.png", tmp_path / "profile"
    assert run_main(str(real_run.path), "--html", str(page))[0] == 0
    completed = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         f"--screenshot={png}", "--window-size=1400,900", page.as_uri()],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )
    assert png.exists(), completed.stderr[-2000:]
    width, height, pixels = _png_pixels(png.read_bytes())
    assert (width, height) == (1400, 900)
    colors = Counter(pixels)
    assert len(colors) > 50 and png.stat().st_size > 10_000  # text, bars, tables: not a blank page

    def near(rgb: tuple[int, int, int]) -> int:
        return sum(n for color, n in colors.items() if all(abs(c - r) <= 4 for c, r in zip(color, rgb)))

    assert near((0x3B, 0x7D, 0xD8)) > 500  # torch.compile bars
    assert near((0xE8, 0x87, 0x1E)) > 500  # recompile bars
    assert near((0x9C, 0xC3, 0xEE)) > 500  # phase bars


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing: parse_line raises ReportParseError or returns; what it returns can always be reported
# ---------------------------------------------------------------------------------------------------------------
def parses_or_says_why(line: str | bytes) -> report.Batch | None:
    try:
        batch = parse_line(line)
    except ReportParseError as error:
        assert str(error)
        event("rejected")
        return None
    event("parsed: " + ("with items" if batch.spans or batch.logs or batch.points else "empty"))
    return batch


def reports(batch: report.Batch | None) -> None:
    if batch is None:
        return
    rep = report.build_report([batch])
    render_text(rep)
    render_text(rep, width=0)
    render_html(rep)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(st.text())
def test_fuzz_arbitrary_text(line: str):
    reports(parses_or_says_why(line))


@FUZZ
@given(st.binary())
def test_fuzz_arbitrary_bytes(line: bytes):
    reports(parses_or_says_why(line))


@FUZZ
@given(json_values)
def test_fuzz_arbitrary_json_values(value: Any):
    reports(parses_or_says_why(json.dumps(value)))


def _otlp_shaped() -> st.SearchStrategy[dict]:
    """Well-formed export requests full of torch-otel's names and edge values (NaN, 64-bit extremes, base64 ids,
    dangling parents, repeated ids), so that what parses is pushed through the builder and both renderers; the
    wrong kinds of values are test_fuzz_real_lines_with_one_value_replaced's job."""

    def obj(fields: dict, optional: dict | None = None) -> st.SearchStrategy:
        return st.fixed_dictionaries(fields, optional=optional or {})

    ids = st.sampled_from(["", "5b8efff798038103d269b633813fc60c", "00f067aa0ba902b7", "b7ad6b7169203331",
                           "AAECAwQFBgc="])
    int64 = st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1).map(str), st.integers(0, 2**64 - 1))
    scalar_values = st.one_of(
        obj({"stringValue": st.one_of(st.sampled_from(["0/0", "0/1", "1/0", "!0/0/1", "request", "hit", "miss",
                                                      "aotautograd_local"]), st.text())}),
        obj({"intValue": int64}),
        obj({"doubleValue": st.one_of(st.floats(), st.sampled_from(["NaN", "Infinity", "-Infinity"]))}),
        obj({"boolValue": st.booleans()}),
        obj({"bytesValue": st.text()}),
    )
    any_value = st.recursive(
        scalar_values,
        lambda inner: st.one_of(
            obj({"arrayValue": obj({"values": st.lists(inner, max_size=3)})}),
            obj({"kvlistValue": obj({"values": st.lists(obj({"key": st.text(max_size=8), "value": inner}), max_size=3)})}),
        ),
        max_leaves=3,
    )
    keys = st.sampled_from([catalog.ATTR_COMPILE_ID, catalog.ATTR_CODE_FUNCTION, catalog.ATTR_CODE_FILE,
                            catalog.ATTR_CODE_LINE, catalog.ATTR_RECOMPILE_REASON, catalog.ATTR_RECOMPILE_REASONS,
                            catalog.ATTR_GRAPH_BREAK_REASON, catalog.ATTR_PHASE, catalog.ATTR_ARTIFACT,
                            catalog.LABEL_CACHE, catalog.LABEL_CACHE_RESULT, report.ATTR_DURATION_US,
                            catalog.ATTR_LIMIT_TYPE, catalog.RESOURCE_RANK, "service.name",
                            report.cache_count_attribute("aotautograd_local", "hit"), "other"])
    attributes = st.lists(obj({"key": keys, "value": any_value}), max_size=4)
    names = st.sampled_from([catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE, "request", "bytecode_tracing",
                             catalog.EVENT_RECOMPILE, catalog.EVENT_GRAPH_BREAK, catalog.EVENT_RECOMPILE_LIMIT,
                             catalog.artifact_event_name("guards"), catalog.METRIC_CACHE_LOOKUPS, ""])
    event = obj({"name": names, "timeUnixNano": int64, "attributes": attributes})
    span = obj({
        "traceId": ids, "spanId": ids, "parentSpanId": ids, "name": names, "startTimeUnixNano": int64,
        "endTimeUnixNano": int64, "attributes": attributes, "events": st.lists(event, max_size=2),
    }, optional={
        "links": st.lists(obj({"traceId": ids, "spanId": ids}), max_size=2),
        "status": obj({"code": st.one_of(st.integers(0, 2), st.just("STATUS_CODE_ERROR")),
                       "message": st.text(max_size=20)}),
    })
    log = obj({"eventName": names, "timeUnixNano": int64, "traceId": ids, "spanId": ids, "attributes": attributes},
              optional={"body": any_value, "observedTimeUnixNano": int64})
    point = obj({"attributes": attributes, "timeUnixNano": int64, "startTimeUnixNano": int64},
                optional={"asInt": int64, "asDouble": st.floats(), "sum": st.floats(), "count": int64})
    metric = obj({"name": names}, optional={
        kind: obj({"dataPoints": st.lists(point, max_size=3)},
                  optional={"aggregationTemporality": st.one_of(st.integers(0, 2), st.just("AGGREGATION_TEMPORALITY_DELTA"))})
        for kind in ("sum", "gauge", "histogram")})
    resource = obj({"attributes": attributes})

    def request(signal: str, scopes: str, items_key: str, items: st.SearchStrategy) -> st.SearchStrategy:
        scope = obj({"scope": obj({"name": names}), items_key: st.lists(items, min_size=1, max_size=3)})
        container = obj({"resource": resource, scopes: st.lists(scope, min_size=1, max_size=2)})
        return obj({signal: st.lists(container, min_size=1, max_size=2)})

    return st.one_of(request("resourceSpans", "scopeSpans", "spans", span),
                     request("resourceLogs", "scopeLogs", "logRecords", log),
                     request("resourceMetrics", "scopeMetrics", "metrics", metric))


@FUZZ
@given(_otlp_shaped())
def test_fuzz_otlp_shaped_requests(request: dict):
    reports(parses_or_says_why(json.dumps(request)))


@pytest.mark.parametrize("count", ["0\x1f", " 7 ", "\u20037", "-1", "1e3"])
def test_odd_cache_counts_in_strings_never_break_the_report(count):
    """Found by the fuzz test above: str.strip() removes "\\x1f", int() does not accept it."""
    from torch_otel import catalog

    attribute = report.cache_count_attribute(catalog.CACHES[0], "hit")
    span = {"traceId": "", "spanId": "", "name": "torch.compile", "startTimeUnixNano": "0", "endTimeUnixNano": "0",
            "attributes": [{"key": attribute, "value": {"stringValue": count}}]}
    request = {"resourceSpans": [{"resource": {"attributes": []},
                                  "scopeSpans": [{"scope": {"name": "torch.compile"}, "spans": [span]}]}]}
    reports(parse_line(json.dumps(request)))


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


@FUZZ
@given(data=st.data())
def test_fuzz_real_lines_with_one_value_replaced(real_run: RealRun, data: st.DataObject):
    line = data.draw(st.sampled_from(real_run.lines()))
    document = json.loads(line)
    path = data.draw(st.sampled_from(_paths(document)[1:]))
    mutated = copy.deepcopy(document)
    parent = mutated
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = data.draw(json_values)
    reports(parses_or_says_why(json.dumps(mutated)))


def test_every_prefix_of_a_real_line_parses_or_says_why(real_run: RealRun):
    for signal in ("resourceSpans", "resourceLogs", "resourceMetrics"):
        line = min((line for line in real_run.lines() if line.startswith(f'{{"{signal}"')), key=len).rstrip("\n")
        outcomes = Counter()
        for cut in range(1, len(line)):
            with pytest.raises(ReportParseError) as error:
                parse_line(line[:cut])
            outcomes[str(error.value).split(":")[0]] += 1
        assert outcomes == {"truncated JSON": len(line) - 1}, signal  # every cut is named as one
        assert parse_line(line[:0]) == report.Batch()  # a blank line is no error
        assert parse_line(line) != report.Batch()


def test_a_closed_stdout_is_no_traceback(tmp_path):
    """`torch-otel report FILE --html OUT >&-`: the terminal view goes nowhere, the page is still written."""
    page = tmp_path / "page.html"
    done = subprocess.run([str(Path(sys.executable).parent / "torch-otel"), "report",
                           str(DATA / "collector_traces.jsonl"), "--html", str(page)],
                          preexec_fn=lambda: os.close(1), capture_output=False, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert page.stat().st_size > 0


# ---------------------------------------------------------------------------------------------------------------
# A serving run (tests/data/report/serve.jsonl, made by make_fixtures.sh): who paid, nothing that matters cut
# ---------------------------------------------------------------------------------------------------------------
SERVE = DATA / "serve.jsonl"


def _text_section(text: str, title: str) -> str:
    match = re.search(rf"^{re.escape(title)}\n.*?(?=^\S|\Z)", text, re.M | re.S)
    assert match, f"no section {title!r} in\n{text}"
    return match.group(0)


def test_recompiles_name_the_request_that_paid_with_its_attributes():
    rep = read_files([str(SERVE)]).report
    paid = {r.compile_id: dict(r.app_attributes) for r in rep.recompiles}
    assert paid["0/1"]["request.id"] == "req-103" and paid["0/1"]["seq_len"] == 48  # the first call at 48 ...
    assert paid["0/2"]["request.id"] == "req-104"  # ... and the first with scale 3.5
    assert all(r.app_span == "POST /v1/generate" for r in rep.recompiles)
    table = {t.key: t for t in report.report_tables(rep)}["recompiles"]
    assert {row[0]: row[2] for row in table.rows}["0/1"] == "POST /v1/generate id=req-103 seq_len=48"
    for width in (report.DEFAULT_WIDTH, 120):
        recompiles = _text_section(render_text(rep, width), "Recompiles")
        assert "POST /v1/generate id=req-103 seq_len=48" in recompiles
        assert "POST /v1/generate id=req-104 seq_len=48" in recompiles


@pytest.mark.parametrize("width", [report.DEFAULT_WIDTH, 120, 100, 80])
def test_line_numbers_and_numbers_in_reasons_are_never_cut(width: int):
    rep = read_files([str(SERVE)]).report
    path = rep.graph_breaks[0].file
    assert len(path) > 90 and path.endswith("/handlers/model_step.py")
    text = render_text(rep, width)
    for row in rep.graph_breaks:
        assert re.search(rf"…/\S*model_step\.py:{row.line}\s", _text_section(text, "Graph breaks"))
    for row in rep.functions:  # in its column, or on a line of its own under the row when the width is short
        assert re.search(rf"model_step\.py:{row.line}(\s|$)", _text_section(text, "Compiles per function"), re.M)
    recompiles = _text_section(text, "Recompiles")
    assert not re.search(r"[0-9]…|…[0-9]", recompiles)  # nothing cut next to a digit
    reason_column = recompiles.splitlines()[1].index("reason")
    joined = " ".join(line[reason_column:].strip() for line in recompiles.splitlines()[3:])
    for row in rep.recompiles:
        for reason in row.reasons:
            shown = report.formatting.compact_reason(reason, 40)
            assert shown in joined, (shown, joined)  # wrapped between words, whole
            for number in re.findall(r"(?<![\w.])[0-9]+(?:\.[0-9]+)?", reason.split("\n")[0]):
                assert re.search(rf"(?<![\w.]){re.escape(number)}(?![0-9])", joined)


def test_torch_alignment_padding_is_squeezed_and_its_pointer_kept():
    rep = read_files([str(SERVE)]).report
    (scale,) = [reason for r in rep.recompiles for reason in r.reasons if "scale ==" in reason]
    assert re.search(r"scale == 2\.0 {10,}#", scale) and "User stack trace" in scale  # torch's padding and stack
    shown = report.formatting.compact_reason(scale)
    assert re.fullmatch(r"0/1: scale == 2\.0  # y = torch\.sin\(x\) \* scale \+ mask\.float\(\)\.sum\(\)  "
                        r"# \S*…/\S*handlers/model_step\.py:10 in model_step", shown), shown
    assert report.formatting.compact_reason(scale, 0).endswith(
        "/project_with_a_long_name/src/model_package/serving/handlers/model_step.py:10 in model_step")


def test_resume_functions_read_as_the_continuation_after_a_graph_break():
    assert report.formatting.function_label("torch_dynamo_resume_in_f_at_20") == "f (resumed after line 20)"
    assert report.formatting.function_label("torch_dynamo_resume_in_torch_dynamo_resume_in_f_at_20_at_25") == (
        "f (resumed after line 20) (resumed after line 25)")
    assert report.formatting.function_label("forward") == "forward"
    rep = read_files([str(SERVE)]).report
    assert "torch_dynamo_resume_in_model_step_at_11" in {r.function for r in rep.functions}  # the model keeps torch's
    text = render_text(rep)
    assert "torch_dynamo_resume_in" not in text
    assert "model_step (resumed after line 11)" in _text_section(text, "Compiles per function")
    assert "model_step (resumed after line 11)" in _text_section(text, "Recompiles")


def test_a_backend_without_caches_shows_no_cache_rows():
    rep = read_files([str(SERVE)]).report  # backend="eager": every cache count is 0
    assert all(not (r.span_hits or r.span_misses) for r in rep.caches)
    cache = _text_section(render_text(rep), "Cache")
    assert "no cache lookups in the input" in cache and "inductor_fx" not in cache


@given(st.lists(st.text("abc_-.", min_size=1, max_size=30), min_size=1, max_size=12), st.integers(0, 99999),
       st.integers(8, 120))
def test_location_keeps_the_line_and_the_file_name(parts: list[str], line: int, width: int):
    path = "/" + "/".join(parts)
    shown = report.location(path, line, width)
    assert shown.endswith(f":{line}") and len(shown) <= max(width, len(f"…:{line}") + 1)
    base = parts[-1]
    if len(base) + len(str(line)) + 3 <= width:
        assert shown.endswith(f"{base}:{line}")
    if len(path) + len(str(line)) + 1 <= width:
        assert shown == f"{path}:{line}"


@given(st.text(" ab1234567890.,/", max_size=200), st.integers(1, 60))
def test_wrap_loses_nothing_and_fits(text: str, width: int):
    lines = report.formatting.wrap(text, width)
    assert all(len(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_request_label_leads_with_what_identifies_a_request():
    label = report.formatting.request_label
    attributes = {"http.route": "/v1/generate", "seq_len": 48, "request.id": "req-7", "pytorch.compile.id": "0/1",
                  "user.agent": "curl"}
    assert label("POST /v1/generate", attributes) == "POST /v1/generate id=req-7 seq_len=48 agent=curl"
    assert label("train_step", {"training.step": 3}) == "train_step step=3"
    assert len(label("x" * 100, attributes, 40)) == 40 and label("x" * 100, attributes, 0).startswith("x" * 100)


# ---------------------------------------------------------------------------------------------------------------
# Fitting the width, outputs that would destroy inputs, recompile limits, huge reasons
# ---------------------------------------------------------------------------------------------------------------
LIMIT = DATA / "limit.jsonl"
STUCK = [DATA / "stuck0.jsonl", DATA / "stuck1.jsonl"]


@pytest.mark.parametrize("width", [120, 80])
@pytest.mark.parametrize("files", [[SERVE], [LIMIT], STUCK, [DATA / "rank0.jsonl", DATA / "rank1.jsonl"]],
                         ids=["serve", "limit", "stuck", "ranks"])
def test_every_line_fits_the_width_and_nothing_that_matters_is_lost(width: int, files: list[Path]):
    rep = read_files([str(p) for p in files]).report
    wide = render_text(rep, report.DEFAULT_WIDTH)
    code, text, _ = run_main(*map(str, files), "--width", str(width))
    assert code == 0 and text != wide
    assert [line for line in text.splitlines() if len(line) > width] == []
    for row in rep.functions:  # file name and :LINE of every function, whole
        assert re.search(rf"{re.escape(Path(row.file).name)}:{row.line}(\s|$)", text, re.M), (row, text)
    for row in rep.recompiles:  # the request that paid, and every number of its reasons
        recompiles = _text_section(text, "Recompiles")
        assert trigger(row.app_span, row.app_attributes) in recompiles
        joined = " ".join(recompiles.split())
        for reason in row.reasons:
            for number in re.findall(r"(?<![\w.])[0-9]+(?:\.[0-9]+)?", reason.split("\n")[0]):
                assert re.search(rf"(?<![\w.]){re.escape(number)}(?![0-9])", joined)
        assert row.trace_id[:8] in recompiles
    if rep.recompiles and width < 160:
        assert not any(row.trace_id in text for row in rep.recompiles)  # 8 hex digits only: a search still finds it


def test_columns_environment_sets_the_width(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    code, wide, _ = run_main(str(SERVE))
    assert code == 0 and max(len(line) for line in wide.splitlines()) > 80  # 160 when stdout is not a terminal
    monkeypatch.setenv("COLUMNS", "80")
    code, narrow, _ = run_main(str(SERVE))
    assert code == 0 and narrow == render_text(read_files([str(SERVE)]).report, 80)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    code, whole, _ = run_main(str(SERVE), "--width", "0")  # --width wins over COLUMNS
    assert whole == render_text(read_files([str(SERVE)]).report, 0)


@pytest.mark.parametrize("options", [["--html", "{input}"], ["--perfetto", "{link}"], ["--html", "{out}", "--perfetto",
                                     "{out_again}"]], ids=["html-is-input", "perfetto-is-input-via-link", "both-same"])
def test_an_output_that_would_overwrite_an_input_or_the_other_output_is_refused(tmp_path: Path, options: list[str]):
    source = tmp_path / "run.jsonl"
    shutil.copy(LIMIT, source)
    (tmp_path / "link.jsonl").symlink_to(source)
    (tmp_path / "out.html").write_text("keep me")
    paths = {"input": str(source), "link": str(tmp_path / "link.jsonl"), "out": str(tmp_path / "out.html"),
             "out_again": str(tmp_path / "." / "out.html")}
    argv = [str(source), *(option.format(**paths) for option in options)]
    code, out, err = run_main(*argv)
    assert code == report.EXIT_USAGE and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "Nothing was read or written" in err
    named = options[1].format(**paths)
    assert named in err
    assert source.read_bytes() == LIMIT.read_bytes() and (tmp_path / "out.html").read_text() == "keep me"


def test_a_dash_output_goes_to_stdout_instead_of_the_terminal_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(str(LIMIT), "--perfetto", "-")
    assert code == 0 and json.loads(out)["traceEvents"] and not (tmp_path / "-").exists()
    code, out, err = run_main(str(LIMIT), "--html", "-", "--perfetto", "trace.json")
    assert code == 0 and out.startswith("<!doctype html>") and json.loads((tmp_path / "trace.json").read_text())
    code, out, err = run_main(str(LIMIT), "--html", "-", "--perfetto", "-")
    assert code == report.EXIT_USAGE and out == "" and "both ask for stdout" in err and not (tmp_path / "-").exists()


def test_a_recompile_limit_hit_is_counted_as_a_limit_not_a_failure_or_a_recompile():
    limits = {}
    for line in LIMIT.read_text().splitlines():
        for resource in json.loads(line).get("resourceSpans", []):
            for span in resource["scopeSpans"][0]["spans"]:
                events = [e for e in span.get("events", []) if e["name"] == catalog.EVENT_RECOMPILE_LIMIT]
                if events:
                    attributes = {a["key"]: a["value"]["stringValue"] for a in events[0]["attributes"]
                                  if "stringValue" in a["value"]}
                    function = attributes[catalog.ATTR_CODE_FUNCTION]
                    limits.setdefault(function, []).append(attributes[catalog.ATTR_LIMIT_ACTION])
    assert limits == {"scale_by": ["run_eager"], "shift_by": ["raise", "raise"]}
    rep = read_files([str(LIMIT)]).report
    rows = {row.function: row for row in rep.functions}
    for function, actions in limits.items():
        row = rows[function]
        assert (row.limit_hits, row.failures, row.compiles, row.recompiles) == (len(actions), 0, 2, 1)
        assert all(not compile_id.endswith(("/2", "/3")) for compile_id in row.compile_ids)
    table = {t.key: t for t in report.report_tables(rep)}["functions"]
    failed, limit_hits = table.headers.index("failed"), table.headers.index("limit hits")
    assert {(row[failed], row[limit_hits]) for row in table.rows} == {("0", "1"), ("0", "2")}
    page = render_html(rep)
    assert "recompile limit hit (torch ran it eagerly)" in page
    assert "recompile limit hit (raised FailOnRecompileLimitHit)" in page
    assert not re.search(r"failed [0-9]/[0-9]: Unsupported", page)


def test_a_huge_reason_is_capped_to_a_few_lines_with_what_is_left_out(tmp_path: Path):
    huge = "Unsupported: " + " ".join(f"word{n}" for n in range(20_000))  # about 130 KB, one line
    lines = SERVE.read_text().splitlines(keepends=True)
    path = tmp_path / "huge.jsonl"
    path.write_text("".join(line.replace("Data-dependent branching", huge) for line in lines))
    rep = read_files([str(path)]).report
    assert any(row.reason.startswith(huge) for row in rep.graph_breaks)
    for width in (report.DEFAULT_WIDTH, 80):
        text = render_text(rep, width)
        breaks = _text_section(text, "Graph breaks")
        markers = re.findall(r"… \(([0-9]+) more characters; --width 0 for all\)", " ".join(breaks.split()))
        assert markers and all(int(n) > 100_000 for n in markers)
        assert len(breaks.splitlines()) <= 3 + len(rep.graph_breaks) * (report.text.MAX_CELL_LINES + 1)
        assert all(len(line) <= width for line in text.splitlines())
    assert huge in render_text(rep, 0)  # --width 0: all of it
