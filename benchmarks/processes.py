"""What `torch-otel run` costs a program as users start it, against the same program without it, in one run:

1. a bare child (`python -c pass`) started with the environment `torch-otel run` gives its children, against plain
   `python -c pass`: the per-child cost that every helper process pays (goal: at most 20 ms);
2. the wall time of a first inductor compile of a small model, caches disabled, as a whole program: `torch-otel run
   -- python` against `python`, in alternating pairs, with a collector up (rotel-agent, blackhole exporter) and with
   the endpoint unreachable (goals: ratio at most 1.03 up; at most TORCH_OTEL_SHUTDOWN_TIMEOUT more when down);
3. the exit delay of an idle process (imports torch, does nothing): from its last statement to the end of the
   process, with the collector up and down (goal: at most 50 ms more than plain);
4. memory for large records with the collector down: 1,000 records of 1 MB logged through torch's dynamo logger,
   peak RSS growth under `torch-otel run` over the same program's without it, collector blackholed (accepts, never
   answers) and refusing (goal: at most 64 MiB over plain).

    python benchmarks/processes.py [--children 40] [--pairs 5] [--exits 7] [--json out.json]

Medians throughout; the machine is shared and noisy, so every comparison is paired and alternated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _collector import BlackholeCollector, TcpBlackhole, free_port  # noqa: E402

from torch_otel.tools.cli import child_environment  # noqa: E402

PYTHON = sys.executable
TORCH_OTEL = str(Path(sys.executable).parent / "torch-otel")
SMALL_MODEL = """
import torch
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.LayerNorm(128),
                            torch.nn.Linear(128, 10))
compiled = torch.compile(model)
with torch.no_grad():
    compiled(torch.randn(8, 64))
"""
IDLE = "import time, torch; print(time.time(), flush=True)"
LARGE_RECORDS = """
import json, logging, time, torch
def status(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))
log = logging.getLogger("torch._dynamo")
for handler in [h for h in log.handlers if type(h) is logging.StreamHandler]:
    log.removeHandler(handler)  # torch's own stderr printing is not what is measured
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from now
for i in range(1000):
    log.warning("%d %s", i, "m" * 1_000_000)
time.sleep(2)  # the export thread at work on what was queued
print(json.dumps({"grew_kib": status("VmHWM:") - before}), flush=True)
"""


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_", "PYTHONPATH"))}
    env["OTEL_SERVICE_NAME"] = "torch-otel-bench"
    return env


def timed(command: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}... failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def alternate(count: int, first: Callable[[], float], second: Callable[[], float]) -> tuple[list[float], list[float]]:
    """``count`` pairs, the order swapped every pair so drift hits both sides alike."""
    a, b = [], []
    for index in range(count):
        if index % 2:
            b.append(second())
            a.append(first())
        else:
            a.append(first())
            b.append(second())
    return a, b


def summary(plain: list[float], instrumented: list[float]) -> dict[str, Any]:
    ratios = [i / p for p, i in zip(plain, instrumented)]
    return {
        "plain_median_s": statistics.median(plain),
        "torch_otel_median_s": statistics.median(instrumented),
        "added_median_ms": statistics.median(i - p for p, i in zip(plain, instrumented)) * 1000,
        "ratio_median": statistics.median(ratios),
        "runs": len(plain),
    }


def bare_children(count: int, workdir: str) -> dict[str, Any]:
    env = base_env()
    bootstrapped = child_environment(env)
    command = [PYTHON, "-c", "pass"]
    plain, instrumented = alternate(count, lambda: timed(command, env, workdir),
                                    lambda: timed(command, bootstrapped, workdir))
    return summary(plain, instrumented) | {"files_left": sorted(os.listdir(workdir))}


def first_compile(pairs: int, endpoint: str, workdir: str) -> dict[str, Any]:
    env = base_env() | {"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
    otel = env | {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    plain, instrumented = alternate(pairs, lambda: timed([PYTHON, "-c", SMALL_MODEL], env, workdir),
                                    lambda: timed([TORCH_OTEL, "run", "--", PYTHON, "-c", SMALL_MODEL], otel,
                                                  workdir))
    return summary(plain, instrumented)


def exit_delay(command: list[str], env: dict[str, str], workdir: str) -> float:
    done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True)
    ended = time.time()
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return ended - float(done.stdout.split()[0])


def idle_exit(count: int, endpoint: str, workdir: str) -> dict[str, Any]:
    env = base_env()
    otel = env | {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    plain, instrumented = alternate(count, lambda: exit_delay([PYTHON, "-c", IDLE], env, workdir),
                                    lambda: exit_delay([TORCH_OTEL, "run", "--", PYTHON, "-c", IDLE], otel, workdir))
    return summary(plain, instrumented)


def rss_growth_mib(command: list[str], env: dict[str, str], workdir: str) -> float:
    done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.splitlines()[-1])["grew_kib"] / 1024


def large_records(endpoint: str, workdir: str, count: int = 3) -> dict[str, Any]:
    env = base_env()
    otel = env | {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "TORCH_OTEL_SHUTDOWN_TIMEOUT": "1"}
    plain, instrumented = alternate(count, lambda: rss_growth_mib([PYTHON, "-c", LARGE_RECORDS], env, workdir),
                                    lambda: rss_growth_mib([TORCH_OTEL, "run", "--", PYTHON, "-c", LARGE_RECORDS],
                                                           otel, workdir))
    return {"plain_mib": statistics.median(plain), "torch_otel_mib": statistics.median(instrumented),
            "added_mib": statistics.median(i - p for p, i in zip(plain, instrumented)), "runs": count}


def report(results: dict[str, Any]) -> str:
    rows = [("measure", "plain (median)", "torch-otel run (median)", "added (median of pairs)", "ratio", "goal")]
    children = results["bare_child"]
    rows.append(("bare child `python -c pass`", f"{children['plain_median_s'] * 1000:.1f} ms",
                 f"{children['torch_otel_median_s'] * 1000:.1f} ms", f"{children['added_median_ms']:+.1f} ms",
                 f"{children['ratio_median']:.2f}", "≤ +20 ms"))
    for state in ("up", "down"):
        compile_ = results[f"first_compile_collector_{state}"]
        rows.append((f"first inductor compile, collector {state}", f"{compile_['plain_median_s']:.2f} s",
                     f"{compile_['torch_otel_median_s']:.2f} s", f"{compile_['added_median_ms']:+.0f} ms",
                     f"{compile_['ratio_median']:.3f}", "≤ 1.03" if state == "up" else "≤ +5 s (shutdown timeout)"))
    for state in ("up", "down"):
        idle = results[f"idle_exit_collector_{state}"]
        rows.append((f"idle exit delay, collector {state}", f"{idle['plain_median_s'] * 1000:.0f} ms",
                     f"{idle['torch_otel_median_s'] * 1000:.0f} ms", f"{idle['added_median_ms']:+.0f} ms",
                     f"{idle['ratio_median']:.2f}", "≤ +50 ms"))
    for state in ("blackholed", "refusing"):
        memory = results[f"large_records_collector_{state}"]
        rows.append((f"1,000 records of 1 MB, peak RSS growth, collector {state}", f"{memory['plain_mib']:.1f} MiB",
                     f"{memory['torch_otel_mib']:.1f} MiB", f"{memory['added_mib']:+.1f} MiB", "", "≤ +64 MiB"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=40, help="bare children per side")
    parser.add_argument("--pairs", type=int, default=5, help="first-compile pairs per collector state")
    parser.add_argument("--exits", type=int, default=7, help="idle-exit pairs per collector state")
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    unreachable = f"http://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="torch-otel-bench-") as workdir, BlackholeCollector() as collector:
        hole = TcpBlackhole()
        for state, endpoint in (("blackholed", hole.endpoint), ("refusing", unreachable)):
            print(f"large records, collector {state} ...", file=sys.stderr, flush=True)
            results[f"large_records_collector_{state}"] = large_records(endpoint, workdir)
        hole.close()
        print("bare children ...", file=sys.stderr, flush=True)
        results["bare_child"] = bare_children(args.children, workdir)
        for state, endpoint in (("up", collector.grpc_endpoint), ("down", unreachable)):
            print(f"idle exits, collector {state} ...", file=sys.stderr, flush=True)
            results[f"idle_exit_collector_{state}"] = idle_exit(args.exits, endpoint, workdir)
            print(f"first compiles, collector {state} ...", file=sys.stderr, flush=True)
            results[f"first_compile_collector_{state}"] = first_compile(args.pairs, endpoint, workdir)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
