"""`torch-otel run`: bad settings stop it with one clear paragraph; SIGTERM flushes; the examples run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from e2e import BIN, ROOT, child_env, run_child

pytestmark = pytest.mark.slow
QUIET_OTEL = {"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}


def torch_otel_run(env: dict[str, str], *program: str):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    return run_child([str(BIN / "torch-otel"), "run", "--", *program], {**base, **env})


@pytest.mark.parametrize(
    "torch_logs, expected",
    [
        ("+dynamo,recompile", "did you mean 'recompiles'"),
        ("", "empty"),
        ("no_such_pkg.sub", "not an importable module"),
        ("dynamo,,inductor", "empty item"),
    ],
)
def test_bad_torch_logs_exits_2_with_one_clear_paragraph(torch_logs, expected):
    run = torch_otel_run({**QUIET_OTEL, "TORCH_LOGS": torch_logs}, sys.executable, "-c", "import torch; print('ran')")
    assert run.returncode == 2
    assert "ran" not in run.stdout
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("torch-otel: TORCH_LOGS=") and expected in lines[0]
    assert repr(torch_logs) in lines[0]


@pytest.mark.parametrize(
    "variable, value",
    [("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), ("TORCH_OTEL_MAX_BODY_BYTES", "lots"),
     ("TORCH_OTEL_TORCH_STDERR", "maybe"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317")],
)
def test_bad_setting_exits_2_naming_variable_and_value(variable, value):
    run = torch_otel_run({variable: value}, sys.executable, "-c", "print('ran')")
    assert run.returncode == 2 and "ran" not in run.stdout and "Traceback" not in run.stderr
    assert f"{variable}={value!r}" in run.stderr


def test_an_unknown_torch_otel_variable_is_one_warning_line_naming_the_closest_setting():
    """TORCH_OTEL_SPAN=off is not TORCH_OTEL_SPANS=off: said once, by `run`, not again by the program's children."""
    child = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import torch']); print('ran')"
    run = torch_otel_run({**QUIET_OTEL, "TORCH_OTEL_SPAN": "off", "TORCH_OTEL_QUEUESIZE": "5"},
                         sys.executable, "-c", child)
    assert run.returncode == 0 and "ran" in run.stdout, run.stderr
    lines = [line for line in run.stderr.splitlines() if "not a torch-otel setting" in line]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("torch-otel: TORCH_OTEL_QUEUESIZE is not a torch-otel setting and is ignored (did you "
                               "mean TORCH_OTEL_QUEUE_SIZE?); TORCH_OTEL_SPAN is not a torch-otel setting and is "
                               "ignored (did you mean TORCH_OTEL_SPANS?)"), lines[0]


def test_program_exit_code_is_passed_through():
    run = torch_otel_run(QUIET_OTEL, sys.executable, "-c", "import sys; sys.exit(7)")
    assert run.returncode == 7


def test_sdk_disabled_runs_the_program_untouched():
    run = torch_otel_run({"OTEL_SDK_DISABLED": "true", "TORCH_LOGS": "+dynamo"}, sys.executable, "-c",
                         "import torch_otel; print(torch_otel.TorchInstrumentor.bridge is None)")
    assert run.returncode == 0 and run.stdout.strip() == "True"


@pytest.mark.collector
def test_sigterm_flushes_what_was_queued(collector, otlp_sink):
    script = (
        "import logging, sys, time, torch\n"
        "logging.getLogger('torch._dynamo').warning('before sigterm')\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = child_env(collector, OTEL_BLRP_SCHEDULE_DELAY="30000", TORCH_LOGS="dynamo")
    proc = subprocess.Popen([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", script], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert time.monotonic() - started < 5  # within TORCH_OTEL_SHUTDOWN_TIMEOUT
        assert proc.returncode == -signal.SIGTERM
        otlp_sink.wait_for(lambda s: any(r.body == "before sigterm" for r in s.log_records()), timeout=5)
    finally:
        proc.kill()


@pytest.mark.collector
@pytest.mark.parametrize("example, event", [("recompiles.py", "pytorch.recompile"),
                                            ("graph_breaks.py", "pytorch.graph_break")])
def test_examples_run_and_export(collector, otlp_sink, example, event):
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, str(ROOT / "examples" / example)],
                    child_env(collector, TORCH_LOGS="recompiles,graph_breaks"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Jaeger" in run.stdout
    otlp_sink.wait_for(lambda s: any(r.event_name == event for r in s.log_records()))
    otlp_sink.wait_for(lambda s: any(span.name == "torch.compile" for span in s.spans()))


def test_a_user_module_in_torch_logs_is_found_beside_the_script(tmp_path):
    """TORCH_LOGS=my_model names a module next to the script, which torch finds on the program's sys.path; the
    check before the program starts looks there too (the command's own sys.path does not hold that folder)."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "my_model.py").write_text("import logging\nlog = logging.getLogger('my_model')\n")
    (tmp_path / "sub" / "main.py").write_text("import torch, my_model\nmy_model.log.info('hello from my_model')\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "sub/main.py"],
                    {**base, **QUIET_OTEL, "TORCH_LOGS": "my_model"}, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "hello from my_model" in run.stderr


@pytest.mark.parametrize("program", [[sys.executable, "-c", "pass"], ["no-such-program-torch-otel-test"]])
def test_the_file_notice_is_true_for_a_run_that_exports_nothing(tmp_path, program):
    """The notice names the default file, which a run with nothing to export (a program that never imports torch,
    a command that does not exist) never creates: the notice says so, on one line."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    run = run_child([str(BIN / "torch-otel"), "run", "--", *program], base, cwd=tmp_path)
    (notice,) = [line for line in run.stderr.splitlines() if "no OTLP endpoint configured" in line]
    assert ", created when a process has something to export (read it with `torch-otel report " in notice
    assert not list(tmp_path.iterdir())
