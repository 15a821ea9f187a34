"""torch-otel benchmarks: what bridging torch's logs to OpenTelemetry costs, against baselines from the same run.

    python benchmarks/run.py [--quick] [--json OUT] [--repetitions N] [--profile {a,b,c,d,e}] [--parts P,...]

1. Per-record cost of torch's artifact logger (``torch._dynamo.guards.__recompiles``, enabled with
   ``set_logs(recompiles=True)``) for a 200 B and a 100 KiB message, under five setups, each
   run in a fresh child process (rotated order, so drift hits every setup alike):
     a  no handler at all (torch's stderr handler removed too) - the floor;
     b  torch's stderr handler only (fd 2 -> /dev/null, so the terminal's speed does not matter);
     c  b + the naive route: the OTel SDK ``LoggingHandler`` on the same torch loggers -> BatchLogRecordProcessor ->
        OTLP/gRPC exporter;
     d  b + torch-otel (``torch_otel.instrument``) -> BatchLogRecordProcessor -> ByteBudgetLogExporter (what
        torch-otel's own SDK setup builds) -> OTLP/gRPC exporter;
     e  torch-otel through the SDK's LoggerProvider and BatchLogRecordProcessor (TORCH_OTEL_FAST_PATH=off).
   Both OTLP routes export to a real rotel-agent on loopback (blackhole exporter) that runs for the whole benchmark.
   Measured per record: wall time of the emitting loop, CPU time of the emitting thread during the loop, and CPU time
   of the whole process (every thread) from the start of the loop until the flush returned, also split by thread.
   The batch processor's queue (and torch-otel's) is sized so nothing is dropped; the ``lost`` column proves it.
2. Steady state: ns per call of a warm ``torch.compile(fn, backend="eager")``, torch-otel on vs off, interleaved.
3. Spans only (TORCH_LOGS unset): three transformer blocks compiled by inductor on CPU from scratch (caches off),
   torch-otel on vs off, interleaved, plus torch-otel's self-time measured directly: its compile hooks, its export
   thread, the SDK's batch threads and the final flush. The goal (< 1 % of compile time) is judged on that
   self-time. 3b repeats it for a tiny ``aot_eager`` compile (4×Linear+GELU), the worst case for the share. 3c
   isolates the live compile events (the ``pytorch.compile.start`` record and the slow-compile watchdog) on that
   tiny compile: torch-otel on in every state, without them, with them as by default (60 s threshold: the
   watchdog thread wakes once per compile and never fires) and with a watchdog that fires during every compile
   (0.02 s: a record with the compiling thread's stack at 0.02, 0.04, 0.08 ... s), states rotated; plus the CPU
   measured directly inside their code and in the watchdog thread.
4. The same inductor workload with TORCH_LOGS="+dynamo,+inductor,recompiles,graph_breaks,guards,output_code" (torch's
   stderr handler on in both states, writing to /dev/null): the bridge's self-time per compile, log handler
   included, as a share of compile time.
5. Under load, torch-otel's default settings: peak RSS growth while 200,000 records are emitted with the collector
   down (against stderr only), and records per second sustained with the collector up before anything is dropped.

Wall times suffer when the machine is busy; the CPU-time columns (this thread / whole process) do much less, so
every part reports both.

``--parts`` runs only some parts (records, steady, spans, live, workload, load; default all), e.g.
``--parts steady,spans,live`` for what the compile hooks cost.

Every figure is a median over repetitions; ratios are ratios of medians. ``--profile SETUP`` instead samples one
records child with py-spy (``pip install py-spy``) and prints where each thread spends its time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# _child is stdlib-only at import time: children import torch, the parent never does
from _child import SETUPS, WORKLOAD_TORCH_LOGS  # noqa: E402
from _collector import BlackholeCollector, die_with_parent, free_port  # noqa: E402

SMALL_BYTES, LARGE_BYTES = 200, 100 * 1024
CHILD_TIMEOUT_S = 900
EMIT_RATIO_LIMIT, CPU_RATIO_LIMIT = 1.5, 2.0
MEMORY_GOAL_MIB = 64
STEADY_GOAL, COMPILE_SHARE_GOAL = 0.02, 0.01
_SCRUBBED_ENV_PREFIXES = ("OTEL_", "TORCH_LOGS", "TORCH_TRACE", "TORCH_COMPILE_DEBUG", "TORCH_OTEL_")


@dataclass(frozen=True)
class Config:
    repetitions: int
    small_records: int
    large_records: int
    steady_calls: int
    steady_repetitions: int
    compile_repetitions: int
    workload_repetitions: int
    load_records: int
    load_seconds: float
    paired_rounds: int

    def sizes(self) -> list[tuple[int, int]]:
        return [(SMALL_BYTES, self.small_records), (LARGE_BYTES, self.large_records)]


# Steady state: many short on/off segments pair up better than a few long ones when the machine's speed wanders.
FULL = Config(repetitions=7, small_records=20_000, large_records=2_000,
              steady_calls=5_000, steady_repetitions=100, compile_repetitions=15,
              workload_repetitions=3, load_records=200_000, load_seconds=4.0, paired_rounds=12)
# 30 large records fit one 4 MiB gRPC request, so the naive route does not sit in export retries (a smoke run).
QUICK = Config(repetitions=1, small_records=2_000, large_records=30,
               steady_calls=2_000, steady_repetitions=4, compile_repetitions=2,
               workload_repetitions=1, load_records=20_000, load_seconds=1.0, paired_rounds=2)


# -- children ---------------------------------------------------------------------------------------------
class ChildFailed(RuntimeError):
    pass


def child_env() -> dict[str, str]:
    """This environment without anything that would change torch's or OpenTelemetry's behaviour in a child."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_SCRUBBED_ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def child_command(mode: str, params: dict[str, Any]) -> list[str]:
    return [sys.executable, str(HERE / "_child.py"), mode, json.dumps(params)]


def run_child(command: list[str], what: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child to completion and return the JSON result it printed (the last stdout line that is one)."""
    done = subprocess.run(command, capture_output=True, text=True, env={**child_env(), **(env or {})},
                          cwd=HERE.parent, timeout=CHILD_TIMEOUT_S, preexec_fn=die_with_parent)
    results = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not results:
        raise ChildFailed(f"{what} failed (rc={done.returncode})\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(results[-1])


def run_mode(mode: str, params: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    return run_child(child_command(mode, params), f"{mode} child with {params}", env)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- 1. per-record cost -----------------------------------------------------------------------------------
def rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= len(items)
    return list(items[shift:]) + list(items[:shift])


def measure_records(config: Config, endpoint: str) -> dict[str, list[dict[str, Any]]]:
    """setup -> one result per repetition (each from a fresh process); setups rotate within each repetition."""
    runs: dict[str, list[dict[str, Any]]] = {setup: [] for setup in SETUPS}
    for rep in range(config.repetitions):
        for setup in rotated(list(SETUPS), rep):
            started = time.monotonic()
            result = run_mode("records", {"setup": setup, "endpoint": endpoint, "sizes": config.sizes()})
            runs[setup].append(result["results"])
            small = result["results"][str(SMALL_BYTES)]
            progress(f"records {rep + 1}/{config.repetitions} {setup}: {small['cpu_us']:.1f} µs CPU/record (200 B), "
                     f"{time.monotonic() - started:.0f} s")
    return runs


def median_of(runs: Iterable[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how much the repetitions disagree."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else float("nan")


def summarize_records(runs: dict[str, list[dict[str, Any]]], config: Config) -> list[dict[str, Any]]:
    rows = []
    for size, count in config.sizes():
        per_setup = {setup: [rep[str(size)] for rep in reps] for setup, reps in runs.items()}
        base = per_setup["b"]
        for setup, reps in per_setup.items():
            row: dict[str, Any] = {"size": size, "setup": setup, "records": count}
            for key in ("emit_us", "emit_cpu_us", "cpu_us"):
                row[key] = median_of(reps, key)
                row[key + "_vs_b"] = row[key] / median_of(base, key)
            row["cpu_spread"] = spread([rep["cpu_us"] for rep in reps])
            row["flush_ms"] = median_of(reps, "flush_ms")
            if "exported" in reps[0]:
                row["lost"] = max(count - rep["exported"] for rep in reps)
                row["truncated"] = max(rep.get("truncated", 0) for rep in reps)
            rows.append(row)
    return rows


# -- 2. steady state, 3. compile overhead -----------------------------------------------------------------
def paired_ratios(on: Sequence[float], off: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(on, off)]


def compare_on_off(on: Sequence[dict[str, Any]], off: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """Medians, ranges and the on/off ratio of one measure; paired ratios use the adjacent on/off runs."""
    on_values, off_values = [run[key] for run in on], [run[key] for run in off]
    pairs = paired_ratios(on_values, off_values)
    return {
        "off": statistics.median(off_values), "on": statistics.median(on_values),
        "off_range": [min(off_values), max(off_values)], "on_range": [min(on_values), max(on_values)],
        "ratio": statistics.median(on_values) / statistics.median(off_values),
        "best_ratio": min(on_values) / min(off_values),
        "paired_ratios": pairs, "paired_ratio_median": statistics.median(pairs),
        "paired_ratio_range": [min(pairs), max(pairs)],
    }


PAIRED_MEASURES = {"emit_us": "emitting thread, wall", "emit_cpu_us": "emitting thread, CPU",
                   "cpu_us": "total CPU, every thread until flushed"}
PAIRED_LIMITS = {"emit_us": EMIT_RATIO_LIMIT, "emit_cpu_us": None, "cpu_us": CPU_RATIO_LIMIT}


def summarize_paired(result: dict[str, Any]) -> dict[str, Any]:
    on, off = result["runs"]["on"], result["runs"]["off"]
    measures = {key: compare_on_off(on, off, key) for key in PAIRED_MEASURES}
    for key, measure in measures.items():
        limit = PAIRED_LIMITS[key]
        measure["verdict"] = "" if limit is None else (
            f"≤{limit}×: " + ("met" if measure["paired_ratio_median"] <= limit else "MISSED"))
    return {"measures": measures, "rounds": len(on), "records": on[0]["count"],
            "lost": sum(run["count"] - run["exported"] for run in on)}


STEADY_MEASURES = {"wall_ns": "wall", "thread_cpu_ns": "thread CPU", "process_cpu_ns": "process CPU"}
COMPILE_MEASURES = {"wall_ms": "wall", "thread_cpu_ms": "thread CPU", "cpu_ms": "process CPU incl. span flush"}


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def verdict(measure: dict[str, Any], low: float, high: float) -> str:
    """'met' if the on/off ratio of medians is within [low, high]; 'MISSED' if even the middle half of the paired
    ratios lies outside; otherwise 'noise' (this machine cannot tell the difference from run-to-run variation)."""
    if low <= measure["ratio"] <= high:
        return "met"
    q1, q3 = quartiles(measure["paired_ratios"])
    return "MISSED" if q1 > high or q3 < low else "noise"


def summarize_steady(result: dict[str, Any]) -> dict[str, Any]:
    on, off = result["runs"]["on"], result["runs"]["off"]
    measures = {key: compare_on_off(on, off, key) for key in STEADY_MEASURES}
    for measure in measures.values():
        measure["verdict"] = verdict(measure, 1 - STEADY_GOAL, 1 + STEADY_GOAL)
    return {"calls": result["calls"], "measures": measures}


def summarize_compile(result: dict[str, Any]) -> dict[str, Any]:
    on, off = result["runs"]["on"], result["runs"]["off"]
    measures = {key: compare_on_off(on, off, key) for key in COMPILE_MEASURES}
    for measure in measures.values():
        measure["share"] = measure["ratio"] - 1
        measure["verdict"] = verdict(measure, 0.0, 1 + COMPILE_SHARE_GOAL)
    hook_ms, hook_cpu_ms = median_of(on, "hook_ms"), median_of(on, "hook_cpu_ms")
    return {"measures": measures, "spans_per_compile": median_of(on, "spans"),
            "hook_ms": hook_ms, "hook_share": hook_ms / measures["wall_ms"]["off"],
            "hook_cpu_ms": hook_cpu_ms, "hook_cpu_share": hook_cpu_ms / measures["thread_cpu_ms"]["off"]}


LIVE_MEASURES = {"wall_ms": "wall", "thread_cpu_ms": "thread CPU", "cpu_ms": "process CPU incl. span flush"}


def summarize_live(result: dict[str, Any]) -> dict[str, Any]:
    runs = result["runs"]
    base = runs["without"]
    states = {}
    for state in ("default", "firing"):
        measures = {key: compare_on_off(runs[state], base, key) for key in LIVE_MEASURES}
        for measure in measures.values():
            measure["verdict"] = verdict(measure, 0.0, 1 + COMPILE_SHARE_GOAL)
        live_ms = median_of(runs[state], "live_ms")
        watchdog_ms = median_of(runs[state], "watchdog_thread_ms")
        states[state] = {"measures": measures, "live_ms": live_ms, "watchdog_thread_ms": watchdog_ms,
                         "start_records": median_of(runs[state], "start_records"),
                         "slow_records": median_of(runs[state], "slow_records"),
                         "self_cpu_share": (live_ms + watchdog_ms) / median_of(base, "thread_cpu_ms")}
    return {"states": states, "firing_threshold": result["firing_threshold"], "compiles": len(base)}


def live_report(summary: dict[str, Any]) -> str:
    headers = ["compile ms", "without", "without range", "with", "with range", "with/without",
               "paired (range)", "best", f"goal <{COMPILE_SHARE_GOAL:.0%}"]
    parts = []
    for state, title in (("default", "default settings (TORCH_OTEL_SLOW_COMPILE=60: never fires)"),
                         ("firing", f"a watchdog firing during every compile "
                                    f"(TORCH_OTEL_SLOW_COMPILE={summary['firing_threshold']:g})")):
        data = summary["states"][state]
        share = data["self_cpu_share"]
        # Judged with the default threshold only: the firing state is a deliberate worst case (a slow record with
        # the compiling thread's stack every time a 0.2 s compile doubles its run time), reported per record.
        judged = (f" - goal <{COMPILE_SHARE_GOAL:.0%}: {'met' if share < COMPILE_SHARE_GOAL else 'MISSED'}"
                  if state == "default" else
                  f"; {data['slow_records']:.0f} slow records per compile, "
                  f"{data['watchdog_thread_ms'] / max(data['slow_records'], 1):.2f} ms CPU each")
        parts += [
            f"{title}:",
            table(headers, on_off_rows(data["measures"], LIVE_MEASURES, 1)),
            f"measured directly, per compile: {data['live_ms']:.3f} ms CPU in the start record and the watchdog's "
            f"phase tracking on the compiling thread ({data['start_records']:.0f} start records), "
            f"{data['watchdog_thread_ms']:.3f} ms CPU in the watchdog thread (started afresh by each compile here, "
            f"as each re-instruments) = {share:.3%} of the compile's thread CPU (without){judged}",
        ]
    return "\n".join([*parts, VERDICT_LEGEND])


# -- 4. compile workload, 5. load ------------------------------------------------------------------------------
WORKLOAD = "3 transformer blocks (LayerNorm, causal SDPA attention, GELU MLP; dim 64) by inductor on CPU, caches off"
SELF_PARTS = {"handler_ms": "log handler (CPU)", "hook_ms": "compile hooks: spans, events, metrics (CPU)",
              "export_ms": "export and SDK batch threads + final flush (CPU)", "self_ms": "total self-time"}


def summarize_workload(result: dict[str, Any]) -> dict[str, Any]:
    on, off = result["runs"]["on"], result["runs"]["off"]
    measures = {key: compare_on_off(on, off, key) for key in COMPILE_MEASURES}
    for measure in measures.values():
        measure["verdict"] = ""
    parts = {key: median_of(on, key) for key in SELF_PARTS}
    return {"torch_logs": result["torch_logs"], "measures": measures, "records": median_of(on, "records"),
            "spans": median_of(on, "spans"),
            "parts": parts, "self_share": parts["self_ms"] / measures["wall_ms"]["off"],
            "self_cpu_share": parts["self_ms"] / measures["thread_cpu_ms"]["off"]}


def find_sustained_rate(endpoint: str, seconds: float, flat_out: dict[str, Any]) -> dict[str, Any]:
    """The highest rate (flat out, then 3/4, 1/2, 1/4 of it) at which torch-otel dropped nothing."""
    attempt = flat_out
    for fraction in (0.75, 0.5, 0.25):
        if not attempt["dropped"]:
            break
        rate = flat_out["emitted"] / flat_out["seconds"] * fraction
        attempt = {**run_mode("load", {"setup": "d", "endpoint": endpoint, "seconds": seconds, "rate": rate}),
                   "rate": rate}
    return attempt


def measure_load(config: Config, endpoint: str) -> dict[str, Any]:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the collector is down
    memory = {setup: run_mode("load", {"setup": setup, "endpoint": down, "records": config.load_records,
                                       "flush": False}) for setup in ("b", "d")}
    flat_out = {setup: run_mode("load", {"setup": setup, "endpoint": endpoint, "seconds": config.load_seconds})
                for setup in ("b", "d")}
    return {"memory": memory, "throughput": flat_out,
            "sustained": find_sustained_rate(endpoint, config.load_seconds, flat_out["d"])}


def load_report(load: dict[str, Any], config: Config) -> str:
    base, ours = load["memory"]["b"], load["memory"]["d"]
    extra = ours["rss_growth_mib"] - base["rss_growth_mib"]
    lost = ours.get("dropped", 0) + ours.get("failed", 0)
    rate = {setup: run["emitted"] / run["seconds"] for setup, run in load["throughput"].items()}
    sustained = load["sustained"]
    sustained_rate = sustained["emitted"] / sustained["seconds"]
    bound = " (as fast as one thread can log: the emitter, not the bridge, is the limit)" \
        if sustained is load["throughput"]["d"] else ""
    return "\n".join([
        f"memory, collector down, {config.load_records:,} × 200 B records flat out: peak RSS growth stderr-only "
        f"{base['rss_growth_mib']:.1f} MiB, torch-otel {ours['rss_growth_mib']:.1f} MiB (+{extra:.1f} MiB; goal "
        f"≤ {MEMORY_GOAL_MIB} MiB: {'met' if extra <= MEMORY_GOAL_MIB else 'MISSED'}); "
        f"dropped {ours.get('dropped', 0):,} "
        f"and failed {ours.get('failed', 0):,} by the end of the loop (counted, {lost:,} in all); emitting took "
        f"{ours['seconds']:.2f} s vs {base['seconds']:.2f} s (it never blocks)",
        f"throughput, collector up, {config.load_seconds:g} s flat out: stderr-only {rate['b']:,.0f} records/s; "
        f"torch-otel {rate['d']:,.0f} records/s, dropped {load['throughput']['d']['dropped']:,}",
        f"sustained with nothing dropped: {sustained_rate:,.0f} records/s{bound}; exported "
        f"{sustained.get('exported', 0):,} of {sustained['emitted']:,}",
    ])


# -- report -----------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(), "python": f"{platform.python_implementation()} {platform.python_version()}",
        "torch": version("torch"), "opentelemetry-sdk": version("opentelemetry-sdk"), "grpcio": version("grpcio"),
        "protobuf": version("protobuf"), "rotel": version("rotel"), "torch-otel": version("torch-otel"),
        "loadavg_start": list(os.getloadavg()),
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    cells = [list(headers)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        aligned = (cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths)))
        return "  ".join(aligned)

    lines = [line(row) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def records_report(rows: list[dict[str, Any]]) -> str:
    headers = ["message", "setup", "N", "emit wall µs/rec", "×b", "emit thread CPU µs/rec", "×b",
               "total CPU µs/rec", "×b", "CPU spread", "flush ms", "lost", "truncated"]
    body = [
        [size_label(row["size"]), f"{row['setup']} {SETUPS[row['setup']]}", row["records"],
         f"{row['emit_us']:.2f}", f"{row['emit_us_vs_b']:.2f}", f"{row['emit_cpu_us']:.2f}",
         f"{row['emit_cpu_us_vs_b']:.2f}", f"{row['cpu_us']:.2f}", f"{row['cpu_us_vs_b']:.2f}",
         f"{row['cpu_spread']:.0%}", f"{row['flush_ms']:.0f}", row.get("lost", "-"), row.get("truncated", "-")]
        for row in rows
    ]
    return table(headers, body)


def records_flags(rows: list[dict[str, Any]]) -> list[str]:
    flags = []
    for row in rows:
        if row["setup"] != "d":
            continue
        if row["emit_us_vs_b"] > EMIT_RATIO_LIMIT:
            flags.append(f"d/{size_label(row['size'])}: emitting-thread wall {row['emit_us_vs_b']:.2f}× stderr-only "
                         f"(limit {EMIT_RATIO_LIMIT}×)")
        if row["cpu_us_vs_b"] > CPU_RATIO_LIMIT:
            flags.append(f"d/{size_label(row['size'])}: total CPU {row['cpu_us_vs_b']:.2f}× stderr-only "
                         f"(limit {CPU_RATIO_LIMIT}×)")
    return flags


def value_range(values: Sequence[float], digits: int) -> str:
    return f"{values[0]:.{digits}f}–{values[1]:.{digits}f}"


def on_off_rows(measures: dict[str, dict[str, Any]], names: dict[str, str], digits: int) -> list[list[str]]:
    return [
        [names[key], f"{m['off']:.{digits}f}", value_range(m["off_range"], digits), f"{m['on']:.{digits}f}",
         value_range(m["on_range"], digits), f"{m['ratio']:.3f}",
         f"{m['paired_ratio_median']:.3f} ({value_range(m['paired_ratio_range'], 3)})", f"{m['best_ratio']:.3f}",
         m["verdict"]]
        for key, m in measures.items()
    ]


VERDICT_LEGEND = ("goal: judged on the on/off ratio of medians; 'noise' = outside the goal, but the middle half of "
                  "the paired on/off ratios straddles it, so this machine cannot resolve the difference")


def paired_report(summary: dict[str, Any]) -> str:
    headers = ["µs/record", "b stderr only", "b range", "d fast path", "d range", "d/b", "paired d/b (range)",
               "best d/b", "goal"]
    return (table(headers, on_off_rows(summary["measures"], PAIRED_MEASURES, 2))
            + f"\nrecords per round: {summary['records']:,}; lost in all d rounds: {summary['lost']}")


def steady_report(summary: dict[str, Any]) -> str:
    headers = ["ns/call", "off", "off range", "on", "on range", "on/off", "paired on/off (range)", "best on/off",
               f"goal 1±{STEADY_GOAL:.2f}"]
    return table(headers, on_off_rows(summary["measures"], STEADY_MEASURES, 0)) + "\n" + VERDICT_LEGEND


def compile_report(summary: dict[str, Any]) -> str:
    headers = ["compile ms", "off", "off range", "on", "on range", "on/off", "paired on/off (range)", "best on/off",
               f"goal <{COMPILE_SHARE_GOAL:.0%}"]
    hook_goal = "met" if summary["hook_cpu_share"] < COMPILE_SHARE_GOAL else "MISSED"
    return "\n".join([
        table(headers, on_off_rows(summary["measures"], COMPILE_MEASURES, 1)),
        VERDICT_LEGEND,
        f"spans per compile: {summary['spans_per_compile']:.0f}. Measured directly inside torch-otel's hooks, per "
        f"compile: {summary['hook_cpu_ms']:.2f} ms CPU = {summary['hook_cpu_share']:.2%} of the compile's thread CPU "
        f"(off) - goal <{COMPILE_SHARE_GOAL:.0%}: {hook_goal}; {summary['hook_ms']:.2f} ms wall = "
        f"{summary['hook_share']:.2%} of the compile's wall time",
    ])


def workload_report(summary: dict[str, Any], judged: bool) -> str:
    headers = ["compile ms", "off", "off range", "on", "on range", "on/off", "paired on/off (range)", "best on/off", ""]
    parts = summary["parts"]
    breakdown = ", ".join(f"{SELF_PARTS[key]} {parts[key]:.1f} ms" for key in SELF_PARTS if key != "self_ms")
    share = f"{summary['self_share']:.2%} of the compile's wall time"
    if judged:
        met = summary["self_share"] < COMPILE_SHARE_GOAL
        share += f" (goal <{COMPILE_SHARE_GOAL:.0%}: {'met' if met else 'MISSED'})"
    return "\n".join([
        table(headers, on_off_rows(summary["measures"], COMPILE_MEASURES, 0)),
        f"records per compile: {summary['records']:.0f}, spans per compile: {summary['spans']:.0f}. "
        f"torch-otel's self-time per compile (median): {breakdown}; "
        f"total {parts['self_ms']:.1f} ms = {share}, {summary['self_cpu_share']:.2%} of the compiling thread's CPU "
        f"(the rest of the wall time is inductor's C++ builds in subprocesses)",
    ])


THREAD_GROUPS = ("MainThread", "torch-otel-export", "OtelBatchLogRecordProcessor", "native")


def thread_group(name: str) -> str:
    return name if name in THREAD_GROUPS else "other"


def threads_report(runs: dict[str, list[dict[str, Any]]], config: Config) -> str:
    """Median µs of CPU per record by thread, for the setups that export."""
    groups = [*THREAD_GROUPS, "other"]
    rows = []
    for size, _ in config.sizes():
        for setup in ("c", "d", "e"):
            per_rep = []
            for rep in runs.get(setup, []):
                grouped: dict[str, float] = collections.Counter()
                for name, us in rep[str(size)]["threads_us"].items():
                    grouped[thread_group(name)] += us
                per_rep.append(grouped)
            if per_rep:
                medians = (statistics.median(grouped[group] for grouped in per_rep) for group in groups)
                rows.append([size_label(size), setup, *(f"{us:.1f}" for us in medians)])
    return table(["message", "setup", *(f"{group} µs/rec" for group in groups)], rows)


def header(info: dict[str, Any], config: Config, mode: str) -> str:
    command = f"cd {shlex.quote(os.getcwd())} && {shlex.join([sys.executable, *sys.argv])}"
    names = ("torch", "opentelemetry-sdk", "grpcio", "protobuf", "rotel")
    versions = ", ".join(f"{name} {info[name]}" for name in names)
    return "\n".join([
        f"torch-otel benchmarks ({mode})",
        f"command:  {command}",
        f"machine:  {info['cpu_count']} CPUs (affinity {info['cpu_affinity']}), {info['platform']}, {info['python']}",
        f"versions: {versions}",
        f"load average at start: {' '.join(f'{x:.2f}' for x in info['loadavg_start'])}",
        f"config:   {asdict(config)}",
    ])


# -- profiling --------------------------------------------------------------------------------------------
def py_spy() -> str | None:
    return shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def collapse(raw: str, main_root: str) -> dict[str, collections.Counter[str]]:
    """py-spy raw stacks -> per thread: sample counts per function, inclusive ('incl:') and self ('self:').
    Main-thread samples outside ``main_root`` (imports, setup) are ignored."""
    per_thread: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        thread = frames[0].split(": ", 1)[-1]
        frames = frames[1:]
        if thread == "MainThread" or thread.startswith("thread ("):
            roots = [i for i, frame in enumerate(frames) if frame.startswith(main_root + " ")]
            if not roots:
                continue
            thread, frames = "MainThread", frames[roots[0] + 1:]
        counter = per_thread[thread]
        counter["total"] += int(count)
        for frame in set(frames):
            counter["incl:" + frame] += int(count)
        if frames:
            counter["self:" + frames[-1]] += int(count)
    return per_thread


def profile_report(per_thread: dict[str, collections.Counter[str]], top: int = 18) -> str:
    parts = []
    for thread, counter in sorted(per_thread.items(), key=lambda item: -item[1]["total"]):
        total = counter["total"]
        parts.append(f"== thread {thread}: {total} samples")
        for kind in ("incl", "self"):
            ranked = [(key, n) for key, n in counter.most_common() if key.startswith(kind + ":")]
            for key, n in ranked[:top]:
                if kind == "incl" and n == total:
                    continue  # frames every sample has (thread bootstrap, the measured function itself)
                parts.append(f"  {kind} {n / total:6.1%}  {key[len(kind) + 1:]}")
    return "\n".join(parts)


def profile(setup: str, config: Config, endpoint: str) -> str:
    spy = py_spy()
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    params = {"setup": setup, "endpoint": endpoint, "sizes": config.sizes()}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "stacks.txt"
        command = [spy, "record", "--nonblocking", "--threads", "-r", "250", "-f", "raw", "-o", str(raw), "--",
                   *child_command("records", params)]
        result = run_child(command, f"py-spy of setup {setup}")
        return json.dumps(result["results"]) + "\n" + profile_report(collapse(raw.read_text(), "measure_records"))


# -- main -------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N and one repetition: a smoke run (< 1 min)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every raw measurement to OUT")
    parser.add_argument("--repetitions", type=int,
                        help="override the fresh processes per records setup and the compiles per workload state")
    parser.add_argument("--profile", choices=sorted(SETUPS), help="py-spy one records run of SETUP instead")
    parser.add_argument("--parts", type=parts_arg, default=PARTS,
                        help="comma-separated parts to run: " + ",".join(PARTS) + " (default: all)")
    return parser.parse_args(argv)


PARTS = ("records", "steady", "spans", "live", "workload", "load")


def parts_arg(text: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(unknown) or '(none)'}; choose from "
                                         + ", ".join(PARTS))
    return parts


def choose_config(args: argparse.Namespace) -> Config:
    config = QUICK if args.quick else FULL
    if args.repetitions:
        n = args.repetitions
        config = Config(n, config.small_records, config.large_records, config.steady_calls,
                        config.steady_repetitions, config.compile_repetitions, n, config.load_records,
                        config.load_seconds, config.paired_rounds)
    return config


def run_all(config: Config, endpoint: str, parts: Sequence[str] = PARTS) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "records" in parts:
        progress("1/5 per-record cost")
        record_runs = measure_records(config, endpoint)
        paired = run_mode("paired", {"endpoint": endpoint, "count": config.small_records,
                                     "rounds": config.paired_rounds})
        results.update(records_raw=record_runs, records=summarize_records(record_runs, config),
                       paired_raw=paired, paired=summarize_paired(paired))
    if "steady" in parts:
        progress("2/5 steady state")
        steady = run_mode("steady", {"endpoint": endpoint, "calls": config.steady_calls,
                                      "repetitions": config.steady_repetitions})
        results.update(steady_raw=steady, steady=summarize_steady(steady))
    workload_params = {"endpoint": endpoint, "repetitions": config.workload_repetitions}
    if "spans" in parts:
        progress("3/5 spans-only compile overhead (inductor workload, then a tiny aot_eager compile)")
        spans_only = run_mode("workload", workload_params)
        compiled = run_mode("compile", {"endpoint": endpoint, "repetitions": config.compile_repetitions})
        results.update(spans_only_raw=spans_only, spans_only=summarize_workload(spans_only),
                       compile_raw=compiled, compile=summarize_compile(compiled))
    if "live" in parts:
        progress("3c live compile events (start record, slow-compile watchdog) on the tiny aot_eager compile")
        live = run_mode("live", {"endpoint": endpoint, "repetitions": config.compile_repetitions})
        results.update(live_raw=live, live=summarize_live(live))
    if "workload" in parts:
        progress(f"4/5 compile workload with TORCH_LOGS={WORKLOAD_TORCH_LOGS}")
        with_logs = run_mode("workload", workload_params, env={"TORCH_LOGS": WORKLOAD_TORCH_LOGS})
        results.update(workload_raw=with_logs, workload=summarize_workload(with_logs))
    if "load" in parts:
        progress("5/5 memory and throughput")
        results["load"] = measure_load(config, endpoint)
    return results


def report(info: dict[str, Any], config: Config, results: dict[str, Any], mode: str) -> str:
    sections = [header(info, config, mode)]
    if "records" in results:
        sections += records_sections(config, results)
    if "steady" in results:
        sections.append(
            f"2. Steady state: warm torch.compile(backend='eager') calls, {config.steady_repetitions} segments of "
            f"{config.steady_calls} calls per state, on/off interleaved; best = ratio of the fastest segments\n"
            + steady_report(results["steady"]))
    if "spans_only" in results:
        sections += [
            f"3. Spans-only compile overhead (TORCH_LOGS unset): {WORKLOAD} compiled from scratch, "
            f"{config.workload_repetitions} compiles each, on/off interleaved\n"
            + workload_report(results["spans_only"], judged=True),
            f"3b. For reference, the worst case for the share: a tiny compile, 4×(Linear+GELU), backend aot_eager, "
            f"{config.compile_repetitions} compiles each, on/off interleaved (the goal is judged in 3)\n"
            + compile_report(results["compile"]),
        ]
    if "live" in results:
        sections.append(
            f"3c. Live compile events (pytorch.compile.start, the slow-compile watchdog) on the tiny aot_eager "
            f"compile, torch-otel on in every state: without them vs with them, {results['live']['compiles']} "
            f"compiles per state, states rotated\n" + live_report(results["live"]))
    if "workload" in results:
        sections.append(
            f"4. Compile workload with TORCH_LOGS={results['workload']['torch_logs']}: {WORKLOAD}, torch's stderr "
            f"handler on in both (to /dev/null), torch-otel's fast path on vs off, {config.workload_repetitions} "
            f"compiles each\n" + workload_report(results["workload"], judged=False))
    if "load" in results:
        sections.append("5. Under load (fresh processes, torch-otel's default settings, 200 B records through the "
                        "recompiles logger)\n" + load_report(results["load"], config))
    sections.append(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return "\n\n".join(sections)


def records_sections(config: Config, results: dict[str, Any]) -> list[str]:
    flags = records_flags(results["records"])
    return [
        f"1. Per-record cost, artifact logger torch._dynamo.guards.__recompiles (median of {config.repetitions} "
        f"fresh processes; ×b = ratio to the stderr-only median; total CPU = every thread until flushed)\n"
        + records_report(results["records"]),
        ("(d) above the limits in these fresh-process medians (row e and the per-thread table below show where it "
         "goes; --profile d names the functions):\n  " + "\n  ".join(flags)) if flags
        else "(d) within the limits (1.5× emit wall, 2× total CPU) in these fresh-process medians",
        f"1b. The same 200 B records, setups b and d alternated in ONE process ({results['paired']['rounds']} rounds "
        f"each): every d measurement has a b measurement seconds away, so the paired ratios (d/b of adjacent "
        f"rounds) cancel the machine's drift, which moves fresh processes by ±30 % here. The goals are judged on "
        f"the median paired ratio.\n" + paired_report(results["paired"]),
        "CPU per record by thread (median; native = threads Python does not know, i.e. gRPC's C core)\n"
        + threads_report(results["records_raw"], config),
    ]


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = choose_config(args)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # unwind, so the collector is stopped
    info = machine()
    mode = ("quick" if args.quick else "full") + ("" if args.parts == PARTS else f", parts {','.join(args.parts)}")
    with BlackholeCollector() as collector:
        progress(f"rotel-agent pid {collector.pid} on {collector.grpc_endpoint} (blackhole exporter)")
        if args.profile:
            profiled = profile(args.profile, config, collector.grpc_endpoint)
            print(header(info, config, f"profile of setup {args.profile}") + "\n\n" + profiled)
            return 0
        results = run_all(config, collector.grpc_endpoint, args.parts)
    print(report(info, config, results, mode))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "command": sys.argv, "config": asdict(config),
                                         "loadavg_end": list(os.getloadavg()), **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
