"""multiprocessing with the spawn start method: each child re-imports everything and logs a marker.

Under `torch-otel run` the children inherit PYTHONPATH (torch-otel's bootstrap), so each one sets up its own
SDK and bridge. Bodies: ``spawn-child-<n>-pid-<pid>`` from child n, ``spawn-parent-pid-<pid>`` from the parent.
Prints one JSON line with the parent pid, the children's pids and exit codes, and exits 0.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os

CHILDREN = 2


def child(number: int, results) -> None:
    import torch  # noqa: F401 - a real worker would; torch-otel's bootstrap already did
    import torch_otel

    logging.getLogger("torch._dynamo").warning("spawn-child-%d-pid-%d", number, os.getpid())
    results.put((number, os.getpid(), torch_otel.TorchInstrumentor.bridge is not None))


def main() -> None:
    import torch  # noqa: F401

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    logging.getLogger("torch._dynamo").warning("spawn-parent-pid-%d", os.getpid())
    processes = [context.Process(target=child, args=(n, results)) for n in range(CHILDREN)]
    for process in processes:
        process.start()
    reported = sorted(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    print(json.dumps({
        "parent_pid": os.getpid(),
        "children": [{"number": n, "pid": pid, "bridge": bridge} for n, pid, bridge in reported],
        "exitcodes": [process.exitcode for process in processes],
    }), flush=True)


if __name__ == "__main__":
    main()
