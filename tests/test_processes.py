"""Which processes get torch-otel under `torch-otel run`, what they leave behind, and what each one sends or says
it lost. Every test goes through the real entry point with real children."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from collector import TcpBlackhole, free_port
from e2e import BIN, ROOT, run_child
from otlp_sink import OtlpSink

pytestmark = pytest.mark.slow

WORKLOAD = ROOT / "tests" / "workloads" / "process_tree.py"
RECORDER = ROOT / "tests" / "workloads" / "process_recorder"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_", "PYTHONPATH"))}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def torch_otel_run(env: dict[str, str], *args: str, cwd: Path = ROOT, timeout: float = 300):
    return run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, str(WORKLOAD), *args], env,
                     cwd=cwd, timeout=timeout)


def report(run) -> dict:
    return json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][-1])


def otlp_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def spans_in(lines: list[dict]) -> list[dict]:
    return [span for line in lines for rs in line.get("resourceSpans", []) for ss in rs["scopeSpans"]
            for span in ss["spans"]]


def metric_resources(lines: list[dict]) -> list[dict]:
    return [{a["key"]: next(iter(a["value"].values())) for a in rm["resource"]["attributes"]}
            for line in lines for rm in line.get("resourceMetrics", [])]


def test_bare_children_load_nothing_and_leave_one_file(tmp_path):
    """A child that never imports torch loads only the bootstrap: no torch_otel module, no wrapt, no exit work."""
    plain = run_child([sys.executable, str(WORKLOAD), "bare-children", "1"], clean_env(), cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    run = torch_otel_run(clean_env(), "bare-children", "5", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    children = report(run)["children"]
    assert len(children) == 5
    baseline = report(plain)["children"][0]["exit_callbacks"]
    for child in children:
        assert child["torch_otel"] == [] and not child["wrapt"] and not child["torch"], child
        assert child["exit_callbacks"] == baseline, child
    files = sorted(path.name for path in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("torch-otel-") and files[0].endswith(".jsonl"), files
    notices = [line for line in run.stderr.splitlines() if line.startswith("torch-otel:")]
    assert len(notices) == 1 and files[0] in notices[0], run.stderr[-2000:]
    compiles = [span for span in spans_in(otlp_lines(tmp_path / files[0])) if span["name"] == "torch.compile"]
    assert len(compiles) == 1


def test_a_program_that_never_imports_torch_leaves_no_file(tmp_path):
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", "print('ran')"], clean_env(),
                    cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "ran"
    assert list(tmp_path.iterdir()) == []


def test_torch_helpers_stay_bare(tmp_path):
    """Inductor's CPU-feature probes and its compile workers start without torch-otel; the only file is the
    program's. A recorder sitecustomize (run after torch-otel's) logs every Python process of the run."""
    log = tmp_path / "processes.jsonl"
    env = clean_env(PYTHONPATH=str(RECORDER), TORCH_OTEL_TEST_PROCESS_LOG=str(log),
                    TORCHINDUCTOR_FORCE_DISABLE_CACHES="1", TORCHINDUCTOR_COMPILE_THREADS="2")
    run = torch_otel_run(env, "inductor", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    program = report(run)["pid"]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    starts = {event["pid"]: event for event in events if event["event"] == "start"}
    exits = {event["pid"]: event for event in events if event["event"] == "exit"}
    helpers = {pid: event for pid, event in starts.items() if pid != program}
    probes = [event for event in helpers.values() if event["argv"][:1] == ["-c"]]
    workers = [event for event in helpers.values() if "compile_worker" in " ".join(event["argv"])]
    assert probes, f"no CPU-feature probe seen: {[e['argv'][:1] for e in helpers.values()]}"
    assert workers, f"no compile worker seen: {[e['argv'][:1] for e in helpers.values()]}"
    assert starts[program]["bootstrap"] and exits[program]["torch_otel"]
    assert not any(event["bootstrap"] for event in helpers.values()), helpers
    assert not any(exits[pid]["torch_otel"] for pid in helpers if pid in exits)
    files = sorted(path.name for path in tmp_path.iterdir() if path != log)
    assert len(files) == 1 and files[0].startswith("torch-otel-"), files


def test_fork_child_sends_its_spans_and_metrics_to_the_file(tmp_path):
    run = torch_otel_run(clean_env(TORCH_LOGS="recompiles"), "fork-compile", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    pids = report(run)
    assert pids["child_exitcode"] == 0
    (path,) = tmp_path.glob("torch-otel-*.jsonl")
    lines = otlp_lines(path)
    functions = {next(a["value"]["stringValue"] for a in span["attributes"] if a["key"] == "code.function.name")
                 for span in spans_in(lines) if span["name"] == "torch.compile"}
    assert functions == {"scaled", "in_the_child"}
    child_metrics = [r for r in metric_resources(lines) if r.get("process.pid") == str(pids["child_pid"])
                     or r.get("process.pid") == pids["child_pid"]]
    assert child_metrics, metric_resources(lines)
    assert "torch-otel:" not in run.stderr.replace(f"go to {path.name}", "").split("instead).", 1)[-1]


@pytest.mark.collector
def test_fork_child_sends_its_spans_and_metrics_over_otlp(collector, otlp_sink):
    env = clean_env(**collector.otel_env("grpc"), OTEL_SERVICE_NAME="fork-test", OTEL_BSP_SCHEDULE_DELAY="100")
    run = torch_otel_run(env, "fork-compile")
    assert run.returncode == 0, run.stderr[-3000:]
    pids = report(run)
    assert "torch-otel:" not in run.stderr, run.stderr[-3000:]
    otlp_sink.wait_for(lambda s: {"scaled", "in_the_child"} <= {
        span.attributes.get("code.function.name") for span in s.spans() if span.name == "torch.compile"})
    child_points = otlp_sink.wait_for(lambda s: [p for p in s.metrics()
                                                 if p.resource.get("process.pid") == pids["child_pid"]])
    assert {point.name for point in child_points} >= {"pytorch.compile.duration"}
    parent_points = [p for p in otlp_sink.metrics() if p.resource.get("process.pid") == pids["pid"]
                     and p.name == "pytorch.compile.duration"]
    assert parent_points, "the parent's own metrics did not arrive"
    # One identity per process on every signal, log records taking the fast path's own encoder included.
    otlp_sink.wait_for(lambda s: any(r.resource.get("process.pid") == pids["child_pid"] for r in s.log_records()))
    identities = {}
    for pid in (pids["pid"], pids["child_pid"]):
        per_signal = [{(item.resource.get("service.instance.id"), pid) for item in items
                       if item.resource.get("process.pid") == pid}
                      for items in (otlp_sink.spans(), otlp_sink.log_records(), otlp_sink.metrics())]
        (identities[pid],) = per_signal[0]
        assert per_signal[1] == per_signal[2] == {identities[pid]}, per_signal
    assert identities[pids["pid"]][0] != identities[pids["child_pid"]][0]


LOSS_LINE = re.compile(r"^torch-otel: not delivered \(failed, or still queued at exit\): (?P<counts>[^;]+)", re.M)


def loss_counts(stderr: str) -> dict[str, int]:
    (match,) = LOSS_LINE.finditer(stderr)
    counts = {}
    for part in match["counts"].split(", "):
        number, noun = re.fullmatch(r"(?:at least )?([\d,]+) (.+?)s?", part).groups()
        counts[noun] = int(number.replace(",", ""))
    return counts


@pytest.mark.parametrize("fast_path, collector, records", [
    ("on", "refusing", "40"), ("off", "refusing", "40"), ("on", "blackholed", "300 100000"),
])
def test_the_loss_line_counts_what_a_working_collector_would_have_received(fast_path, collector, records):
    """The same deterministic program twice: against a collector (what arrived), and against one that refuses
    connections or accepts and never answers (what the exit line says was lost). Log records (including records
    taken from the queue but not yet sent when the deadline came), spans and metric exports must match exactly."""
    common = dict(TORCH_LOGS="recompiles,guards", OTEL_SERVICE_NAME="loss-test", TORCH_OTEL_FAST_PATH=fast_path,
                  OTEL_EXPORTER_OTLP_INSECURE="true", TORCH_OTEL_SHUTDOWN_TIMEOUT="3")
    with OtlpSink() as sink:
        delivered = torch_otel_run(clean_env(**common, OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint), "steady",
                                   *records.split())
        assert delivered.returncode == 0, delivered.stderr[-3000:]
        assert "torch-otel:" not in delivered.stderr, delivered.stderr[-3000:]
        received = {"log record": len(sink.log_records()), "span": len(sink.spans()),
                    "metric export": len(sink.requests("metrics"))}
    assert received["log record"] > 40 and received["span"] > 2 and received["metric export"] == 1, received
    hole = TcpBlackhole() if collector == "blackholed" else None
    try:
        endpoint = hole.endpoint if hole else f"http://127.0.0.1:{free_port()}"
        lost = torch_otel_run(clean_env(**common, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint), "steady", *records.split())
    finally:
        if hole:
            hole.close()
    assert lost.returncode == 0, lost.stderr[-3000:]
    assert loss_counts(lost.stderr) == received, lost.stderr[-3000:]


def test_a_forked_child_reports_only_its_own_losses(tmp_path):
    """The parent drops records from a 10-record queue, then forks; the child exits through sys.exit (its own
    exit line runs) and must not repeat the parent's drop count."""
    run = torch_otel_run(clean_env(TORCH_OTEL_QUEUE_SIZE="10", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                                   TORCH_OTEL_SHUTDOWN_TIMEOUT="1"), "drop-then-fork", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    dropped = [line for line in run.stderr.splitlines() if "dropped because the queue was full" in line]
    assert len(dropped) == 1, run.stderr[-3000:]


class MetricsFail(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that accepts traces and logs and answers every metrics request with HTTP 500."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500 if self.path == "/v1/metrics" else 200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_http_500_on_metrics_is_counted_as_a_lost_metric_export():
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsFail)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = torch_otel_run(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                                       OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", TORCH_LOGS="recompiles"),
                             "steady", "3")
    finally:
        server.shutdown()
    assert run.returncode == 0, run.stderr[-3000:]
    assert loss_counts(run.stderr) == {"metric export": 1}, run.stderr[-3000:]
    assert "1 export request failed" in run.stderr
