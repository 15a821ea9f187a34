"""Memory and throughput under load, each in fresh child processes, against baselines from the same run.

    python benchmarks/load.py [--records 200000] [--seconds 5]

* memory: peak RSS while N 200-byte records go through torch's recompiles logger with the collector DOWN (the
  endpoint is a closed loopback port), torch-otel's fast path on, versus the same loop with stderr only.
* throughput: records per second the emitting loop sustains for a few seconds with a real rotel-agent up, and
  how many were dropped (the bridge's count) and delivered (the collector-facing exporter's count).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _collector import BlackholeCollector, die_with_parent  # noqa: E402

CHILD = r'''
import json, logging, os, resource, sys, time
mode, records, seconds, endpoint = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
import torch
torch._logging.set_logs(recompiles=True)
log = torch._logging.getArtifactLogger("torch._dynamo.guards", "recompiles")
devnull = open(os.devnull, "w")
for handler in logging.getLogger("torch._dynamo").handlers:
    handler.setStream(devnull)
sent = {"delivered": 0, "failed": 0}
bridge = None
if mode != "stderr":
    import torch_otel
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.trace import TracerProvider
    from torch_otel.instrumentor import TorchInstrumentor
    from torch_otel.otlp_wire import LogEncoder, WireLogSink, grpc_log_exporter_for_bytes
    exporter = grpc_log_exporter_for_bytes(endpoint=endpoint, insecure=True, timeout=2)
    send = exporter.send
    def counting(batch):
        ok = send(batch)
        sent["delivered" if ok else "failed"] += batch.count
        return ok
    exporter.send = counting
    settings = torch_otel.Settings()
    sink = WireLogSink(exporter, LogEncoder({"service.name": "load"}, torch.__version__), settings.max_batch_bytes)
    torch_otel.instrument(logger_provider=LoggerProvider(), tracer_provider=TracerProvider(), settings=settings,
                          log_sink=sink)
    bridge = TorchInstrumentor.bridge
message = "x" * 200
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
emitted = 0
if seconds > 0:
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            log.debug("%s", message)
        emitted += 1000
else:
    for _ in range(records):
        log.debug("%s", message)
    emitted = records
elapsed = time.perf_counter() - started
if bridge is not None:
    torch_otel.flush(30)
print(json.dumps({"emitted": emitted, "seconds": elapsed, "rss_before_kib": rss_before,
                  "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "dropped": bridge.dropped if bridge else 0, **sent}))
'''


def child(mode: str, records: int, seconds: float, endpoint: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(records), str(seconds), endpoint],
                          capture_output=True, text=True, timeout=600, preexec_fn=die_with_parent,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# python benchmarks/load.py --records {args.records} --seconds {args.seconds}")
    down = "http://127.0.0.1:9"  # discard port: nothing listens on loopback
    base = child("stderr", args.records, 0, down)
    ours = child("torch-otel", args.records, 0, down)
    base_mib = (base["rss_peak_kib"] - base["rss_before_kib"]) / 1024
    ours_mib = (ours["rss_peak_kib"] - ours["rss_before_kib"]) / 1024
    print(f"memory, collector down, {args.records} records: peak RSS growth stderr-only {base_mib:.1f} MiB, "
          f"torch-otel {ours_mib:.1f} MiB (+{ours_mib - base_mib:.1f} MiB; goal <= 64 MiB); "
          f"dropped {ours['dropped']}, failed {ours['failed']}, emitting took {ours['seconds']:.1f} s "
          f"vs {base['seconds']:.1f} s")
    with BlackholeCollector() as collector:
        base = child("stderr", 0, args.seconds, collector.grpc_endpoint)
        ours = child("torch-otel", 0, args.seconds, collector.grpc_endpoint)
    print(f"throughput, collector up, {args.seconds:g} s flat out: stderr-only {base['emitted'] / base['seconds']:,.0f} "
          f"records/s; torch-otel {ours['emitted'] / ours['seconds']:,.0f} records/s, dropped {ours['dropped']}, "
          f"delivered {ours['delivered']} of {ours['emitted']}")


if __name__ == "__main__":
    main()
