"""The embedded default of `torch-otel run`: with nothing configured, every signal goes to one OTLP JSON Lines file."""

from __future__ import annotations

import json
import re
import os
import sys

import pytest

from e2e import BIN, WORKLOAD, run_child

pytestmark = pytest.mark.slow


def unconfigured_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_OTEL_"))}
    env.update(TORCH_LOGS="recompiles,graph_breaks", PYTHONUNBUFFERED="1", **extra)
    return env


def lines_by_signal(path) -> dict[str, list[dict]]:
    signals: dict[str, list[dict]] = {"resourceSpans": [], "resourceLogs": [], "resourceMetrics": []}
    for line in path.read_text().splitlines():
        request = json.loads(line)
        (key,) = request.keys()
        signals[key].append(request)
    return signals


def test_nothing_configured_writes_every_signal_to_one_otlp_json_file(tmp_path):
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, str(WORKLOAD)], unconfigured_env(),
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    (path,) = tmp_path.glob("torch-otel-*.jsonl")
    notices = [line for line in run.stderr.splitlines() if line.startswith("torch-otel:")]
    assert len(notices) == 1 and str(path.name) in notices[0] and "OTEL_EXPORTER_OTLP_ENDPOINT" in notices[0]
    signals = lines_by_signal(path)
    assert all(signals.values())

    spans = [span for request in signals["resourceSpans"] for rs in request["resourceSpans"]
             for ss in rs["scopeSpans"] for span in ss["spans"]]
    requests = run.requests()
    assert {s["traceId"] for s in spans if s["name"] == "request"} == {r["trace_id"] for r in requests}
    assert all(len(s["spanId"]) == 16 and len(s["traceId"]) == 32 for s in spans)
    compiles = [s for s in spans if s["name"] == "torch.compile"]
    assert len(compiles) == 4

    records = [r for request in signals["resourceLogs"] for rl in request["resourceLogs"]
               for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    recompile_events = [r for r in records if r.get("eventName") == "pytorch.recompile"]
    assert len(recompile_events) == 2 and all(r["traceId"] == requests[2]["trace_id"] for r in recompile_events)

    metric_names = {m["name"] for request in signals["resourceMetrics"] for rm in request["resourceMetrics"]
                    for sm in rm["scopeMetrics"] for m in sm["metrics"]}
    assert {"pytorch.compile.recompiles", "pytorch.compile.duration"} <= metric_names


COMPILES = "import torch; torch.compile(lambda x: x + 1, backend='eager')(torch.ones(2))"


def test_torch_otel_file_names_the_file_and_an_endpoint_turns_the_default_off(tmp_path):
    target = tmp_path / "run.jsonl"
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", COMPILES],
                    unconfigured_env(TORCH_OTEL_FILE=str(target)), cwd=tmp_path)
    assert run.returncode == 0 and target.exists()
    assert [path.name for path in tmp_path.iterdir()] == ["run.jsonl"]
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", COMPILES],
                    unconfigured_env(OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
                                     OTEL_METRICS_EXPORTER="none"), cwd=tmp_path)
    assert run.returncode == 0 and [path.name for path in tmp_path.iterdir()] == ["run.jsonl"]
    assert "torch-otel:" not in run.stderr


def test_a_full_disk_is_one_line_and_a_counted_loss(tmp_path):
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", COMPILES],
                    unconfigured_env(TORCH_OTEL_FILE="/dev/full"), cwd=tmp_path)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.startswith("torch-otel:")]
    assert len([line for line in lines if "cannot write to /dev/full (No space left on device)" in line]) == 1
    (loss,) = [line for line in lines if "not delivered (failed" in line]
    assert re.search(r"\b\d+ spans\b", loss) and "metric export" in loss


def test_a_lone_surrogate_costs_one_character_not_the_batch(tmp_path):
    """A message holding a lone surrogate (an undecodable file name, say) is exported with it replaced; before,
    the whole export request holding it was rejected and its neighbours were lost with it."""
    script = (
        "import logging, torch\n"
        "log = logging.getLogger('torch._dynamo')\n"
        "log.warning('before'); log.warning('bad \\udcff surrogate'); log.warning('after')\n"
    )
    target = tmp_path / "run.jsonl"
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", script],
                    unconfigured_env(TORCH_OTEL_FILE=str(target)), cwd=tmp_path)
    assert run.returncode == 0 and "not delivered" not in run.stderr, run.stderr[-2000:]
    bodies = [r["body"]["stringValue"] for request in lines_by_signal(target)["resourceLogs"]
              for rl in request["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    assert ["before", "bad ? surrogate", "after"] == [b for b in bodies if b in ("before", "after") or "surrogate" in b]


def test_a_read_only_working_directory_moves_the_default_file_to_the_temporary_folder(monkeypatch):
    """A container's read-only working directory must not stop the program: the embedded default goes to the
    temporary folder instead (and `torch-otel run` announces where)."""
    import tempfile

    from torch_otel.config import export_config

    real_access = os.access
    monkeypatch.setattr(export_config.os, "access", lambda path, mode: False if path == "." else real_access(path, mode))
    plan = export_config.export_plan({})
    assert plan.file_path is not None and str(plan.file_path.parent) == tempfile.gettempdir()
    assert plan.file_path.name.startswith("torch-otel-")
