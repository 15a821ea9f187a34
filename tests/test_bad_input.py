"""Bad input: every setting is checked up front by one parser, `torch-otel run` stops with exit code 2 and one
paragraph before the program starts, `torch-otel doctor` reports it, and no output ever shows a secret."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from e2e import BIN, run_child
from torch_otel import environment_variables as env
from torch_otel.capture.torch_import import check_torch_logs
from torch_otel.capture.torch_logs import TorchLogsError
from torch_otel.config.export_config import OTEL_NUMBERS, SIGNALS, export_plan, parse_headers
from torch_otel.config.settings import Settings, SettingsError
from torch_otel.tools import doctor

QUIET_OTEL = {"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
SECRET1, SECRET2 = "PLANTEDSECRET1", "PLANTEDSECRET2"
COMPILE_SOMETHING = ("import torch\n"
                     "f = torch.compile(lambda x: x * 2 + 1, backend='eager')\n"
                     "print('ran', f(torch.ones(3)).sum().item())\n")
BAD_HEADER_SHAPES = [  # each one the OTLP exporters would drop, printing the whole header
    f'api-key={SECRET1}"x', f"api-key={SECRET1};x", f"api-key={SECRET1}\\x", f"api-key={SECRET1}é",
    f"team=ml,api-key={SECRET1}\u20ac", f"Bearer {SECRET1}", f"api-key={SECRET1}%0Ax",
]


def base_env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    return {**clean, **extra}


def torch_otel(args: list[str], environ: dict[str, str], cwd: Path, timeout: float = 180):
    return run_child([str(BIN / "torch-otel"), *args], environ, timeout=timeout, cwd=cwd)


def assert_stopped(run, variable: str) -> str:
    """Exit code 2, the program never started, one paragraph naming the variable, no traceback."""
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "ran" not in run.stdout and "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"torch-otel: {variable}="), run.stderr
    return lines[0]


def run_program(environ: dict[str, str], cwd: Path, program: str = "print('ran')"):
    return torch_otel(["run", "--", sys.executable, "-c", program], environ, cwd)


def doctor_report(environ: dict[str, str]) -> tuple[int, str]:
    out = io.StringIO()
    code = doctor.main(["--timeout", "1"], environ=environ, out=out)
    return code, out.getvalue()


def error_lines(report: str) -> list[str]:
    return [line.strip() for line in report.splitlines() if "[error]" in line]


# ----------------------------------------------------------- item 4: headers


@pytest.mark.slow
@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_LOGS_HEADERS"])
@pytest.mark.parametrize("headers", BAD_HEADER_SHAPES)
def test_headers_the_exporter_would_drop_stop_run_without_showing_the_value(tmp_path, variable, headers):
    environ = base_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1", **{variable: headers})
    line = assert_stopped(run_program(environ, tmp_path), variable)
    assert SECRET1 not in line and ("***" in line or "hidden" in line)
    if headers.startswith("api-key="):
        assert "'api-key'" in line  # the key is safe to name
    code, report = doctor_report(environ)
    assert code == 2 and SECRET1 not in report
    assert any(variable in line for line in error_lines(report)), report


@pytest.mark.parametrize("headers", ["api-key=a%22b%3Bc%5Cd%2C", "api-key=with spaces", " a = b , c=d ", ""])
def test_headers_the_exporter_accepts_pass(headers):
    export_plan({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_HEADERS": headers})


def test_a_header_value_must_decode_to_what_the_transport_sends():
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_HEADERS": "k=caf%C3%A9"}
    with pytest.raises(SettingsError, match="grpc exporter cannot send"):
        export_plan(environ)
    export_plan({**environ, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})  # Latin-1 is fine over HTTP
    with pytest.raises(SettingsError, match="not a valid gRPC metadata name"):
        export_plan({**environ, "OTEL_EXPORTER_OTLP_HEADERS": "k!y=1"})


_HEADER_PIECES = st.sampled_from(list("aZ09-_=, \t%\"';\\:/é€\n\x7f!") + ["%0A", "%C3%A9", "%2", "key=", "v"])


@hypothesis_settings(max_examples=400, deadline=None)
@given(raw=st.lists(_HEADER_PIECES, max_size=12).map("".join))
def test_header_check_agrees_with_the_exporters_parser(raw):
    """Whatever parse_env_headers (liberal, as the OTLP exporters call it) warns about, the check rejects."""
    from opentelemetry.util import re as otel_re

    warnings: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = warnings.append  # type: ignore[method-assign]
    otel_re._logger.addHandler(handler)
    otel_re._logger.propagate = False
    try:
        parsed = otel_re.parse_env_headers(raw, liberal=True)
    finally:
        otel_re._logger.removeHandler(handler)
        otel_re._logger.propagate = True
    try:
        ours = parse_headers("OTEL_EXPORTER_OTLP_HEADERS", raw, grpc=False)
    except SettingsError as error:
        assert "\n" not in str(error)
        # The value shown is only labels: `key=***` per item, or `<item N hidden>`; no header value can be in it.
        for label in error.value.split(","):
            assert re.fullmatch(r"[^=,]*=\*\*\*|<item \d+ hidden>", label), error.value
        return
    assert not warnings, raw
    assert ours == dict(parsed)


# ------------------------------------------------ item 5: URL credentials


@pytest.mark.slow
@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_grpc_endpoint_with_credentials_stops_run_as_doctor_does(tmp_path, variable):
    environ = base_env(**{variable: f"http://aliceUserQ:{SECRET2}@127.0.0.1:1"})
    line = assert_stopped(run_program(environ, tmp_path), variable)
    assert SECRET2 not in line and "aliceUserQ" not in line and "http://***@127.0.0.1:1" in line
    code, report = doctor_report(environ)
    assert code == 2 and SECRET2 not in report
    assert any(variable in line and "credentials" in line for line in error_lines(report)), report


def test_one_endpoint_check_for_run_and_doctor():
    with pytest.raises(SettingsError, match="credentials") as raised:
        export_plan({"OTEL_EXPORTER_OTLP_ENDPOINT": f"https://u:{SECRET2}@collector:4317"})
    assert SECRET2 not in str(raised.value)
    # over HTTP, userinfo becomes basic auth: accepted
    export_plan({"OTEL_EXPORTER_OTLP_ENDPOINT": f"https://u:{SECRET2}@collector:4318",
                 "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})


# ------------------------------------------- item 6: secrets never leak


SECRET_SHAPES = [  # (environment, whether run accepts it)
    *[({"OTEL_EXPORTER_OTLP_HEADERS": shape, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, False)
      for shape in BAD_HEADER_SHAPES[:4]],
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:{SECRET2}@127.0.0.1:1"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:{SECRET2}@[::1"}, False),
    ({"OTEL_EXPORTER_OTLP_HEADERS": f"api-key={SECRET1}", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, True),
    ({"OTEL_EXPORTER_OTLP_HEADERS": f"api-key={SECRET1}", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
      "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:{SECRET2}@127.0.0.1:1"}, True),
]


@pytest.mark.slow
@pytest.mark.parametrize("environ, accepted", SECRET_SHAPES)
def test_no_output_channel_shows_a_planted_secret(tmp_path, environ, accepted):
    environ = base_env(TORCH_LOGS="+dynamo,recompiles", TORCH_OTEL_SHUTDOWN_TIMEOUT="2",
                       OTEL_BSP_SCHEDULE_DELAY="100", OTEL_BLRP_SCHEDULE_DELAY="100", **environ)
    run = run_program(environ, tmp_path, COMPILE_SOMETHING)
    assert run.returncode == (0 if accepted else 2), run.stderr[-3000:]
    assert ("ran 9.0" in run.stdout) == accepted
    assert "Traceback" not in run.stderr
    doctor_run = torch_otel(["doctor", "--timeout", "1"], environ, tmp_path)
    assert doctor_run.returncode != 0 and "Traceback" not in doctor_run.stdout + doctor_run.stderr
    channels = {"run stdout": run.stdout, "run stderr": run.stderr,
                "doctor stdout": doctor_run.stdout, "doctor stderr": doctor_run.stderr}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            channels[str(path)] = path.read_bytes().decode("utf-8", "replace")
    for name, text in channels.items():
        assert SECRET1 not in text and SECRET2 not in text, f"{name}: {text[-3000:]}"


# ------------------------------------- item 10: no traceback on odd values


@pytest.mark.slow
@pytest.mark.parametrize("variable, value", [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1"), ("TORCH_OTEL_QUEUE_SIZE", "²"),
    ("TORCH_OTEL_QUEUE_SIZE", "١٠٠"), ("TORCH_OTEL_MAX_BODY_BYTES", "６４KiB"), ("TORCH_OTEL_SHUTDOWN_TIMEOUT", "nan"),
])
def test_odd_values_stop_run_with_one_paragraph(tmp_path, variable, value):
    line = assert_stopped(run_program(base_env(**QUIET_OTEL, **{variable: value}), tmp_path), variable)
    if variable != "OTEL_EXPORTER_OTLP_ENDPOINT":
        assert f"{variable}={value!r}" in line
    else:
        assert "unparseable URL, hidden" in line


@pytest.mark.parametrize("value", ["²", "１２", "١٢", "٣", "1_000", "+5", "-1", "0x10", "1e3", "5.0", "10**30", ""])
def test_numbers_are_ascii_digits_only(value):
    if value == "":
        assert Settings.from_env({env.TORCH_OTEL_QUEUE_SIZE: value}).queue_size == Settings().queue_size
        return
    with pytest.raises(SettingsError, match="TORCH_OTEL_QUEUE_SIZE"):
        Settings.from_env({env.TORCH_OTEL_QUEUE_SIZE: value})


# -------------------------------------- item 11: limits and TORCH_OTEL_FILE


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing directory", "directory", "queue 10**30", "queue too large",
                                  "body too large", "batch too large", "shutdown too long"])
def test_values_that_lose_telemetry_stop_run(tmp_path, case):
    variable, value = {
        "missing directory": (env.TORCH_OTEL_FILE, str(tmp_path / "no-such-dir" / "run.jsonl")),
        "directory": (env.TORCH_OTEL_FILE, str(tmp_path)),
        "queue 10**30": (env.TORCH_OTEL_QUEUE_SIZE, str(10**30)),
        "queue too large": (env.TORCH_OTEL_QUEUE_SIZE, "10000001"),
        "body too large": (env.TORCH_OTEL_MAX_BODY_BYTES, "65MiB"),
        "batch too large": (env.TORCH_OTEL_MAX_BATCH_BYTES, "257MiB"),
        "shutdown too long": (env.TORCH_OTEL_SHUTDOWN_TIMEOUT, "601"),
    }[case]
    line = assert_stopped(run_program(base_env(**{variable: value}), tmp_path), variable)
    assert f"{variable}={value!r}" in line
    assert list(tmp_path.glob("*.jsonl")) == []


def test_limits_are_inclusive(tmp_path):
    settings = Settings.from_env({env.TORCH_OTEL_QUEUE_SIZE: "10000000", env.TORCH_OTEL_MAX_BODY_BYTES: "64MiB",
                                  env.TORCH_OTEL_MAX_BATCH_BYTES: "256MiB", env.TORCH_OTEL_SHUTDOWN_TIMEOUT: "600"})
    assert (settings.queue_size, settings.max_body_bytes, settings.shutdown_timeout) == (10_000_000, 64 << 20, 600)
    assert export_plan({env.TORCH_OTEL_FILE: str(tmp_path / "run.jsonl")}).file_path == tmp_path / "run.jsonl"


# ----------------------------------- item 12: TLS files and OTEL_* numbers


@pytest.mark.slow
@pytest.mark.parametrize("variable, value", [
    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
    ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/nonexistent/client.key"),
    ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/nonexistent/client.pem"),
    ("OTEL_BLRP_SCHEDULE_DELAY", "soon"), ("OTEL_BSP_MAX_QUEUE_SIZE", "²"), ("OTEL_METRIC_EXPORT_INTERVAL", "1e3"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"), ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "0"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096"),
])
def test_otel_files_and_numbers_stop_run_and_doctor_reports_them(tmp_path, variable, value):
    environ = base_env(OTEL_EXPORTER_OTLP_ENDPOINT="https://127.0.0.1:1", **{variable: value})
    line = assert_stopped(run_program(environ, tmp_path), variable)
    assert f"{variable}={value!r}" in line
    code, report = doctor_report(environ)
    assert code == 2 and "Traceback" not in report
    assert any(variable in line for line in error_lines(report)), report


@pytest.mark.parametrize("variable", sorted(OTEL_NUMBERS))
def test_every_otel_number_has_limits(variable):
    low, high, _ = OTEL_NUMBERS[variable]
    bsp = {"OTEL_BSP_MAX_QUEUE_SIZE": "1", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1"} if "OTEL_BSP_MAX" in variable else {}
    export_plan({**bsp, variable: str(low)})
    if variable != "OTEL_BSP_MAX_EXPORT_BATCH_SIZE":
        export_plan({variable: str(high)})
    for bad in (str(low - 1), str(high + 1), "", " ", "1.5", "٣", "1e3"):
        with pytest.raises(SettingsError, match=variable):
            export_plan({**bsp, variable: bad})


def test_the_span_batch_cannot_exceed_the_span_queue():
    with pytest.raises(SettingsError, match="OTEL_BSP_MAX_QUEUE_SIZE='100'.*at least 512"):
        export_plan({"OTEL_BSP_MAX_QUEUE_SIZE": "100"})
    with pytest.raises(SettingsError, match="OTEL_BSP_MAX_EXPORT_BATCH_SIZE='4096'.*at most 2048"):
        export_plan({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096"})


# ------------------------------------------------- item 13: stderr closed


@pytest.mark.slow
@pytest.mark.parametrize("environ", [{}, QUIET_OTEL], ids=["nothing configured", "exporters off"])
def test_a_closed_stderr_never_stops_the_program(tmp_path, environ):
    done = subprocess.run([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", "print(1)"],
                          env=base_env(**environ), cwd=tmp_path, capture_output=False, stdout=subprocess.PIPE,
                          text=True, timeout=120, preexec_fn=lambda: os.close(2), check=False)
    assert done.returncode == 0 and done.stdout == "1\n"


@pytest.mark.slow
def test_a_closed_stderr_still_exits_2_on_a_bad_setting(tmp_path):
    done = subprocess.run([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", "print(1)"],
                          env=base_env(TORCH_OTEL_QUEUE_SIZE="²"), cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                          timeout=120, preexec_fn=lambda: os.close(2), check=False)
    assert done.returncode == 2 and done.stdout == ""


# ------------------------------------------------------------ fuzzing


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variable=st.sampled_from(env.ALL), raw=st.text(max_size=40))
def test_every_torch_otel_setting_only_raises_settings_error(variable, raw):
    try:
        Settings.from_env({variable: raw})
        if variable == env.TORCH_OTEL_FILE:
            export_plan({variable: raw})
    except SettingsError as error:
        assert "\n" not in str(error) and error.variable == variable


_OTEL_VARIABLES = (
    ["OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_PROTOCOL", *OTEL_NUMBERS]
    + [f"OTEL_{s.upper()}_EXPORTER" for s in SIGNALS]
    + [f"OTEL_EXPORTER_OTLP_{p}{suffix}" for p in ("", *(f"{s.upper()}_" for s in SIGNALS))
       for suffix in ("ENDPOINT", "HEADERS", "TIMEOUT", "CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE", "PROTOCOL")]
)


@hypothesis_settings(max_examples=500, deadline=None)
@given(variable=st.sampled_from(_OTEL_VARIABLES), raw=st.text(max_size=40), secret=st.sampled_from([SECRET1]))
def test_export_plan_only_raises_settings_error_and_never_shows_a_header_value(variable, raw, secret):
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", variable: raw}
    if variable.endswith("HEADERS"):
        environ[variable] = f"api-key={secret}{raw}"
    try:
        from torch_otel.config.export_config import sdk_disabled

        sdk_disabled(environ)
        export_plan(environ)
    except SettingsError as error:
        message = str(error)
        assert "\n" not in message and secret not in message


@hypothesis_settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=30))
def test_torch_logs_only_raises_torch_logs_error(raw):
    try:
        check_torch_logs(raw)
    except TorchLogsError as error:
        assert str(error).strip()
