"""Runs a workload in a child process under one of the three entry points and reads what reached the collector."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKLOAD = ROOT / "tests" / "workloads" / "serving_app.py"
TORCH_LOGS = "+dynamo,recompiles,graph_breaks,guards"
# torch's stderr prefix: "... file.py:123] [0/1] [__recompiles] message"
STDERR_ARTIFACT_LINE = re.compile(r"\] \[(?P<compile_id>[^\]]+)\] \[__(?P<artifact>\w+)\] ")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def stderr_artifacts(self) -> set[tuple[str, str]]:
        return {(m["compile_id"], m["artifact"]) for m in STDERR_ARTIFACT_LINE.finditer(self.stderr)}


def launcher_command(launcher: str, script: Path, *args: str) -> list[str]:
    python = [sys.executable, str(script), *args]
    if launcher == "torch-otel run":
        return [str(BIN / "torch-otel"), "run", "--", *python]
    if launcher == "opentelemetry-instrument":
        return [str(BIN / "opentelemetry-instrument"), *python]
    if launcher == "instrument()":
        return [*python, "--in-code"]
    raise ValueError(launcher)


def run_child(command: list[str], env: dict[str, str], timeout: float = 180, cwd: Path = ROOT) -> Run:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


def child_env(collector, protocol: str = "grpc", **extra: str) -> dict[str, str]:
    env = collector.child_env(protocol)
    env.update(
        TORCH_LOGS=TORCH_LOGS,
        OTEL_SERVICE_NAME="torch-otel-e2e",
        OTEL_METRICS_EXPORTER="none",
        OTEL_BLRP_SCHEDULE_DELAY="100",
        OTEL_BSP_SCHEDULE_DELAY="100",
        PYTHONUNBUFFERED="1",
    )
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def fingerprint(records) -> list[tuple]:
    """What must be identical whichever entry point produced the records."""
    return sorted(
        (r.scope_name, r.event_name, r.severity_number, r.attributes.get("pytorch.compile.id", ""),
         r.attributes.get("code.function.name", ""))
        for r in records
    )


__all__ = ["Run", "child_env", "fingerprint", "launcher_command", "run_child", "WORKLOAD", "ROOT"]
