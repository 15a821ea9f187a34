"""Fault-injection workload: emits torch log records cheaply and reports on itself.

Run under `torch-otel run`. For each stage ``NAME:COUNT`` of ``--stages`` it emits COUNT WARNING records
``NAME-<i>`` through torch's own ``torch._dynamo`` logger (what torch's warnings go through); with ``--pause`` it
prints ``PAUSED <stage>`` before every stage after the first and waits for a line on stdin (so a test can break
or restart the collector in between). Then it optionally prints ``READY`` and sleeps (a test sends a signal),
prints one JSON line with its own timings, RSS and the bridge's counters, and exits with ``--exit-code``.

The JSON line's ``end`` is ``time.time()`` right before the program returns: whatever happens after it (atexit
flushes) is torch-otel's shutdown cost, which tests compare with TORCH_OTEL_SHUTDOWN_TIMEOUT.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

STARTED = time.time()


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stages", default="rec:2000", help="comma-separated NAME:COUNT")
    parser.add_argument("--pause", action="store_true", help="print PAUSED <n> and read a line before stage n>0")
    parser.add_argument("--sleep", type=float, default=0.0, help="print READY, then sleep (signal target)")
    parser.add_argument("--settle", type=float, default=0.0, help="seconds to wait before measuring RSS again")
    parser.add_argument("--exit-code", type=int, default=3)
    args = parser.parse_args()

    import torch  # noqa: F401 - what a real program does; torch-otel already imported it
    import torch_otel

    log = logging.getLogger("torch._dynamo")
    rss_before = rss_kb()
    emit_seconds = 0.0
    for number, stage in enumerate(args.stages.split(",")):
        name, count = stage.rsplit(":", 1)
        if args.pause and number:
            print(f"PAUSED {number}", flush=True)
            sys.stdin.readline()
        emit_started = time.monotonic()
        for i in range(int(count)):
            log.warning("%s-%d", name, i)
        emit_seconds += time.monotonic() - emit_started
    if args.sleep:
        print("READY", flush=True)
        time.sleep(args.sleep)
    if args.settle:
        time.sleep(args.settle)
    bridge = torch_otel.TorchInstrumentor.bridge
    report = {
        "elapsed": time.time() - STARTED,
        "emit_seconds": emit_seconds,
        "rss_kb_before": rss_before,
        "rss_kb_after": rss_kb(),
        "bridge": bridge is not None,
        "dropped": getattr(bridge, "dropped", None),
        "emitted": getattr(bridge, "emitted", None),
        "end": time.time(),
    }
    print(json.dumps(report), flush=True)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
