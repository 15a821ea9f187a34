"""Cost of structured mode (TORCH_OTEL_STRUCTURED=on) on compile time, against the bridge with spans only and
against no bridge, measured in one run: median compile time of a small model with backend aot_eager.

    python benchmarks/structured_cost.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.trace import TracerProvider

import torch_otel
from torch_otel.config.settings import Settings

MODES = {"off": None, "spans only": Settings(), "structured": Settings(structured=True)}


def model() -> torch.nn.Module:
    return torch.nn.Sequential(*[layer for _ in range(4) for layer in (torch.nn.Linear(64, 64), torch.nn.GELU())])


def compile_seconds(settings: Settings | None) -> float:
    torch._dynamo.reset()
    if settings is not None:
        logs = LoggerProvider()
        logs.add_log_record_processor(BatchLogRecordProcessor(InMemoryLogRecordExporter()))
        torch_otel.instrument(tracer_provider=TracerProvider(), logger_provider=logs, settings=settings)
    try:
        compiled = torch.compile(model(), backend="aot_eager")
        started = time.perf_counter()
        compiled(torch.randn(8, 64))
        return time.perf_counter() - started
    finally:
        if settings is not None:
            torch_otel.flush()
            torch_otel.uninstrument()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}")
    print(f"# python {' '.join(sys.argv)}")
    compile_seconds(None)  # warm-up: imports and first-use costs
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode, settings in MODES.items():  # interleaved so drift hits every mode alike
            samples[mode].append(compile_seconds(settings))
    baseline = statistics.median(samples["off"])
    print(f"{'mode':<12} {'median compile (ms)':>20} {'vs off':>8}")
    for mode, values in samples.items():
        median = statistics.median(values)
        print(f"{mode:<12} {median * 1000:>20.1f} {median / baseline:>8.3f}")


if __name__ == "__main__":
    main()
