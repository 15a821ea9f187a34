"""Metrics leave the process for real: scraped by a real Prometheus, and pushed over OTLP through rotel-agent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from collector import free_port
from e2e import BIN, ROOT, child_env
from torch_otel import catalog

pytestmark = pytest.mark.slow
WORKLOAD = ROOT / "tests" / "workloads" / "metrics_app.py"
PROMETHEUS = shutil.which("prometheus")


def prometheus_query(port: int, query: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def wait_for_query(port: int, query: str, predicate, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    result: list[dict] = []
    while time.monotonic() < deadline:
        try:
            result = prometheus_query(port, query)
        except OSError:
            result = []
        if predicate(result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{query} never satisfied the check; last result {result}")


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus is not installed (.ci/run installs it)")
def test_real_prometheus_scrapes_recompiles_and_compile_duration(tmp_path):
    metrics_port, prometheus_port = free_port(), free_port()
    env = child_env_without_collector(OTEL_METRICS_EXPORTER="prometheus", OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
                                      OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port))
    app = subprocess.Popen([str(BIN / "torch-otel"), "run", "--", sys.executable, str(WORKLOAD)], env=env, cwd=ROOT,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: torch-otel\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert app.stdout.readline().strip() == "ready", app.stderr.read()
        recompiles = catalog.PROMETHEUS_NAMES[catalog.METRIC_RECOMPILES]
        cause, function = catalog.prometheus_label(catalog.LABEL_CAUSE), catalog.prometheus_label(catalog.LABEL_FUNCTION)
        result = wait_for_query(prometheus_port, f"sum by ({cause}, {function}) ({recompiles})",
                                lambda r: sum(float(s["value"][1]) for s in r) >= 2)
        by_function = {s["metric"][function]: float(s["value"][1]) for s in result}
        assert by_function["step"] == 1 and {s["metric"][cause] for s in result} == {"shape"}
        assert sum(by_function.values()) == 2

        duration = catalog.PROMETHEUS_NAMES[catalog.METRIC_COMPILE_DURATION]
        phase = catalog.prometheus_label(catalog.LABEL_PHASE)
        # Scrapes can land mid-compile, so wait for the fourth compile rather than take the first answer.
        wait_for_query(prometheus_port, f'{duration}_count{{{phase}="torch.compile"}}',
                       lambda r: sum(float(s["value"][1]) for s in r) == 4)
        buckets = prometheus_query(prometheus_port, f'{duration}_bucket{{{phase}="torch.compile"}}')
        assert {s["metric"]["le"] for s in buckets} >= {"0.01", "600.0", "+Inf"}
    finally:
        app.stdin.close()
        app.wait(timeout=30)
        prometheus.terminate()
        prometheus.wait(timeout=10)
    assert app.returncode == 0


def child_env_without_collector(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none", PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.mark.collector
def test_metrics_cross_the_otlp_wire_through_rotel(collector, otlp_sink):
    process = subprocess.run([str(BIN / "torch-otel"), "run", "--", sys.executable, str(WORKLOAD)],
                             env=child_env(collector, OTEL_METRICS_EXPORTER="otlp", OTEL_METRIC_EXPORT_INTERVAL="500"),
                             cwd=ROOT, input="", capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stderr[-2000:]

    def recompile_points(sink):
        return [p for p in sink.metrics() if p.name == catalog.METRIC_RECOMPILES]

    points = otlp_sink.wait_for(recompile_points)
    latest = {p.attributes[catalog.LABEL_FUNCTION]: p.value for p in points}
    assert latest["step"] == 1 and all(p.attributes[catalog.LABEL_CAUSE] == "shape" for p in points)
    assert all(p.resource["service.name"] == "torch-otel-e2e" for p in points)
    step_points = [p for p in points if p.attributes[catalog.LABEL_FUNCTION] == "step"]
    assert any(e.trace_id for p in step_points for e in p.exemplars)  # links to the compile's trace
    durations = [p for p in otlp_sink.metrics() if p.name == catalog.METRIC_COMPILE_DURATION
                 and p.attributes[catalog.LABEL_PHASE] == "torch.compile"]
    assert durations and max(p.count for p in durations) == 4
    assert list(durations[0].explicit_bounds) == list(catalog.COMPILE_DURATION_BUCKETS)
