"""`torch-otel doctor`: the report, the exit codes, secret masking and the live endpoint check."""

from __future__ import annotations

import copy
import importlib
import io
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from collector import free_port
from torch_otel.capture.torch_logs import TorchLogsError, current_registry, parse_torch_logs
from torch_otel.tools import doctor

torch = pytest.importorskip("torch")
internal = importlib.import_module("torch._logging._internal")

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CHILD_TEST = "test_subprocess_with_bad_torch_logs_in_os_environ_reports_instead_of_crashing"
SECRETS = ("HdrS3cretValue", "Pa55wordXYZ", "aliceUserQ", "T0kenQQQ", "TracesHdrK3y")


def run(*args: str, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = doctor.main(list(args), environ={} if environ is None else dict(environ), out=out)
    return code, out.getvalue()


def section(report: str, title: str) -> str:
    """The body of one report section (up to the next heading)."""
    body = report.split(f"\n{title}\n{'-' * len(title)}\n", 1)[1]
    lines = body.splitlines()
    end = next((i for i in range(len(lines) - 1) if lines[i + 1].startswith("---")), len(lines))
    return "\n".join(lines[:end])


def error_lines(report: str) -> list[str]:
    return [line.strip() for line in report.splitlines() if "[error]" in line]


@pytest.fixture(scope="module", autouse=True)
def bad_torch_logs_child(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str] | None]:
    """Started when the module starts (it imports torch afresh, which takes seconds), checked by the last test."""
    if not any(item.name == CHILD_TEST for item in request.session.items):
        yield None
        return
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "TORCH_"))}
    env.update({
        "TORCH_LOGS": "+dynamo,recompile",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=HdrS3cretValue",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
    })
    code = textwrap.dedent("""
        import sys
        from torch_otel.tools import doctor
        sys.exit(doctor.main(sys.argv[1:]))
    """)
    proc = subprocess.Popen([PYTHON, "-c", code, "--timeout", "1"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


@pytest.fixture(scope="module", autouse=True)
def warm_doctor(bad_torch_logs_child: object) -> None:
    """Pay for the one-off imports (torch._dynamo, grpc) up front, so timing assertions measure only the check."""
    import grpc  # noqa: F401

    run("--no-check")


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose kernel accepts connections (backlog) but nobody ever answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


# ------------------------------------------------------------------ TORCH_LOGS


def test_valid_torch_logs_shows_scopes_event_names_and_off_by_default_callouts():
    registry = current_registry()
    code, out = run("--no-check", environ={"TORCH_LOGS": "+dynamo,recompiles,output_code,torch._dynamo.eval_frame"})
    assert code == 0, out
    body = section(out, "TORCH_LOGS")
    dynamo_scopes = ", ".join(registry.aliases["dynamo"])
    assert f"component dynamo: level DEBUG -> scopes {dynamo_scopes}" in body
    assert "module torch._dynamo.eval_frame (and its submodules): level INFO -> scope torch._dynamo" in body
    lines = body.splitlines()
    (recompiles,) = [line for line in lines if "artifact recompiles" in line]
    assert "event pytorch.artifact.recompiles" in recompiles and "off by default" not in recompiles
    (output_code,) = [line for line in lines if "artifact output_code" in line]
    assert "event pytorch.artifact.output_code" in output_code and "[off by default" in output_code
    off = len(registry.off_by_default)
    assert "output_code" in registry.off_by_default and off >= 30  # 30 in torch 2.13, 33 in 2.15
    assert "+dynamo sets DEBUG" in body and f"NOT the {off} off-by-default artifacts" in body
    (unnamed,) = [line for line in lines if "off by default and not named" in line]
    assert "output_code" not in unnamed and "verbose_guards" in unnamed


def test_all_maps_to_the_torch_component_and_info_level():
    code, out = run("--no-check", environ={"TORCH_LOGS": "all,-inductor,graph_breaks"})
    assert code == 0, out
    body = section(out, "TORCH_LOGS")
    assert "component torch: level INFO -> scopes torch" in body
    assert "component inductor: level ERROR" in body
    assert "artifact graph_breaks -> event pytorch.artifact.graph_breaks" in body
    assert "sets DEBUG" not in body


def test_unset_torch_logs_is_explained():
    code, out = run("--no-check")
    assert code == 0, out
    body = section(out, "TORCH_LOGS")
    assert "not set" in body and "WARNING" in body and "spans" in body


@pytest.mark.parametrize("value", ["dynamo,recompile", "+dynamo recompiles", "", "help", "nosuchmodule_xyz"])
def test_bad_torch_logs_exits_2_with_the_parser_message(value):
    with pytest.raises(TorchLogsError) as expected:
        parse_torch_logs(value)
    code, out = run("--no-check", environ={"TORCH_LOGS": value})
    assert code == doctor.EXIT_BAD_SETTING == 2
    assert f"[error] {expected.value}" in out
    assert "Traceback" not in out and "exit code 2" in out


def test_every_bad_torch_logs_item_is_reported_with_its_own_suggestion():
    code, out = run("--no-check", environ={"TORCH_LOGS": "recompile,dynamo,graph_break"})
    assert code == 2, out
    errors = [line for line in error_lines(section(out, "TORCH_LOGS"))]
    assert len(errors) == 2, errors
    assert "item 'recompile'" in errors[0] and "did you mean 'recompiles'?" in errors[0]
    assert "async_compile" not in errors[0]
    assert "item 'graph_break'" in errors[1] and "did you mean 'graph_breaks'?" in errors[1]
    assert "2 bad items; torch stops at the first" in out and out.count("Valid components:") == 1
    assert "2 bad setting(s)" in section(out, "Result")


def test_doctor_does_not_touch_torch_logging_state():
    names = internal.log_registry.get_log_qnames() | internal.log_registry.get_artifact_log_qnames()
    levels = {name: logging.getLogger(name).level for name in names}
    state = copy.deepcopy(vars(internal.log_state))
    env_before = os.environ.get("TORCH_LOGS")
    code, _ = run("--no-check", environ={"TORCH_LOGS": "+dynamo,+inductor,output_code,graph_breaks"})
    assert code == 0
    assert vars(internal.log_state) == state
    assert {name: logging.getLogger(name).level for name in names} == levels
    assert os.environ.get("TORCH_LOGS") == env_before


# -------------------------------------------------------------------- settings


def test_settings_show_effective_values_and_defaults():
    code, out = run("--no-check", environ={"TORCH_OTEL_MAX_BODY_BYTES": "1KiB", "TORCH_OTEL_QUEUE_SIZE": "20000",
                                          "TORCH_OTEL_QUEUESIZE": "5"})
    assert code == 0, out
    body = section(out, "torch-otel settings")
    assert "TORCH_OTEL_MAX_BODY_BYTES = 1024 bytes (1 KiB) (set to '1KiB', default 65536 bytes (64 KiB))" in body
    assert "TORCH_OTEL_QUEUE_SIZE = 20000 (set to '20000', same as the default)" in body
    assert "TORCH_OTEL_TORCH_STDERR = on (default)" in body
    assert "[warning] TORCH_OTEL_QUEUESIZE is not a torch-otel setting and is ignored (did you mean " \
           "TORCH_OTEL_QUEUE_SIZE?)" in body
    assert "1 warning(s) above (exit code 0)" in section(out, "Result")


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"TORCH_OTEL_QUEUE_SIZE": "0"}, "TORCH_OTEL_QUEUE_SIZE"),
        ({"TORCH_OTEL_TORCH_STDERR": "maybe"}, "TORCH_OTEL_TORCH_STDERR"),
        ({"TORCH_OTEL_MAX_BODY_BYTES": "12"}, "TORCH_OTEL_MAX_BODY_BYTES"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://host:port"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "api-key"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_SDK_DISABLED": "perhaps"}, "OTEL_SDK_DISABLED"),
        ({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),  # grpc only takes gzip
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
    ],
)
def test_bad_settings_exit_2_and_name_the_variable(environ, variable, closed_port):
    # The endpoint is closed too: a bad setting still wins over an unreachable endpoint.
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port}", **environ}
    code, out = run("--timeout", "1", environ=environ)
    assert code == 2, out
    assert any(variable in line for line in error_lines(out)), out
    assert "Traceback" not in out


def test_http_compression_accepts_none():
    code, out = run("--no-check", environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                                          "OTEL_EXPORTER_OTLP_COMPRESSION": "none"})
    assert code == 0, out


# -------------------------------------------------------------------- exporter


def test_exporter_section_resolves_endpoints_like_the_otlp_exporters():
    code, out = run("--no-check", environ={
        "OTEL_SERVICE_NAME": "trainer",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example:4317",
        "OTEL_METRICS_EXPORTER": "none",
    })
    assert code == 0, out
    body = section(out, "Exporter")
    assert "service.name: trainer (OTEL_SERVICE_NAME)" in body
    assert "traces:  otlp over grpc -> https://traces.example:4317 [OTEL_EXPORTER_OTLP_TRACES_ENDPOINT], TLS" in body
    assert ("logs:    otlp over http/protobuf -> http://collector:4318/v1/logs "
            "[OTEL_EXPORTER_OTLP_ENDPOINT + /v1/logs], plaintext") in body
    assert "metrics: none" in body


OTLP_CHOSEN = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp"}


def test_resource_attributes_are_shown_as_the_resource_every_signal_carries():
    code, out = run("--no-check", environ={
        **OTLP_CHOSEN,
        "OTEL_SERVICE_NAME": "trainer",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=prod,team=ml%20infra,service.name=old,nokey",
        "RANK": "3",
    })
    assert code == 0, out
    body = section(out, "Exporter")
    assert "resource (carried by every span, log record and metric):" in body
    assert "service.name: trainer (OTEL_SERVICE_NAME)" in body
    assert "OTEL_SERVICE_NAME overrides service.name=old in OTEL_RESOURCE_ATTRIBUTES" in body
    assert "deployment.environment.name=prod, team=ml infra (OTEL_RESOURCE_ATTRIBUTES)" in body
    assert "pytorch.distributed.rank=3" in body
    assert "[warning] OTEL_RESOURCE_ATTRIBUTES item 'nokey' is not key=value: the SDK drops it" in body


@pytest.mark.parametrize(
    ("environ", "signals", "fix"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"},
         "traces, logs, metrics", "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or use port 4318 (the OTLP/HTTP port) in "
         "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
         "traces, logs, metrics", "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or use port 4317"),
        ({"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
          "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://collector:4317/v1/logs"},
         "logs", "set OTEL_EXPORTER_OTLP_LOGS_PROTOCOL=grpc, or use port 4318 (the OTLP/HTTP port) in "
         "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
    ],
)
def test_protocol_sent_to_the_other_protocols_port_gets_the_fix(environ, signals, fix):
    code, out = run("--no-check", environ={**OTLP_CHOSEN, **environ})
    assert code == 0, out
    (warning,) = [line.strip() for line in section(out, "Exporter").splitlines() if "by convention" in line]
    assert warning.startswith(f"[warning] {signals}: "), warning
    assert fix in warning


def test_matching_protocol_and_port_gets_no_port_warning():
    for environ in ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"},
                    {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
                    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:14318"}):
        _, out = run("--no-check", environ={**OTLP_CHOSEN, **environ})
        assert "by convention" not in out, out


def test_nothing_configured_reports_the_embedded_file_default():
    code, out = run("--timeout", "1", environ={"TORCH_OTEL_FILE": "/tmp/run.jsonl"})
    assert code == 0
    assert "writes traces, logs and metrics to /tmp/run.jsonl" in section(out, "Exporter")
    assert "skipped" in section(out, "Endpoint check")


def test_defaults_per_protocol():
    _, grpc_out = run("--no-check", environ=OTLP_CHOSEN)
    assert "logs:    otlp over grpc -> http://localhost:4317 [default], plaintext" in grpc_out
    _, http_out = run("--no-check", environ={**OTLP_CHOSEN, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert "logs:    otlp over http/protobuf -> http://localhost:4318/v1/logs [default + /v1/logs]" in http_out


def test_secrets_are_never_printed(closed_port):
    environ = {
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=HdrS3cretValue%21,team=ml",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "Authorization=Bearer%20TracesHdrK3y",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://aliceUserQ:Pa55wordXYZ@127.0.0.1:{closed_port}/?token=T0kenQQQ&x=1",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
    }
    code, out = run("--timeout", "1", environ=environ)
    assert code == 2, out  # grpc does not take URL credentials: a bad setting
    for secret in SECRETS + ("HdrS3cretValue!",):
        assert secret not in out
    assert "api-key=***, team=***" in out
    assert "authorization=***" in out
    assert f"http://***@127.0.0.1:{closed_port}/?token=***&x=1" in out


def test_secrets_in_an_invalid_endpoint_are_masked():
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://aliceUserQ:Pa55wordXYZ@host:notaport/?api_key=T0kenQQQ"}
    code, out = run("--no-check", environ=environ)
    assert code == 2
    assert "OTEL_EXPORTER_OTLP_ENDPOINT='https://***@host:notaport/?api_key=***' is not valid" in out
    assert not any(secret in out for secret in SECRETS)


def test_mask_url():
    assert doctor.mask_url("https://u:p@h:1/x?token=abc&page=2") == "https://***@h:1/x?token=***&page=2"
    assert doctor.mask_url("http://localhost:4318/v1/logs") == "http://localhost:4318/v1/logs"
    assert doctor.mask_url("http://[::1") == "<unparseable URL, hidden>"


def test_sdk_disabled_or_no_otlp_exporter_skips_the_check():
    code, out = run(environ={"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert code == 0, out
    assert "the SDK is disabled" in out and "skipped: OTEL_SDK_DISABLED is true" in section(out, "Endpoint check")
    none = {f"OTEL_{s}_EXPORTER": "none" for s in ("TRACES", "LOGS", "METRICS")}
    code, out = run(environ={**none, "OTEL_LOGS_EXPORTER": "console"})
    assert code == 0, out
    assert "skipped: no signal is exported over OTLP" in out
    assert "logs:    console" in out


# -------------------------------------------------------------- endpoint check


@pytest.mark.collector
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_real_collector_is_reachable(collector, protocol):
    code, out = run("--timeout", "5", environ=collector.otel_env(protocol))
    assert code == 0, out
    body = section(out, "Endpoint check")
    for signal in ("logs", "traces", "metrics"):
        (line,) = [line for line in body.splitlines() if f"] {signal} -> " in line]
        assert line.strip().startswith("[ok]") and "reachable (answered in " in line
        if protocol == "http/protobuf":
            assert f"http/protobuf {collector.http_endpoint}/v1/{signal}: reachable" in line
            assert "HTTP 200" in line
        else:
            assert f"grpc {collector.grpc_endpoint}: reachable" in line


@pytest.mark.collector
def test_wrong_port_or_path_is_reported(collector):
    code, out = run("--timeout", "5", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint})
    assert code == 1, out
    assert "gRPC UNIMPLEMENTED" in out and "is this an OTLP/gRPC port" in out
    code, out = run("--timeout", "5", environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                                               "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
                                               "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": collector.http_endpoint})
    assert code == 1, out
    assert "HTTP 404" in out and "needs the full path" in out
    assert out.count("[ok]") == 2  # traces and metrics got the /v1/<signal> suffix


@pytest.mark.collector
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_tls_to_a_plaintext_collector_is_a_tls_error(collector, protocol):
    endpoint = (collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint).replace("http:", "https:")
    code, out = run("--timeout", "5", environ={"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                                               "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert code == 1, out
    assert "TLS error" in out and "does not speak TLS" in out


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_closed_port_exits_1_fast(closed_port, protocol):
    environ = {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port}"}
    start = time.monotonic()
    code, out = run("--timeout", "2", environ=environ)
    assert time.monotonic() - start < 2
    assert code == doctor.EXIT_UNREACHABLE == 1, out
    assert "connection refused" in section(out, "Endpoint check")
    assert "exit code 1" in out


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_silent_endpoint_times_out_within_the_timeout(silent_port, protocol):
    environ = {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent_port}"}
    start = time.monotonic()
    code, out = run("--timeout", "0.5", environ=environ)
    elapsed = time.monotonic() - start
    assert code == 1, out
    assert "no answer within 0.5 s (timeout)" in out
    assert 0.4 < elapsed < 2.5  # all signals are checked concurrently, not one timeout after another


def test_no_check_never_touches_the_network(closed_port):
    code, out = run("--no-check", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port}"})
    assert code == 0, out
    assert "skipped (--no-check)" in out


# ----------------------------------------------------------------- list, torch


def test_list_shows_every_artifact_and_component_of_the_live_registry():
    registry = current_registry()
    assert registry.torch_version == torch.__version__
    code, out = run("--list")
    assert code == 0
    lines = out.splitlines()
    for name in registry.artifacts:
        (line,) = [line for line in lines if line.startswith(f"  {name} -> pytorch.artifact.")]
        assert line.startswith(f"  {name} -> pytorch.artifact.{name}")
        assert ("[off by default]" in line) == (name in registry.off_by_default)
        description = " ".join(registry.descriptions.get(name, "").split())
        assert description in line
    for alias, qnames in registry.aliases.items():
        assert f"  {alias} -> {', '.join(qnames)}" in lines
    assert out.count("[off by default]") == len(registry.off_by_default) + 1  # + the legend


def test_torch_features_are_all_supported_on_this_torch():
    code, out = run("--no-check")
    assert code == 0
    body = section(out, "torch")
    assert f"version: {torch.__version__}" in body
    from torch_otel.capture.torch_hooks import FEATURES

    supported = [line for line in body.splitlines() if line.strip().startswith("supported")]
    assert len(supported) == len(FEATURES) + 1 and "missing" not in body
    for needle in ["CompileContext.current_trace_id", *(path for _, path in FEATURES.values())]:
        assert needle in body



def torch_features_section() -> str:
    code, out = run("--no-check")
    assert code == 0, out  # a missing hook is a warning, not a bad setting
    return section(out, "torch")


def test_torch_section_names_a_missing_hook_and_why(monkeypatch):
    from torch._dynamo import convert_frame, utils

    monkeypatch.setattr(convert_frame, "exceeds_recompile_limit", lambda size, frame_id: (False, ""))
    monkeypatch.delattr(utils, "log_compilation_event")
    lines = [line.strip() for line in torch_features_section().splitlines()]
    assert (
        "[warning] missing    recompile limit (changed signature): "
        "torch._dynamo.convert_frame.exceeds_recompile_limit (this feature is skipped on this torch)"
    ) in lines
    (metrics,) = [line for line in lines if "log_compilation_event" in line]
    assert metrics.startswith("[warning] missing    compilation metrics: torch._dynamo.utils.log_compilation_event")
    assert "supported  graph breaks: " in "\n".join(lines)


# ------------------------------------------------------- TORCH_LOGS siblings


def test_torch_logs_siblings_are_not_mentioned_when_unset():
    code, out = run("--no-check", environ={"TORCH_LOGS": "dynamo"})
    assert code == 0, out
    assert "TORCH_LOGS_" not in section(out, "TORCH_LOGS")


def test_torch_logs_out_and_format_are_explained(tmp_path):
    target = tmp_path / "torch.log"
    code, out = run("--no-check", environ={"TORCH_LOGS_OUT": str(target), "TORCH_LOGS_FORMAT": "short"})
    assert code == 0, out
    body = section(out, "TORCH_LOGS")
    (logs_out,) = [line for line in body.splitlines() if "TORCH_LOGS_OUT=" in line]
    assert repr(str(target)) in logs_out and "this file" in logs_out
    (logs_format,) = [line for line in body.splitlines() if "TORCH_LOGS_FORMAT=" in line]
    assert "'short'" in logs_format and "message" in logs_format


@pytest.mark.parametrize(
    "filter_value, format_value",
    [(" [0/1] ,,[1/0]", None), ("[!0/1/0],[0/0_1]", None), ("[0/1]", ""), ("[0/1]", "%(message)s"), (" , ", None)],
)
def test_trace_id_filter_is_described_as_torch_applies_it(monkeypatch, filter_value, format_value):
    """What the doctor says the filter does agrees with the formatter torch builds from the same variables."""
    from torch_otel.capture import torch_internals

    environ = {"TORCH_LOGS_TRACE_ID_FILTER": filter_value}
    if format_value is not None:
        environ["TORCH_LOGS_FORMAT"] = format_value
    monkeypatch.delenv("TORCH_LOGS_FORMAT", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(internal, "DEFAULT_FORMATTER", internal._default_formatter())
    applied = torch_internals.trace_id_filter()

    code, out = run("--no-check", environ=environ)
    assert code == 0, out
    (line,) = [line for line in section(out, "TORCH_LOGS").splitlines() if "TORCH_LOGS_TRACE_ID_FILTER=" in line]
    assert repr(filter_value) in line
    if applied:
        listed = line.split("only records of ", 1)[1].split(" are exported", 1)[0]
        assert set(listed.split(", ")) == applied
    elif format_value is not None:
        assert "ignored because TORCH_LOGS_FORMAT is set" in line
    else:
        assert "no filter" in line


def test_trace_id_filter_item_without_brackets_gets_a_warning():
    code, out = run("--no-check", environ={"TORCH_LOGS_TRACE_ID_FILTER": "0/1,[1/0]"})
    assert code == 0, out
    warnings = [line.strip() for line in section(out, "TORCH_LOGS").splitlines() if "[warning]" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith("item '0/1' matches no record: torch compares bracketed ids: did you mean '[0/1]'?")
    (described,) = [line for line in section(out, "TORCH_LOGS").splitlines() if "TORCH_LOGS_TRACE_ID_FILTER=" in line]
    assert "only records of [1/0] are exported" in described  # not of 0/1, which matches nothing

    from torch._guards import CompileContext, CompileId, compile_context

    record = logging.LogRecord("torch._dynamo", logging.INFO, __file__, 1, "in compile 0/1", None, None)
    with compile_context(CompileContext(CompileId(frame_id=0, frame_compile_id=1))):
        assert internal.TorchLogsFormatter(trace_id_filter={"0/1"}).format(record) == ""  # what torch does with it
        assert internal.TorchLogsFormatter(trace_id_filter={"[0/1]"}).format(record)


def test_a_trace_id_filter_that_matches_nothing_says_so_once():
    code, out = run("--no-check", environ={"TORCH_LOGS_TRACE_ID_FILTER": "0/1"})
    assert code == 0, out
    (line,) = [line.strip() for line in section(out, "TORCH_LOGS").splitlines() if "TORCH_LOGS_TRACE_ID_FILTER" in line]
    assert line.startswith("[warning] TORCH_LOGS_TRACE_ID_FILTER='0/1' matches no record")
    assert line.endswith("'0/1': torch compares bracketed ids: did you mean '[0/1]'?")
    assert "only records of" not in line


def test_brackets_are_suggested_only_for_items_that_look_like_a_compile_id():
    code, out = run("--no-check", environ={"TORCH_LOGS_TRACE_ID_FILTER": "[0/1],garbage,!0/0/1,[0/0_1,[]"})
    assert code == 0, out
    warnings = {line.split(" item ", 1)[1] for line in section(out, "TORCH_LOGS").splitlines() if " item " in line}
    not_an_id = "matches no record: not a compile id, which torch prints as [0/1], [0/0_1] or [!0/0/1]"
    assert warnings == {
        f"'garbage' {not_an_id}",
        f"'[]' {not_an_id}",
        "'!0/0/1' matches no record: torch compares bracketed ids: did you mean '[!0/0/1]'?",
        "'[0/0_1' matches no record: torch compares bracketed ids: did you mean '[0/0_1]'?",
    }


@pytest.mark.parametrize("variable", ["TORCH_LOGS_OUT", "TORCH_LOGS_FORMAT"])
def test_sibling_values_that_make_torch_fail_at_import_exit_2(tmp_path, monkeypatch, variable):
    values = {"TORCH_LOGS_OUT": [str(tmp_path), str(tmp_path / "missing" / "torch.log")], "TORCH_LOGS_FORMAT": ["hello"]}
    for value in values[variable]:
        code, out = run("--no-check", environ={variable: value})
        assert code == doctor.EXIT_BAD_SETTING, out
        (error,) = error_lines(out)
        assert error.startswith(f"[error] {variable}={value!r}") and "`import torch` fails" in error
        if variable == "TORCH_LOGS_OUT":
            with pytest.raises(OSError):
                logging.FileHandler(value)  # what torch/_logging/_internal.py's _init_logs does with it
        else:
            monkeypatch.setenv(variable, value)
            with pytest.raises(ValueError):
                internal._default_formatter()  # what importing torch does with it

# ------------------------------------------------------------------ usage, cli


@pytest.mark.parametrize("args", [["--timeout", "0"], ["--timeout", "abc"], ["--bogus"]])
def test_bad_options_exit_2_without_raising(args):
    code, out = run(*args)
    assert code == 2
    assert "usage: torch-otel doctor" in out


def test_help_goes_to_out():
    code, out = run("--help")
    assert code == 0 and "--no-check" in out and "--list" in out


def test_subprocess_with_bad_torch_logs_in_os_environ_reports_instead_of_crashing(bad_torch_logs_child):
    """torch is imported fresh with the bad value in os.environ; the doctor still reports, exit 2, no traceback."""
    stdout, stderr = bad_torch_logs_child.communicate(timeout=60)
    assert bad_torch_logs_child.returncode == 2, stdout + stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert "did you mean 'recompiles'" in stdout
    assert "connection refused" in stdout
    assert f"version: {torch.__version__}" in stdout
    assert "HdrS3cretValue" not in stdout + stderr
