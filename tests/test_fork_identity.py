"""One identity per process: a child forked under `torch-otel run` sends its spans, logs and metrics with one
resource of its own (a new service.instance.id and its own process.pid), and the parent keeps its own."""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from e2e import BIN, run_child
from torch_otel.exporters.sdk_setup import build_resource, renewed_identity

FORKING_PROGRAM = """
import json, os, sys
import torch
from opentelemetry import trace

tracer = trace.get_tracer("fork-identity")
compiled = torch.compile(lambda x: x.sin() + 1, backend="eager", dynamic=False)
with tracer.start_as_current_span("parent-step"):
    compiled(torch.ones(4))
child = os.fork()
if child == 0:
    with tracer.start_as_current_span("child-step"):
        compiled(torch.ones(8))  # a recompile, in the child only
    sys.exit(0)  # a normal exit: the child's own atexit flush runs
_, status = os.waitpid(child, 0)
with tracer.start_as_current_span("parent-step-after"):
    compiled(torch.ones(16))
print(json.dumps({"parent": os.getpid(), "child": child, "child_status": status}))
"""


def identities(path: Path) -> dict[str, set[tuple[str, str]]]:
    """Per signal, the (service.instance.id, process.pid) pairs of the resources in an OTLP JSON Lines file."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for line in path.read_text().splitlines():
        for signal, payload in json.loads(line).items():
            for resource in payload:
                values = {a["key"]: next(iter(a["value"].values())) for a in resource["resource"]["attributes"]}
                found[signal].add((values.get("service.instance.id"), str(values.get("process.pid"))))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork only")
def test_a_forked_child_has_one_identity_of_its_own_across_spans_logs_and_metrics(tmp_path):
    program = tmp_path / "forking.py"
    program.write_text(FORKING_PROGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_", "PYTHONPATH"))}
    env.update(PYTHONUNBUFFERED="1", TORCH_LOGS="recompiles")
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, str(program)], env, cwd=tmp_path,
                    timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    pids = json.loads(run.stdout.splitlines()[-1])
    assert pids["child_status"] == 0
    (path,) = tmp_path.glob("torch-otel-*.jsonl")
    found = identities(path)
    assert set(found) == {"resourceSpans", "resourceLogs", "resourceMetrics"}, found
    by_pid = {
        role: {signal: {pair for pair in pairs if pair[1] == str(pids[role])} for signal, pairs in found.items()}
        for role in ("parent", "child")
    }
    for role, signals in by_pid.items():
        (pair,) = signals["resourceSpans"]  # exactly one identity per process...
        assert signals["resourceLogs"] == signals["resourceMetrics"] == {pair}, (role, found)  # ...on every signal
        assert pair[0], (role, pair)
    parent, child = (next(iter(by_pid[role]["resourceSpans"])) for role in ("parent", "child"))
    assert parent[0] != child[0]
    everything = set().union(*found.values())
    assert everything == {parent, child}, everything  # no resource without a pid, none with a stray instance id


def test_identity_keys_set_by_the_user_win(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=mine,deployment.environment=test")
    resource = build_resource({})
    assert resource.attributes["service.instance.id"] == "mine"
    assert resource.attributes["process.pid"] == os.getpid()
    renewed = renewed_identity(resource)
    assert renewed.attributes["service.instance.id"] == "mine"
    assert renewed.attributes["deployment.environment"] == "test"

    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "process.pid=7")
    resource = build_resource({})
    assert resource.attributes["process.pid"] == "7"
    renewed = renewed_identity(resource)
    assert renewed.attributes["process.pid"] == "7"
    assert renewed.attributes["service.instance.id"] != resource.attributes["service.instance.id"]
