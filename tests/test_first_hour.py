"""A newcomer's first hour: what the demo says it did, what `instrument()` says without an SDK, and what
`torch-otel doctor` concludes where torch is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    return {**env, **extra}


def python(code: str, env: dict[str, str] | None = None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env or clean_env(),
                          capture_output=True, text=True, timeout=180)


# ------------------------------------------------------------- instrument() without an SDK


NO_SDK_LINE = "torch-otel: no OpenTelemetry SDK is set up in this process"


def test_instrument_without_an_sdk_says_once_that_nothing_is_exported_and_how_to_fix_it():
    run = python("""
        import torch, torch_otel
        torch_otel.instrument()
        torch_otel.uninstrument()
        torch_otel.instrument()
        torch.compile(lambda x: x + 1, backend="eager")(torch.ones(2))
        torch_otel.uninstrument()
        print("ran")
    """)
    assert run.returncode == 0 and "ran" in run.stdout, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("torch-otel:")]
    assert len(lines) == 1 and lines[0].startswith(NO_SDK_LINE), run.stderr
    for fix in ("nothing torch-otel records will be exported", "`torch-otel run`", "`opentelemetry-instrument`",
                "opentelemetry-distro", "TracerProvider", "LoggerProvider", "MeterProvider",
                "before calling torch_otel.instrument()"):
        assert fix in lines[0], (fix, lines[0])


def test_instrument_before_import_torch_without_an_sdk_says_so_when_torch_is_imported():
    run = python("""
        import torch_otel
        torch_otel.instrument()
        print("instrumented", flush=True)
        import torch
        torch_otel.uninstrument()
    """)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(NO_SDK_LINE) == 1, run.stderr


def test_instrument_with_sdk_providers_says_nothing_and_names_only_a_missing_one():
    full = python("""
        import torch, torch_otel
        from opentelemetry import _logs, metrics, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider()); _logs.set_logger_provider(LoggerProvider())
        metrics.set_meter_provider(MeterProvider())
        torch_otel.instrument(); torch_otel.uninstrument()
    """)
    assert full.returncode == 0 and "torch-otel:" not in full.stderr, full.stderr
    partial = python("""
        import torch, torch_otel
        from opentelemetry import _logs, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider()); _logs.set_logger_provider(LoggerProvider())
        torch_otel.instrument(); torch_otel.uninstrument()
    """)
    lines = [line for line in partial.stderr.splitlines() if line.startswith("torch-otel:")]
    assert len(lines) == 1 and "metrics (no SDK MeterProvider" in lines[0], partial.stderr
    assert "traces" not in lines[0].split("will not be exported")[0] and "logs" not in lines[0].split("(")[0]
    off = python("""
        import torch, torch_otel
        from opentelemetry import _logs, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider()); _logs.set_logger_provider(LoggerProvider())
        torch_otel.instrument(); torch_otel.uninstrument()
    """, clean_env(TORCH_OTEL_METRICS="off"))
    assert "torch-otel:" not in off.stderr, off.stderr  # metrics turned off: no MeterProvider needed


# ------------------------------------------------------------------ doctor without torch


def site_without_torch(folder: Path) -> Path:
    """A copy (by symbolic links) of this environment's site-packages without torch and its metadata, so that
    `import torch` fails and `importlib.metadata` finds no torch, as where torch was never installed."""
    folder.mkdir()
    for key in ("purelib", "platlib"):
        for entry in Path(sysconfig.get_paths()[key]).iterdir():
            name = entry.name.lower()
            if name == "torch" or name.startswith("torch-") or (folder / entry.name).exists():
                continue
            (folder / entry.name).symlink_to(entry)
    return folder


@pytest.mark.parametrize(("environ", "verdict"), [
    ({}, "the settings are valid, but torch is not importable here, so there is nothing to export"),
    ({"TORCH_OTEL_SPAN": "off"}, "the settings are valid, but torch is not importable here"),
    ({"TORCH_OTEL_QUEUE_SIZE": "0"}, "1 bad setting(s); and torch is not importable"),
])
def test_doctor_without_torch_never_says_everything_looks_fine(tmp_path, environ, verdict):
    site = site_without_torch(tmp_path / "site")
    # -S: no site-packages, no .pth files (the editable install's among them); only src/ and the copy above.
    code = "import sys; sys.path[1:1] = sys.argv[1:3]; del sys.argv[1:3]; from torch_otel.tools.cli import main; " \
           "sys.exit(main())"
    env = {"PATH": os.environ.get("PATH", ""), "TORCH_LOGS": "recompiles", **environ}
    run = subprocess.run([sys.executable, "-S", "-c", code, str(SRC), str(site), "doctor", "--no-check"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    assert "[warning] torch is not importable (ModuleNotFoundError: No module named 'torch')" in run.stdout
    result = run.stdout.rsplit("Result\n------\n", 1)[1]
    assert "everything looks fine" not in result
    assert verdict in result, result
    assert run.returncode == (2 if "bad setting" in verdict else 0)


# ---------------------------------------------------------------------------------- the demo


@pytest.mark.slow
def test_demo_points_to_its_file_and_html_before_jaeger_and_grafana(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(tmp_path / "out")],
                         env=clean_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    telemetry, html = tmp_path / "out" / "torch-otel-demo.jsonl", tmp_path / "out" / "torch-otel-demo.html"
    assert telemetry.is_file() and html.is_file()
    said = out.index("What the demo did")
    assert out.index("\n$ torch-otel report ") < said  # the report ran first
    assert f"torch-otel report {telemetry}" in out[said:] and str(html) in out[said:]
    next_step = out.index("Next step")
    assert said < next_step < out.index("collector-config/", next_step)
    assert "Jaeger" not in out[:said] and "Grafana" not in out[:said]  # a collector is the next step, not the first
    assert out.index("In Jaeger:") > next_step  # serving.py's Jaeger guide follows the next step
