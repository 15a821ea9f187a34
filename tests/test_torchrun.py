"""Multi-rank: `torch-otel run -- python -m torch.distributed.run --nproc-per-node 2 <workload>` (gloo, CPU).

The launcher and both ranks are Python children of `torch-otel run`, so all three export. Each rank's resource
carries pytorch.distributed.{rank,world_size,local_rank}; the launcher's has none of them.

ddp_compile.py runs against a rotel collector (`collector` marker); rank_skew.py, where rank 1 alone recompiles on
one step while rank 0 waits in an all_reduce, runs with nothing configured: every process of the run writes to the
one embedded default file, which the tests read as OTLP JSON and through `torch-otel report`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter

import pytest

from collector import RotelCollector, free_port
from e2e import BIN, ROOT, child_env, run_child
from otlp_sink import OtlpSink

pytestmark = pytest.mark.slow

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


@pytest.mark.collector
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


@pytest.mark.collector
def test_each_rank_compiles_inside_its_own_step_spans(ddp_sink):
    spans = ddp_sink.spans()
    steps = {(s.resource.get(RANK), s.span_id) for s in spans if s.name == "ddp-step"}
    compiles = [s for s in spans if s.name == "torch.compile"]
    for rank in (0, 1):
        mine = [s for s in compiles if s.resource.get(RANK) == rank]
        assert mine, f"no torch.compile span from rank {rank}"
        assert all((rank, s.parent_span_id) in steps for s in mine), (
            f"rank {rank}: a torch.compile span whose parent is not one of its own ddp-step spans")


@pytest.mark.collector
def test_ddp_graphs_artifact_arrives_from_every_rank(ddp_sink):
    """DDPOptimizer splits the compiled graph at bucket boundaries and logs the pieces (artifact ddp_graphs)."""
    ddp_sink.wait_for(lambda s: {0, 1} <= {r.resource.get(RANK) for r in s.log_records()
                                            if r.event_name == "pytorch.artifact.ddp_graphs"})
    artifacts = [r for r in ddp_sink.log_records() if r.event_name == "pytorch.artifact.ddp_graphs"]
    assert all(r.attributes.get("pytorch.log.artifact") == "ddp_graphs" for r in artifacts)
    assert any("---split graph---" in str(r.body) for r in artifacts)
    assert all(r.attributes.get("pytorch.compile.id") for r in artifacts)


# ---------------------------------------------------------------------------------------------- rank skew, file export

COMPILE_START = "pytorch.compile.start"  # the event another change adds to signals/spans.py
SKEW_REASON = "tensor 'x' size mismatch at index 0. expected 8, actual 16"
SKEW_TIMEOUT_S = 150  # the whole run; each collective in the workload gives up after 60 s


def _attributes(items) -> dict:
    """OTLP JSON's [{"key": k, "value": {"intValue": "1"}}] as {k: 1}."""
    out = {}
    for item in items or []:
        ((kind, value),) = item["value"].items() if item["value"] else (("stringValue", ""),)
        out[item["key"]] = int(value) if kind == "intValue" else value
    return out


class SkewRun:
    """What one `torch-otel run -- torchrun ... rank_skew.py` left behind: its one file, parsed, and its output."""

    def __init__(self, path, stdout: str, stderr: str) -> None:
        self.path, self.stdout, self.stderr = path, stdout, stderr
        self.spans: list[tuple[dict, dict]] = []  # (resource, span with attributes decoded)
        self.records: list[tuple[dict, dict]] = []
        self.points: list[tuple[dict, str, dict]] = []  # (resource, metric name, data point)
        for line in path.read_text(encoding="utf-8").splitlines():
            request = json.loads(line)
            for rs in request.get("resourceSpans", []):
                resource = _attributes(rs["resource"].get("attributes"))
                for ss in rs["scopeSpans"]:
                    self.spans += [(resource, {**s, "attributes": _attributes(s.get("attributes"))})
                                   for s in ss["spans"]]
            for rl in request.get("resourceLogs", []):
                resource = _attributes(rl["resource"].get("attributes"))
                for sl in rl["scopeLogs"]:
                    self.records += [(resource, {**r, "attributes": _attributes(r.get("attributes"))})
                                     for r in sl["logRecords"]]
            for rm in request.get("resourceMetrics", []):
                resource = _attributes(rm["resource"].get("attributes"))
                for sm in rm["scopeMetrics"]:
                    for m in sm["metrics"]:
                        data = m.get("histogram") or m.get("sum") or m.get("gauge") or {}
                        self.points += [(resource, m["name"], {**p, "attributes": _attributes(p.get("attributes"))})
                                        for p in data.get("dataPoints", [])]

    def compiles(self, rank: int) -> dict[str, dict]:
        """The torch.compile spans of one rank, by compile id."""
        mine = [s for res, s in self.spans if s["name"] == "torch.compile" and res.get(RANK) == rank]
        by_id = {s["attributes"]["pytorch.compile.id"]: s for s in mine}
        assert len(by_id) == len(mine), f"rank {rank}: two torch.compile spans share a compile id"
        return by_id


def _run_and_wait(command: list[str], env: dict[str, str], cwd, timeout: float) -> subprocess.CompletedProcess:
    """Runs the launcher in its own process group and kills the whole group (torchrun and both ranks) on timeout."""
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s: {stderr[-4000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def skew_run(tmp_path_factory) -> SkewRun:
    """One 2-rank torchrun of rank_skew.py under `torch-otel run` with no exporter configured (the embedded default
    file in the working directory), TORCH_LOGS=recompiles."""
    cwd = tmp_path_factory.mktemp("rank_skew")
    port = str(free_port())
    command = [str(BIN / "torch-otel"), "run", "--", sys.executable, "-m", "torch.distributed.run",
               "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", port,
               str(ROOT / "tests" / "workloads" / "rank_skew.py")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_OTEL_", "TORCH_LOGS"))}
    env.pop("PYTHONPATH", None)
    env.update(TORCH_LOGS="recompiles", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=port)
    done = _run_and_wait(command, env, cwd, SKEW_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads(found) for found in re.findall(r'\{"rank": [^{}]*\}', done.stdout)]
    assert sorted(r["rank"] for r in ranks) == [0, 1], done.stdout
    files = list(cwd.glob("torch-otel-*.jsonl"))
    assert len(files) == 1, f"expected one file for the launcher and both ranks, found {files}"
    return SkewRun(files[0], done.stdout, done.stderr)


def test_rank_skew_every_process_writes_to_the_one_file_with_its_rank(skew_run):
    resources = {json.dumps(res, sort_keys=True): res for res, _ in skew_run.spans + skew_run.records}
    resources.update({json.dumps(res, sort_keys=True): res for res, _, _ in skew_run.points})
    ranked = [res for res in resources.values() if RANK in res]
    assert {res[RANK] for res in ranked} == {0, 1}
    for res in ranked:
        assert res[WORLD_SIZE] == 2 and res[LOCAL_RANK] == res[RANK], res
    compiles = [res for res, s in skew_run.spans if s["name"] == "torch.compile"]
    assert compiles and all(res.get(RANK) in (0, 1) for res in compiles), "a torch.compile span without a rank"
    steps = [(res.get(RANK), s["attributes"]) for res, s in skew_run.spans if s["name"] == "rank-step"]
    assert Counter(rank for rank, _ in steps) == {0: 3, 1: 3}
    assert all(attrs["app.rank"] == rank for rank, attrs in steps)


def test_rank_skew_only_rank_1_recompiles_with_its_reason(skew_run):
    rank0, rank1 = skew_run.compiles(0), skew_run.compiles(1)
    assert set(rank0) == {"0/0"}, rank0.keys()
    assert set(rank1) == {"0/0", "0/1"}, rank1.keys()
    assert all(s["attributes"]["code.function.name"] == "skewed_step" for s in [*rank0.values(), *rank1.values()])
    assert SKEW_REASON in rank1["0/1"]["attributes"]["pytorch.compile.recompile_reason"]
    assert not any("pytorch.compile.recompile_reason" in s["attributes"] for s in [*rank0.values(), rank1["0/0"]])
    # The compile happened inside rank 1's step 1 (its own trace), not in a step of rank 0.
    steps = {s["spanId"]: s["attributes"] for res, s in skew_run.spans if s["name"] == "rank-step"}
    assert steps[rank1["0/1"]["parentSpanId"]] == {"app.rank": 1, "app.step": 1}
    # The pytorch.recompile event: rank 1 only, with the reason.
    recompiles = [(res.get(RANK), r) for res, r in skew_run.records if r.get("eventName") == "pytorch.recompile"]
    assert [rank for rank, _ in recompiles] == [1], recompiles
    assert SKEW_REASON in recompiles[0][1]["body"]["stringValue"]
    assert recompiles[0][1]["attributes"]["pytorch.compile.id"] == "0/1"


def test_rank_skew_compile_duration_metric_carries_the_rank(skew_run):
    """What the Prometheus rule and the dashboard's per-rank panel rest on: pytorch.compile.duration points with the
    rank in the resource (a label once the collector converts resource attributes), one compile on rank 0, two on
    rank 1; pytorch.compile.recompiles from rank 1 only."""
    roots: dict[int, int] = {}
    for res, name, point in skew_run.points:
        if name == "pytorch.compile.duration" and point["attributes"]["pytorch.compile.phase"] == "torch.compile":
            rank = res[RANK]
            roots[rank] = max(roots.get(rank, 0), int(point["count"]))  # cumulative: the last point counts all
            assert float(point["sum"]) > 0
    assert roots == {0: 1, 1: 2}
    recompiles = {res.get(RANK) for res, name, point in skew_run.points
                  if name == "pytorch.compile.recompiles" and float(point.get("asInt") or point.get("asDouble") or 0)}
    assert recompiles == {1}


def test_rank_skew_compile_start_events_from_every_rank(skew_run):
    """pytorch.compile.start: one log record when each compile starts, from each rank, so a compile that never ends
    is still seen."""
    starts = [(res.get(RANK), r) for res, r in skew_run.records if r.get("eventName") == COMPILE_START]
    assert starts, f"no {COMPILE_START} log record in {skew_run.path}"
    by_rank = Counter(rank for rank, _ in starts)
    assert by_rank[0] >= 1 and by_rank[1] >= 2, by_rank
    for rank in (0, 1):
        ids = {r["attributes"].get("pytorch.compile.id") for rk, r in starts if rk == rank} - {None}
        assert not ids or set(skew_run.compiles(rank)) <= ids, (rank, ids)


def _report_section(text: str, title: str) -> list[str]:
    """The lines of one section of `torch-otel report`'s text: from its title to the next blank line."""
    lines = text.splitlines()
    assert title in [line.strip() for line in lines], f"no section {title!r} in the report:\n{text}"
    start = next(i for i, line in enumerate(lines) if line.strip() == title) + 1
    section = []
    for line in lines[start:]:
        if not line.strip():
            break
        section.append(line)
    return section


def test_rank_skew_report_names_the_rank_that_compiled_alone(skew_run):
    done = subprocess.run([str(BIN / "torch-otel"), "report", str(skew_run.path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 0" in done.stdout and "rank 1" in done.stdout

    only = _report_section(done.stdout, "Compiles on some ranks only")
    (line,) = [line for line in only if "0/1" in line]
    assert "skewed_step" in line and "size mismatch" in line, line
    assert [row for row in only if row is not line and "skewed_step" in row] == [], "0/0 ran on both ranks"
    # The ranks column names rank 1 and not rank 0 (the compile id and the reason's numbers taken out first).
    rest = line.replace("0/1", " ").replace("0/0", " ")
    rest = re.sub(r"index 0|expected 8|actual 16", " ", rest)
    assert re.search(r"(?<![\w/.])1(?![\w/.])", rest) and not re.search(r"(?<![\w/.])0(?![\w/.])", rest), line

    across = _report_section(done.stdout, "Compiles across ranks")
    slowest = [re.search(r"slowest: rank (\d+), \+([\d.]+) s over the median \(compile id ([^)]+)\)", row)
               for row in across]
    found = [m for m in slowest if m]
    assert found, across
    # Rank 1's first compile paid for a cold cache (1.5 s in its backend): the report names it for 0/0 (with two
    # ranks the median is their midpoint, so about half of that is over it).
    first = [m for m in found if m.group(3).strip() == "0/0"]
    assert len(first) == 1 and first[0].group(1) == "1" and float(first[0].group(2)) >= 0.5, across
