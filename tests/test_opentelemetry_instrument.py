"""Under `opentelemetry-instrument`, a bad TORCH_LOGS gets one paragraph from torch-otel, torch keeps its own
behaviour (its `import torch` error, exactly as without instrumentation), and the instrumentors loaded after torch's
still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from torch_otel.instrumentor import TorchInstrumentor

BIN = Path(sys.executable).parent
QUIET_OTEL = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
APP = """\
import json, sys
before = "torch" in sys.modules
try:
    import torch
except BaseException as error:
    print(json.dumps({"torch_before_import": before, "error": [type(error).__name__, str(error)]}), flush=True)
    raise
from torch_otel.instrumentor import TorchInstrumentor
import torch._logging._internal as internal
print(json.dumps({
    "torch_before_import": before,
    "bridge": TorchInstrumentor.bridge is not None,
    "levels": dict(internal.log_state.log_qname_to_level),
    "artifacts": sorted(internal.log_state.artifact_names),
}), flush=True)
"""
# An instrumentor of another library. Its distribution sits on sys.path after site-packages, so the loader reaches
# it after torch-otel's entry point; it records whether torch-otel's entry point had been loaded by then.
LATER_INSTRUMENTOR = """\
import os, sys
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

class LaterInstrumentor(BaseInstrumentor):
    def instrumentation_dependencies(self):
        return ()

    def _instrument(self, **kwargs):
        with open(os.environ["LATER_INSTRUMENTOR_RECORD"], "w") as record:
            record.write(str("torch_otel.instrumentor" in sys.modules))

    def _uninstrument(self, **kwargs):
        pass
"""
LOADER_FAILURES = ("Instrumenting of torch failed", "Failed to auto initialize OpenTelemetry")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("otel_instrument")
    (root / "app.py").write_text(APP)
    later = root / "later"
    info = later / "later_instrumentation-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: later-instrumentation\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\nlater = later_instrumentor:LaterInstrumentor\n"
    )
    (later / "later_instrumentor.py").write_text(LATER_INSTRUMENTOR)
    return root


def run_app(workspace: Path, torch_logs: str, instrumented: bool) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    record = workspace / "later_record"
    record.unlink(missing_ok=True)
    environ.update(
        QUIET_OTEL,
        TORCH_LOGS=torch_logs,
        LATER_INSTRUMENTOR_RECORD=str(record),
        PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"], str(workspace / "later")]),
    )
    command = [sys.executable, "app.py"]
    if instrumented:
        command = [str(BIN / "opentelemetry-instrument"), *command]
    return subprocess.run(command, env=environ, cwd=workspace, capture_output=True, text=True, timeout=180)


def later_instrumentor_ran_after_torch(workspace: Path) -> bool:
    record = workspace / "later_record"
    return record.exists() and record.read_text() == "True"


def outcome(run: subprocess.CompletedProcess[str]) -> dict:
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, (run.stdout, run.stderr)
    return json.loads(lines[0])


@pytest.mark.parametrize(
    ("torch_logs", "paragraph"),
    [
        ("dynamoo", "item 'dynamoo' is not a registered component, artifact or importable module; did you mean"),
        ("+dynamo,recompile", "item 'recompile' is not a registered component"),
        ("dynamo aot", "whitespace inside an item is not allowed; separate items with commas"),
        ("", "the value is empty"),
        # torch must be imported to resolve torch._dynamo.utils, so torch-otel cannot be sure and leaves it to torch
        ("torch._dynamo.utils,dynamoo", None),
    ],
)
def test_bad_torch_logs_is_one_paragraph_and_torch_raises_its_own_error(
    workspace: Path, torch_logs: str, paragraph: str | None
) -> None:
    plain = run_app(workspace, torch_logs, instrumented=False)
    run = run_app(workspace, torch_logs, instrumented=True)

    expected = outcome(plain)
    assert "error" in expected and not expected["torch_before_import"]
    assert outcome(run) == expected  # the same error, from torch, raised by the program's own `import torch`
    assert run.returncode == plain.returncode != 0

    assert run.stderr.count("Traceback") == 1 == plain.stderr.count("Traceback")  # the program's, nothing else
    assert not any(failure in run.stderr for failure in LOADER_FAILURES), run.stderr
    ours = [line for line in run.stderr.splitlines() if line.startswith("torch-otel:")]
    if paragraph is None:
        assert ours == [], run.stderr
    else:
        assert len(ours) == 1 and paragraph in ours[0], run.stderr
        assert ours[0].startswith(f"torch-otel: TORCH_LOGS={torch_logs!r}: ")
        assert "Valid components: all, aot," in ours[0]
    assert later_instrumentor_ran_after_torch(workspace), run.stderr


def test_good_torch_logs_is_applied_by_torch_and_instrumented(workspace: Path) -> None:
    run = run_app(workspace, "+dynamo,recompiles", instrumented=True)
    assert run.returncode == 0, run.stderr
    assert later_instrumentor_ran_after_torch(workspace)
    result = outcome(run)
    plain = outcome(run_app(workspace, "+dynamo,recompiles", instrumented=False))
    assert result["bridge"] and not plain["bridge"]
    assert not result["torch_before_import"]  # torch-otel waited for the program's import
    assert (result["levels"], result["artifacts"]) == (plain["levels"], plain["artifacts"])
    assert result["levels"]["torch._dynamo"] == 10 and result["artifacts"] == ["recompiles"]
    assert "Traceback" not in run.stderr and "torch-otel:" not in run.stderr, run.stderr


def test_check_before_import_decides_only_what_is_certain(tmp_path: Path) -> None:
    """In a process that has not imported torch: certain rejections raise, the rest pass, torch stays unimported."""
    (tmp_path / "tlogs_program_module.py").write_text("")
    cases = [
        ("dynamoo", "TorchLogsError", []),
        ("x,", "TorchLogsError", []),
        ("+dynamo,guards", "pass", []),
        ("torch._dynamo.utils,dynamoo", "pass", []),  # deciding needs torch imported: left to torch
        ("tlogs_program_module", "pass", [str(tmp_path)]),  # found in the program's folder
        ("tlogs_program_module", "TorchLogsError", []),
    ]
    script = textwrap.dedent(
        f"""
        import json, sys
        from torch_otel.capture.torch_import import check_torch_logs_before_import
        finders = list(sys.meta_path)
        results = []
        for value, _, program_path in {cases!r}:
            try:
                check_torch_logs_before_import(value, program_path)
                results.append("pass")
            except ValueError as error:
                results.append(type(error).__name__)
        print(json.dumps([results, "torch" in sys.modules, sys.meta_path == finders]))
        """
    )
    environ = {k: v for k, v in os.environ.items() if k != "TORCH_LOGS"}
    done = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results, torch_imported, finders_restored = json.loads(done.stdout)
    assert results == [expected for _, expected, _ in cases]
    assert not torch_imported and finders_restored


def test_instrument_never_raises_on_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("TORCH_OTEL_SPANS", "sometimes")
    instrumentor = TorchInstrumentor()
    instrumentor._instrument()
    assert TorchInstrumentor.bridge is None
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("torch-otel: TORCH_OTEL_SPANS='sometimes' is not valid")
    assert lines[0].endswith("The program runs without torch-otel.")
