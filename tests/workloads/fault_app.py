"""Fault-injection workload: emits torch log records cheaply and reports on itself.

Run under `torch-otel run`. Emits ``--count`` WARNING records ``<prefix>-<i>`` through torch's own
``torch._dynamo`` logger (what torch's warnings go through), optionally pauses until a line arrives on stdin
(so a test can break the collector), emits ``--after-count`` more, optionally sleeps (a test sends a signal),
then prints one JSON line with its own timings, RSS and the bridge's counters, and exits with ``--exit-code``.

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
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--prefix", default="rec")
    parser.add_argument("--pause", action="store_true", help="print PAUSED and wait for a line on stdin")
    parser.add_argument("--after-count", type=int, default=0)
    parser.add_argument("--after-prefix", default="after-restart")
    parser.add_argument("--sleep", type=float, default=0.0, help="print READY, then sleep (signal target)")
    parser.add_argument("--settle", type=float, default=0.0, help="seconds to wait before measuring RSS again")
    parser.add_argument("--exit-code", type=int, default=3)
    args = parser.parse_args()

    import torch  # noqa: F401 - what a real program does; torch-otel already imported it
    import torch_otel

    log = logging.getLogger("torch._dynamo")
    rss_before = rss_kb()
    emit_started = time.monotonic()
    for i in range(args.count):
        log.warning("%s-%d", args.prefix, i)
    emit_seconds = time.monotonic() - emit_started
    if args.pause:
        print("PAUSED", flush=True)
        sys.stdin.readline()
    for i in range(args.after_count):
        log.warning("%s-%d", args.after_prefix, i)
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
