"""What `import torch_otel` costs, against `import opentelemetry.trace` (the API every instrumentation loads) and an
empty interpreter, each in fresh processes, alternated; medians. Also lists which heavy modules each one loads.

    python benchmarks/import_cost.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

STATEMENTS = {
    "python -c pass": "pass",
    "import opentelemetry.trace": "import opentelemetry.trace",
    "import torch_otel": "import torch_otel",
    "import torch_otel; torch_otel.instrument": "import torch_otel; torch_otel.instrument",
}
HEAVY = ("opentelemetry.sdk", "google.protobuf", "grpc", "torch", "torch_otel.exporters.otlp_wire")


def wall_ms(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return (time.perf_counter() - started) * 1000


def heavy_modules(statement: str) -> list[str]:
    probe = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                       text=True).stdout)
    return [heavy for heavy in HEAVY if any(m == heavy or m.startswith(heavy + ".") for m in loaded)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for _ in range(args.runs):
        for name, statement in STATEMENTS.items():
            times[name].append(wall_ms(statement))
    base = statistics.median(times["python -c pass"])
    api = statistics.median(times["import opentelemetry.trace"]) - base
    print("| statement | wall, median | over `python -c pass` | heavy modules loaded |")
    print("|---|---|---|---|")
    for name, statement in STATEMENTS.items():
        median = statistics.median(times[name])
        print(f"| `{name}` | {median:.1f} ms | {median - base:+.1f} ms | {', '.join(heavy_modules(statement)) or '-'} |")
    print(f"\n`import torch_otel` over the OpenTelemetry API: "
          f"{statistics.median(times['import torch_otel']) - base - api:+.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
