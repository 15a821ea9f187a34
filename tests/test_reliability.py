"""Fault injection: whatever happens to the collector, the program finishes with its own exit code, its exit is
delayed by at most TORCH_OTEL_SHUTDOWN_TIMEOUT (+ slack), stderr gets a bounded number of lines, and loss is
counted and reported once.

Every program runs as a real child under `torch-otel run` (workload: tests/workloads/fault_app.py). Times are
measured from the workload's own last statement (it prints ``time.time()`` in its JSON report):

* shutdown cost: until the end of the atexit phase, reported by a probe sitecustomize
  (tests/workloads/exit_probe) whose atexit handler runs right after torch-otel's. This is what
  TORCH_OTEL_SHUTDOWN_TIMEOUT bounds: it must stay within the timeout + SLACK.
* exit delay: until the process has exited. On top of the shutdown cost it includes the interpreter's own
  teardown of torch's thousands of modules, which happens without torch-otel too (measured here: 1.8-2.1 s for a
  plain `import torch` program, ~3 s with torch._dynamo imported, on a loaded 2-core machine), so it gets a
  generous TEARDOWN allowance on top; it still catches a process that hangs after atexit.

Every fault targets 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from collector import TcpBlackhole, free_port
from e2e import BIN, ROOT

pytestmark = pytest.mark.slow

FAULT_APP = ROOT / "tests" / "workloads" / "fault_app.py"
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
SLACK = 2.0  # scheduling on a loaded 2-core machine, process start-up of the flush threads
TEARDOWN = 8.0  # the interpreter's own teardown after atexit (torch's modules), see the module docstring
PROBE_DIR = ROOT / "tests" / "workloads" / "exit_probe"
PROBE_LINE = re.compile(r"^torch-otel-test-probe: atexit-done (?P<time>[0-9.]+)$")
STARTUP_TIMEOUT = 120.0
MAX_STDERR_LINES = 20


# -- harness ---------------------------------------------------------------------------------------------------
def fault_env(endpoint: str, **extra: str | None) -> dict[str, str]:
    """A clean environment (no inherited OTEL_*/TORCH_*) that exports every signal to ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_SERVICE_NAME="torch-otel-faults", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(PROBE_DIR))
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@dataclass
class Child:
    """A `torch-otel run -- python fault_app.py ...` child whose output is read as it arrives."""

    proc: subprocess.Popen
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    exited_at: float | None = None
    killed: bool = False
    pumps: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(cls, env: dict[str, str], *args: str, script: Path = FAULT_APP) -> Child:
        command = [str(BIN / "torch-otel"), "run", "--", sys.executable, str(script), *args]
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        child = cls(proc)
        for stream, sink in ((proc.stdout, child.stdout_lines), (proc.stderr, child.stderr_lines)):
            child.pumps.append(threading.Thread(target=cls._pump, args=(stream, sink), daemon=True))
            child.pumps[-1].start()
        return child

    @classmethod
    def run(cls, env: dict[str, str], *args: str, timeout: float) -> Finished:
        """Start, wait for the child to finish within ``timeout`` plus the usual slack, and never leave it behind."""
        child = cls.start(env, *args)
        try:
            return child.finish(timeout)
        finally:
            child.kill()

    @staticmethod
    def _pump(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def wait_for_stdout(self, predicate, timeout: float = STARTUP_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stdout_lines):
                if predicate(line):
                    return line
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the pumps catch up once more
                for line in list(self.stdout_lines):
                    if predicate(line):
                        return line
                raise AssertionError(f"child exited (rc={self.proc.returncode}) first:\n{self.stderr_tail()}")
            time.sleep(0.02)
        raise AssertionError(f"no matching stdout line within {timeout}s:\n{self.stderr_tail()}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def report(self, timeout: float = STARTUP_TIMEOUT) -> dict:
        return json.loads(self.wait_for_stdout(lambda line: line.startswith("{"), timeout))

    def wait_exit(self, since: float, limit: float) -> float:
        """Wait until ``since + limit`` (wall clock) for the process to exit, then SIGKILL it. Returns the exit
        delay measured from ``since`` (when killed: how long we waited)."""
        try:
            self.proc.wait(timeout=max(0.0, since + limit - time.time()))
            self.exited_at = time.time()
        except subprocess.TimeoutExpired:
            self.killed = True
            self.proc.kill()
            self.proc.wait()
            self.exited_at = time.time()
        for pump in self.pumps:  # read what is left in the pipes
            pump.join(timeout=5)
        return self.exited_at - since

    def finish(self, shutdown_timeout: float) -> Finished:
        """Wait for the program's own end (its JSON report), then for its exit; kill it once the exit is clearly
        late, so a broken shutdown costs this suite seconds, not minutes."""
        report = self.report()
        delay = self.wait_exit(report["end"], shutdown_timeout + SLACK + TEARDOWN + 1.0)
        return Finished(self.proc.returncode, report, delay, self.killed, list(self.stdout_lines),
                        list(self.stderr_lines))

    def atexit_done(self) -> float | None:
        return probe_time(self.stderr_lines)

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr_lines[-lines:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def probe_time(stderr_lines: list[str]) -> float | None:
    for line in stderr_lines:
        if match := PROBE_LINE.match(line):
            return float(match["time"])
    return None


@dataclass
class Finished:
    returncode: int
    report: dict
    exit_delay: float
    killed: bool
    stdout_lines: list[str]
    stderr_lines: list[str]

    @property
    def shutdown_cost(self) -> float | None:
        """Seconds from the program's last statement to the end of the atexit phase (None: never got there)."""
        done = probe_time(self.stderr_lines)
        return None if done is None else done - self.report["end"]

    def foreign_stderr(self, *program_markers: str) -> list[str]:
        """stderr lines that are not the program's own (torch echoing the workload's records to stderr) nor
        the probe's."""
        return [line for line in self.stderr_lines
                if line.strip() and not PROBE_LINE.match(line) and not any(m in line for m in program_markers)]

    def describe(self) -> str:
        state = "KILLED by the test (still running)" if self.killed else f"rc={self.returncode}"
        cost = "never finished" if self.shutdown_cost is None else f"{self.shutdown_cost:.1f}s"
        stderr = "\n".join(self.foreign_stderr("] rec-", "] before-", "] outage-", "] after-restart-", "] flood-"))
        return (f"{state}, shutdown (atexit) {cost}, exit delay {self.exit_delay:.1f}s, report={self.report}\n"
                f"--- stderr ---\n{stderr[-4000:]}")


def assert_bridge_active(done: Finished) -> None:
    assert done.report["bridge"], "torch-otel did not start in the child: " + done.describe()


def assert_clean_exit(done: Finished, shutdown_timeout: float, *markers: str, exit_code: int = 3) -> None:
    """The issue's contract: own exit code, bounded exit delay, bounded stderr, no traceback."""
    assert not done.killed, "still running, killed by the test: " + done.describe()
    cost = done.shutdown_cost
    assert cost is not None, ("the exit probe never reported: torch-otel's bootstrap no longer runs the next "
                              "sitecustomize on PYTHONPATH, or atexit handlers did not run: " + done.describe())
    assert cost <= shutdown_timeout + SLACK, (
        f"shutdown took longer than TORCH_OTEL_SHUTDOWN_TIMEOUT={shutdown_timeout:g}s + {SLACK}s: " + done.describe())
    assert done.exit_delay <= shutdown_timeout + SLACK + TEARDOWN, (
        f"the process lingered after atexit (> {TEARDOWN}s of teardown): " + done.describe())
    assert done.returncode == exit_code, done.describe()
    foreign = done.foreign_stderr(*markers)
    assert not any("Traceback" in line for line in foreign), done.describe()
    assert len(foreign) < MAX_STDERR_LINES, f"{len(foreign)} stderr lines: " + done.describe()


def torch_otel_lines(done: Finished) -> list[str]:
    return [line for line in done.stderr_lines if line.startswith("torch-otel:")]


@pytest.fixture
def blackhole():
    hole = TcpBlackhole()
    yield hole
    hole.close()


MARKERS = ("] rec-",)


# -- 1. no collector at all ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def no_collector() -> Finished:
    """Endpoint = a closed 127.0.0.1 port, default settings (every signal OTLP/gRPC, 5 s shutdown timeout),
    2,000 records, exit code 3."""
    return Child.run(fault_env(f"http://127.0.0.1:{free_port()}"), "--stages", "rec:2000",
                     timeout=DEFAULT_SHUTDOWN_TIMEOUT)


def test_no_collector_program_keeps_its_exit_code_and_exits_within_the_shutdown_timeout(no_collector):
    assert_bridge_active(no_collector)
    assert no_collector.report["dropped"] == 0
    assert_clean_exit(no_collector, DEFAULT_SHUTDOWN_TIMEOUT, *MARKERS)
    reports = torch_otel_lines(no_collector)
    assert len(reports) == 1, f"expected one report line at exit, got {reports}: " + no_collector.describe()


def test_no_collector_exit_report_counts_the_lost_records(no_collector):
    reports = torch_otel_lines(no_collector)
    assert len(reports) == 1 and re.search(r"\b2,?000\b.*\brecords\b", reports[0]), reports


@pytest.mark.slow
def test_a_long_outage_prints_each_sdk_warning_once():
    """Collector down for 21 s while traces, logs and metrics (every 0.3 s) keep trying. The SDK's own filter only
    drops a repeat within one 20 s window of the wall clock, so without torch-otel's limiter a retry warning shows
    up again in every window."""
    env = fault_env(f"http://127.0.0.1:{free_port()}", OTEL_METRIC_EXPORT_INTERVAL="300",
                    TORCH_OTEL_SHUTDOWN_TIMEOUT="2")
    done = Child.run(env, "--stages", "rec:200", "--sleep", "21", timeout=2.0)
    assert_bridge_active(done)
    sdk_lines = [line for line in done.foreign_stderr(*MARKERS, "READY") if not line.startswith("torch-otel")]
    assert any("retrying" in line for line in sdk_lines), "the SDK never warned about the outage: " + done.describe()
    repeated = Counter(re.sub(r"retrying in [\d.]+s", "retrying", line.split(" [torch-otel held back")[0])
                       for line in sdk_lines)
    assert max(repeated.values()) == 1, repeated


# -- 2. collector killed mid-run, restarted on the same ports ----------------------------------------------------
@pytest.mark.collector
def test_collector_killed_and_restarted_mid_run(collector, otlp_sink):
    env = fault_env(collector.grpc_endpoint, OTEL_BLRP_SCHEDULE_DELAY="100", OTEL_BSP_SCHEDULE_DELAY="100")
    child = Child.start(env, "--stages", "before:20,outage:20,after-restart:50", "--pause")
    try:
        child.wait_for_stdout(lambda line: line == "PAUSED 1")
        otlp_sink.wait_for(lambda s: sum(str(r.body).startswith("before-") for r in s.log_records()) == 20)
        collector.kill()  # a crash: rotel loses what it buffered
        child.send("go")
        child.wait_for_stdout(lambda line: line == "PAUSED 2")
        time.sleep(1.0)  # the bridge and the SDK try to export the outage records while nothing listens
        collector.start()  # same ports
        child.send("go")
        done = child.finish(DEFAULT_SHUTDOWN_TIMEOUT)
    finally:
        child.kill()
    assert_clean_exit(done, DEFAULT_SHUTDOWN_TIMEOUT, "] before-", "] outage-", "] after-restart-")
    after = {f"after-restart-{i}" for i in range(50)}
    otlp_sink.wait_for(lambda s: after <= {r.body for r in s.log_records()}, timeout=10)
    counts = Counter(r.body for r in otlp_sink.log_records())
    assert all(counts[body] == 1 for body in after), {b: c for b, c in counts.items() if c > 1}
    duplicated = {body: n for body, n in counts.items() if n > 1}
    assert not duplicated, f"records delivered twice: {duplicated}"


# -- 3. a collector that never answers ---------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_blackholed_collector_exits_within_the_shutdown_timeout(blackhole, protocol):
    """A TCP listener that accepts and never answers: every export waits for its deadline (10 s by default)."""
    timeout = 2.0
    env = fault_env(blackhole.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                    TORCH_OTEL_SHUTDOWN_TIMEOUT=str(timeout))
    done = Child.run(env, "--stages", "rec:2000", timeout=timeout)
    assert_bridge_active(done)
    assert blackhole.accepted, "the exporter never even connected: the test did not test anything"
    assert_clean_exit(done, timeout, *MARKERS)


@pytest.mark.collector
def test_collector_that_discards_everything_exits_promptly(make_collector):
    """rotel with `--exporter blackhole` accepts every request and drops it: the flush is fast."""
    collector = make_collector(options={"--exporter": "blackhole"})
    done = Child.run(fault_env(collector.grpc_endpoint), "--stages", "rec:2000", timeout=DEFAULT_SHUTDOWN_TIMEOUT)
    assert_clean_exit(done, DEFAULT_SHUTDOWN_TIMEOUT, *MARKERS)
    assert done.shutdown_cost < SLACK, "a collector that answers at once must not cost seconds: " + done.describe()
    assert not torch_otel_lines(done), "nothing was lost, so nothing should be reported: " + done.describe()


# -- 4. TLS ------------------------------------------------------------------------------------------------------
def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1 (IP SAN) and its key, via the openssl CLI."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN=torch-otel-test-{name}",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@pytest.fixture
def tls_sink(tmp_path):
    """An in-process OTLP/gRPC sink serving TLS on 127.0.0.1 with a certificate signed by CA 'server'
    (rotel's receiver has no TLS options, so the test's own sink terminates TLS)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    import grpc

    from otlp_sink import OtlpSink

    server_cert, server_key = _self_signed(tmp_path, "server")
    other_ca, _ = _self_signed(tmp_path, "other")
    sink = OtlpSink()
    credentials = grpc.ssl_server_credentials([(server_key.read_bytes(), server_cert.read_bytes())])
    sink.tls_port = sink._server.add_secure_port("127.0.0.1:0", credentials)
    sink.right_ca, sink.wrong_ca = server_cert, other_ca
    with sink:
        yield sink


def test_tls_with_the_wrong_ca_fails_cleanly_within_the_shutdown_timeout(tls_sink):
    timeout = 2.0
    env = fault_env(f"https://127.0.0.1:{tls_sink.tls_port}", OTEL_EXPORTER_OTLP_CERTIFICATE=str(tls_sink.wrong_ca),
                    TORCH_OTEL_SHUTDOWN_TIMEOUT=str(timeout))
    done = Child.run(env, "--stages", "rec:2000", timeout=timeout)
    assert not tls_sink.log_records(), "a certificate from the wrong CA was accepted"
    assert_clean_exit(done, timeout, *MARKERS)


def test_tls_with_the_right_ca_delivers(tls_sink):
    """The control for the test above: same server, the right CA, everything arrives."""
    env = fault_env(f"https://127.0.0.1:{tls_sink.tls_port}", OTEL_EXPORTER_OTLP_CERTIFICATE=str(tls_sink.right_ca))
    done = Child.run(env, "--stages", "rec:2000", timeout=DEFAULT_SHUTDOWN_TIMEOUT)
    assert_clean_exit(done, DEFAULT_SHUTDOWN_TIMEOUT, *MARKERS)
    expected = {f"rec-{i}" for i in range(2000)}
    tls_sink.wait_for(lambda s: expected <= {r.body for r in s.log_records()}, timeout=10)


# -- 5. SIGINT ---------------------------------------------------------------------------------------------------
@pytest.mark.collector
def test_sigint_in_sleep_exits_and_buffered_records_arrive(collector, otlp_sink):
    """A program blocked in time.sleep gets SIGINT: KeyboardInterrupt ends it the way Python always does (exit by
    SIGINT after the traceback), and what the SDK still buffered (30 s batch delay) is flushed on the way out."""
    env = fault_env(collector.grpc_endpoint, OTEL_BLRP_SCHEDULE_DELAY="30000", OTEL_METRICS_EXPORTER="none")
    child = Child.start(env, "--stages", "before-sigint:10", "--sleep", "60")
    try:
        child.wait_for_stdout(lambda line: line == "READY")
        time.sleep(0.5)  # the bridge hands the records to the SDK, which holds them (30 s schedule)
        sent = time.time()
        child.proc.send_signal(signal.SIGINT)
        child.wait_exit(sent, DEFAULT_SHUTDOWN_TIMEOUT + SLACK + TEARDOWN)
    finally:
        child.kill()
    stderr = "\n".join(child.stderr_lines)
    limit = DEFAULT_SHUTDOWN_TIMEOUT + SLACK + TEARDOWN
    assert not child.killed, f"did not exit within {limit}s of SIGINT:\n{stderr[-3000:]}"
    assert child.proc.returncode == -signal.SIGINT, stderr[-3000:]
    assert "KeyboardInterrupt" in stderr
    done = child.atexit_done()
    assert done is not None and done - sent <= DEFAULT_SHUTDOWN_TIMEOUT + SLACK, stderr[-3000:]
    expected = {f"before-sigint-{i}" for i in range(10)}
    otlp_sink.wait_for(lambda s: expected <= {r.body for r in s.log_records()}, timeout=10)


# -- 6. bounded memory and counted drops -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flooded() -> Finished:
    """TORCH_OTEL_QUEUE_SIZE=100, collector down, 50,000 records as fast as logging allows. Metrics go to the
    console exporter (stdout), so the final value of the bridge's health counters can be read."""
    timeout = 2.0
    env = fault_env(f"http://127.0.0.1:{free_port()}", TORCH_OTEL_QUEUE_SIZE="100", TORCH_OTEL_TORCH_STDERR="off",
                    OTEL_METRICS_EXPORTER="console", TORCH_OTEL_SHUTDOWN_TIMEOUT=str(timeout))
    done = Child.run(env, "--stages", "flood:50000", "--settle", "1.0", timeout=timeout)
    done.shutdown_timeout = timeout  # type: ignore[attr-defined]
    return done


def test_full_queue_never_blocks_and_memory_stays_bounded(flooded):
    assert_bridge_active(flooded)
    report = flooded.report
    assert report["emit_seconds"] < 10, f"50,000 records took {report['emit_seconds']:.1f}s: the queue blocked"
    growth_mib = (report["rss_kb_after"] - report["rss_kb_before"]) / 1024
    assert growth_mib < 25, f"RSS grew {growth_mib:.1f} MiB for 50,000 records with a 100-record queue"
    assert report["dropped"] >= 40_000, report  # at most 100 queued per 0.2 s export tick survive


def test_full_queue_exits_cleanly_within_the_shutdown_timeout(flooded):
    assert_bridge_active(flooded)
    assert_clean_exit(flooded, flooded.shutdown_timeout, "] flood-")


def test_dropped_records_are_counted_in_the_health_metric(flooded):
    assert_bridge_active(flooded)
    stdout = "\n".join(flooded.stdout_lines)
    match = re.search(r'"name": "torch_otel\.records\.dropped".*?"value": (\d+)', stdout, re.DOTALL)
    assert match, "no torch_otel.records.dropped metric in the console metric export:\n" + stdout[-2000:]
    assert int(match.group(1)) == flooded.report["dropped"]


def test_dropped_records_are_reported_once_at_exit(flooded):
    assert_bridge_active(flooded)
    dropped = flooded.report["dropped"]
    reports = torch_otel_lines(flooded)
    assert len(reports) == 1, f"expected one report line at exit, got {reports}"
    assert "dropped" in reports[0] and (str(dropped) in reports[0] or f"{dropped:,}" in reports[0]), reports[0]


# -- 7. OTEL_SDK_DISABLED -----------------------------------------------------------------------------------------
def test_sdk_disabled_opens_no_connection_and_runs_normally(blackhole):
    env = fault_env(blackhole.endpoint, OTEL_SDK_DISABLED="true", TORCH_LOGS="+dynamo")
    done = Child.run(env, "--stages", "rec:200", timeout=DEFAULT_SHUTDOWN_TIMEOUT)
    time.sleep(0.2)
    assert done.returncode == 3 and not done.killed, done.describe()
    assert done.report["bridge"] is False, "torch-otel started although OTEL_SDK_DISABLED=true"
    assert not blackhole.accepted, f"{len(blackhole.accepted)} connection(s) to the configured endpoint"
    assert not torch_otel_lines(done) and not any("Traceback" in line for line in done.stderr_lines), done.describe()
    assert done.shutdown_cost is not None and done.shutdown_cost < SLACK, done.describe()


def test_a_setting_the_sdk_rejects_is_reported_by_torch_otel_not_by_sitecustomize():
    """OTEL_BLRP_MAX_EXPORT_BATCH_SIZE larger than the log queue torch-otel builds (max(TORCH_OTEL_QUEUE_SIZE,
    2048) today). Acceptable outcomes: torch-otel adapts and starts, or it stops with its usual one-paragraph
    error naming the variable (exit 2). Not acceptable: Python's 'Error in sitecustomize' and no telemetry."""
    env = fault_env("http://127.0.0.1:1", OTEL_BLRP_MAX_EXPORT_BATCH_SIZE="4096", TORCH_OTEL_QUEUE_SIZE="100",
                    OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", TORCH_OTEL_SHUTDOWN_TIMEOUT="1")
    done = subprocess.run([str(BIN / "torch-otel"), "run", "--", sys.executable, str(FAULT_APP), "--stages", "rec:10"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=STARTUP_TIMEOUT)
    assert "Error in sitecustomize" not in done.stderr, done.stderr[-2000:]
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 2:
        assert "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE" in done.stderr, done.stderr[-2000:]
    else:
        assert done.returncode == 3 and reports and reports[-1]["bridge"], (done.returncode, done.stderr[-2000:])
