"""OTEL_{TRACES,LOGS,METRICS}_EXPORTER resolved as the SDK resolves them (lists, entry-point names), built by
`torch-otel run` one pipeline per exporter, and shown by `torch-otel doctor` with the endpoint each will use."""

from __future__ import annotations

import io
import json
import os
import sys

import pytest

from e2e import BIN, run_child
from torch_otel.config.export_config import SIGNALS, export_plan
from torch_otel.config.settings import SettingsError
from torch_otel.tools import doctor

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
QUIET = {"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}


def entry_points(environ: dict[str, str], signal: str) -> list[str]:
    return [exporter.entry_point for exporter in export_plan({**ENDPOINT, **environ}).exporters[signal]]


# ------------------------------------------------------------------ the plan


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ["otlp_proto_grpc"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp_proto_grpc", "console"]),
        ({"OTEL_TRACES_EXPORTER": " console , otlp "}, ["console", "otlp_proto_grpc"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "otlp_proto_http"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "otlp_proto_grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
         ["otlp_proto_grpc"]),
        ({"OTEL_TRACES_EXPORTER": "otlp_proto_grpc,otlp_proto_http"}, ["otlp_proto_grpc", "otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,otlp_proto_grpc,otlp"}, ["otlp_proto_grpc"]),  # the SDK keys them by name
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": " None "}, []),
    ],
)
def test_trace_exporter_names_resolve_like_the_sdk(environ, expected, monkeypatch):
    assert entry_points(environ, "traces") == expected
    configuration = pytest.importorskip("opentelemetry.sdk._configuration")
    get_names = getattr(configuration, "_get_exporter_names", None)
    if get_names is None:
        pytest.skip("this SDK has no _get_exporter_names to compare with")
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in {**ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp", **environ}.items():
        monkeypatch.setenv(name, value)
    assert list(dict.fromkeys(get_names("traces"))) == expected


def test_prometheus_is_a_metrics_exporter_and_lists_mix():
    plan = export_plan({**ENDPOINT, "OTEL_METRICS_EXPORTER": "otlp_proto_http,prometheus,console"})
    assert plan.kinds("metrics") == ("otlp", "prometheus", "console")
    assert [exporter.protocol for exporter in plan.otlp("metrics")] == ["http/protobuf"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("zipkin", "no traces exporter named 'zipkin' is installed"),
        ("otlp,zipkin", "no traces exporter named 'zipkin' is installed"),
        ("prometheus", "no traces exporter named 'prometheus' is installed"),
        ("otlp,", "item 2 is empty"),
        ("otlp,none", "none turns the signal off and must stand alone"),
    ],
)
def test_an_unusable_name_is_one_paragraph_listing_the_valid_names(raw, problem):
    with pytest.raises(SettingsError) as caught:
        export_plan({**ENDPOINT, "OTEL_TRACES_EXPORTER": raw})
    message = str(caught.value)
    assert "\n" not in message and caught.value.variable == "OTEL_TRACES_EXPORTER"
    assert message.startswith(f"OTEL_TRACES_EXPORTER={raw!r} is not valid ({problem}): expected none alone, or a ")
    for name in ("otlp", "otlp_proto_grpc", "otlp_proto_http", "console"):
        assert name in message


def test_the_embedded_default_is_unchanged(tmp_path):
    plan = export_plan({"TORCH_OTEL_FILE": str(tmp_path / "run.jsonl")})
    assert plan.file_path == tmp_path / "run.jsonl"
    assert all(plan.kinds(signal) == ("file",) for signal in SIGNALS)


# -------------------------------------------------------------------- doctor


def exporter_lines(environ: dict[str, str]) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = doctor.main(["--no-check"], environ=environ, out=out)
    body = out.getvalue().split("\nExporter\n", 1)[1].split("\nEndpoint check\n", 1)[0]
    return code, [line.strip() for line in body.splitlines() if line.strip().startswith(SIGNALS)]


def test_doctor_shows_every_exporter_with_its_resolved_endpoint():
    code, lines = exporter_lines({
        "OTEL_TRACES_EXPORTER": "otlp,console",
        "OTEL_LOGS_EXPORTER": "otlp_proto_http",
        "OTEL_METRICS_EXPORTER": "otlp_proto_grpc,otlp_proto_http",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://metrics.example:4317",
    })
    assert code == 0, lines
    assert lines == [
        "traces:  otlp over grpc -> http://collector:4318/ [OTEL_EXPORTER_OTLP_ENDPOINT], plaintext (http scheme)",
        "traces:  console (printed to stdout, nothing sent)",
        ("logs:    otlp_proto_http over http/protobuf -> http://collector:4318/v1/logs "
         "[OTEL_EXPORTER_OTLP_ENDPOINT + /v1/logs], plaintext (http scheme)"),
        ("metrics: otlp_proto_grpc over grpc -> https://metrics.example:4317 [OTEL_EXPORTER_OTLP_METRICS_ENDPOINT], "
         "TLS (https scheme)"),
        ("metrics: otlp_proto_http over http/protobuf -> https://metrics.example:4317 "
         "[OTEL_EXPORTER_OTLP_METRICS_ENDPOINT], TLS (https scheme)"),
    ]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
         "logs:    otlp over http/protobuf -> http://localhost:4318/v1/logs [default + /v1/logs]"),
        ({"OTEL_LOGS_EXPORTER": "otlp_proto_grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
         "logs:    otlp_proto_grpc over grpc -> http://localhost:4317 [default]"),
        ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs.example:9999/custom",
          "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"},
         "logs:    otlp over http/protobuf -> http://logs.example:9999/custom [OTEL_EXPORTER_OTLP_LOGS_ENDPOINT]"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_INSECURE": "false"},
         ("logs:    otlp over grpc -> http://collector:4317 [OTEL_EXPORTER_OTLP_ENDPOINT], TLS "
          "(OTEL_EXPORTER_OTLP_INSECURE=false)")),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://u:secretpw@collector:4318", "OTEL_LOGS_EXPORTER": "otlp_proto_http"},
         "logs:    otlp_proto_http over http/protobuf -> https://***@collector:4318/v1/logs"),
    ],
)
def test_doctor_resolves_per_signal_endpoints_as_the_built_exporter_does(environ, expected):
    code, lines = exporter_lines({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                                  "OTEL_LOGS_EXPORTER": "otlp", **environ})
    assert code == 0, lines
    assert any(line.startswith(expected) for line in lines), lines
    assert not any("as the exporter reads it" in line for line in lines), lines  # the two readings agree
    assert not any("secretpw" in line for line in lines)


def test_doctor_reports_an_exporter_that_cannot_be_built():
    out = io.StringIO()
    code = doctor.main(["--no-check"], environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                                                "OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, out=out)
    assert code == 2
    assert "[error] traces, logs, metrics: the otlp exporter cannot be built with these settings" in out.getvalue()


# ------------------------------------------------------------ torch-otel run


def torch_otel_run(environ: dict[str, str], program: str, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    env = {**base, "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100", **environ}
    return run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", program], env, cwd=tmp_path)


@pytest.mark.slow
def test_an_unknown_exporter_name_stops_run_with_one_paragraph(tmp_path):
    run = torch_otel_run({**QUIET, "OTEL_LOGS_EXPORTER": "otlp,zipkin"}, "print('ran')", tmp_path)
    assert run.returncode == 2 and "ran" not in run.stdout and "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("torch-otel: OTEL_LOGS_EXPORTER='otlp,zipkin' is not valid (no "
                                                   "logs exporter named 'zipkin' is installed)"), run.stderr


SPAN_PROGRAM = """
import torch
from opentelemetry import trace
with trace.get_tracer("resolution-test").start_as_current_span("otlp-and-console"):
    pass
print("ran")
"""


@pytest.mark.slow
def test_a_list_of_trace_exporters_sends_to_each(otlp_sink, tmp_path):
    run = torch_otel_run({**QUIET, "OTEL_TRACES_EXPORTER": "otlp,console",
                          "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_sink.endpoint}, SPAN_PROGRAM, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "ran" in run.stdout
    assert '"name": "otlp-and-console"' in run.stdout  # the console exporter's JSON
    spans = otlp_sink.wait_for(lambda sink: [s for s in sink.spans() if s.name == "otlp-and-console"] or None)
    assert len(spans) == 1


LOG_PROGRAM = """
import logging
import torch
logging.getLogger("torch._dynamo").warning("exporter resolution marker")
print("ran")
"""


@pytest.mark.slow
@pytest.mark.collector
def test_an_entry_point_name_fixes_the_protocol(collector, otlp_sink, tmp_path):
    # The protocol variables say grpc (by default); otlp_proto_http sends over HTTP to the collector's HTTP port.
    run = torch_otel_run({**QUIET, "OTEL_LOGS_EXPORTER": "otlp_proto_http",
                          "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint}, LOG_PROGRAM, tmp_path)
    assert run.returncode == 0, run.stderr
    records = otlp_sink.wait_for(
        lambda sink: [r for r in sink.log_records() if "exporter resolution marker" in json.dumps(r.body)] or None)
    assert len(records) == 1


@pytest.mark.slow
def test_logs_to_otlp_and_console_go_through_the_sdk_pipeline(otlp_sink, tmp_path):
    run = torch_otel_run({**QUIET, "OTEL_LOGS_EXPORTER": "console,otlp",
                          "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_sink.endpoint}, LOG_PROGRAM, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "exporter resolution marker" in run.stdout  # the console exporter
    otlp_sink.wait_for(
        lambda sink: [r for r in sink.log_records() if "exporter resolution marker" in json.dumps(r.body)] or None)
