"""Multi-rank: `torch-otel run -- python -m torch.distributed.run --nproc-per-node 2 ddp_compile.py` (gloo, CPU).

The launcher and both ranks are Python children of `torch-otel run`, so all three export. Each rank's resource
carries pytorch.distributed.{rank,world_size,local_rank}; the launcher's has none of them."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

import pytest

from collector import RotelCollector, free_port
from e2e import BIN, ROOT, child_env, run_child
from otlp_sink import OtlpSink

pytestmark = [pytest.mark.slow, pytest.mark.collector]

RANK = "pytorch.distributed.rank"
WORLD_SIZE = "pytorch.distributed.world_size"
LOCAL_RANK = "pytorch.distributed.local_rank"


@pytest.fixture(scope="module")
def ddp_sink():
    """One torchrun run shared by the tests below (it is the most expensive child in the suite)."""
    with OtlpSink() as sink, RotelCollector(sink.endpoint) as collector:
        sink.ranks = _run_ddp(collector, sink)
        yield sink


def _run_ddp(collector, otlp_sink):
    port = str(free_port())
    command = [str(BIN / "torch-otel"), "run", "--", sys.executable, "-m", "torch.distributed.run",
               "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", port,
               str(ROOT / "tests" / "workloads" / "ddp_compile.py")]
    env = child_env(collector, TORCH_LOGS="ddp_graphs,recompiles", MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                    OMP_NUM_THREADS="1")
    run = run_child(command, env, timeout=150)
    assert run.returncode == 0, run.stderr[-4000:]
    # The ranks share the launcher's stdout: find each rank's one-line JSON report wherever it landed.
    ranks = [json.loads(found) for found in re.findall(r'\{"rank": [^{}]*\}', run.stdout)]
    assert sorted(r["rank"] for r in ranks) == [0, 1], run.stdout
    otlp_sink.wait_for(lambda s: {0, 1} <= {r.resource.get(RANK) for r in s.log_records()
                                            if str(r.body).startswith("ddp-rank-")})
    otlp_sink.wait_for(lambda s: {0, 1} <= {x.resource.get(RANK) for x in s.spans() if x.name == "torch.compile"})
    return ranks


def test_each_rank_exports_with_its_rank_in_the_resource(ddp_sink):
    by_rank = {r["rank"]: r for r in ddp_sink.ranks}
    marked = [r for r in ddp_sink.log_records() if str(r.body).startswith("ddp-rank-")]
    counts = Counter(str(r.body) for r in marked)
    assert set(counts) == {f"ddp-rank-{rank}-step-{step}" for rank in (0, 1) for step in (0, 1)}, counts
    assert set(counts.values()) == {1}, f"duplicated: {counts}"
    for record in marked:
        rank = int(str(record.body).split("-")[2])
        assert record.resource.get(RANK) == rank, (record.body, record.resource)
        assert record.resource.get(WORLD_SIZE) == 2, record.resource
        assert record.resource.get(LOCAL_RANK) == by_rank[rank]["local_rank"], record.resource
    for span in ddp_sink.spans():
        if span.name in ("torch.compile", "ddp-step") and RANK in span.resource:
            assert span.resource[WORLD_SIZE] == 2 and span.resource[LOCAL_RANK] in (0, 1), span.resource
    unranked = [r for r in ddp_sink.log_records() if RANK not in r.resource]  # the torchrun launcher's
    assert all(WORLD_SIZE not in r.resource and LOCAL_RANK not in r.resource for r in unranked)
    step_spans = [s for s in ddp_sink.spans() if s.name == "ddp-step"]
    assert Counter(s.resource.get(RANK) for s in step_spans) == {0: 2, 1: 2}
    assert all(s.attributes["app.rank"] == s.resource.get(RANK) for s in step_spans)


def test_each_rank_compiles_inside_its_own_step_spans(ddp_sink):
    spans = ddp_sink.spans()
    steps = {(s.resource.get(RANK), s.span_id) for s in spans if s.name == "ddp-step"}
    compiles = [s for s in spans if s.name == "torch.compile"]
    for rank in (0, 1):
        mine = [s for s in compiles if s.resource.get(RANK) == rank]
        assert mine, f"no torch.compile span from rank {rank}"
        assert all((rank, s.parent_span_id) in steps for s in mine), (
            f"rank {rank}: a torch.compile span whose parent is not one of its own ddp-step spans")


def test_ddp_graphs_artifact_arrives_from_every_rank(ddp_sink):
    """DDPOptimizer splits the compiled graph at bucket boundaries and logs the pieces (artifact ddp_graphs)."""
    ddp_sink.wait_for(lambda s: {0, 1} <= {r.resource.get(RANK) for r in s.log_records()
                                            if r.event_name == "pytorch.artifact.ddp_graphs"})
    artifacts = [r for r in ddp_sink.log_records() if r.event_name == "pytorch.artifact.ddp_graphs"]
    assert all(r.attributes.get("pytorch.log.artifact") == "ddp_graphs" for r in artifacts)
    assert any("---split graph---" in str(r.body) for r in artifacts)
    assert all(r.attributes.get("pytorch.compile.id") for r in artifacts)
