"""One torchrun rank (gloo, CPU) where rank 1 alone recompiles on one step: the shape of its input changes there.

A function compiled with backend="eager" and dynamic=False runs STEPS steps; after each step every rank joins an
all_reduce, so the ranks really wait for each other in a collective. On step RECOMPILE_STEP rank 1 feeds a longer
input than before (rank 0 keeps its shape), so rank 1 compiles a second time with a size-mismatch recompile reason
and rank 0 waits for it in the all_reduce. Rank 1's first compile also pays for a cold cache, as on a freshly started
node: its backend takes COLD_CACHE_S longer, once. Each rank opens an application span ``rank-step`` per step and prints
one JSON line (rank, compiles seen, pid) when done.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist
from opentelemetry import trace

STEPS = 3
RECOMPILE_STEP = 1
SKEWED_RANK = 1
COLD_CACHE_S = 1.5
_cold = [True]


def cold_cache_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
    if dist.get_rank() == SKEWED_RANK and _cold[0]:
        _cold[0] = False
        time.sleep(COLD_CACHE_S)  # what a cache miss on one node costs it, compared with the others
    return gm.forward


def skewed_step(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x * 2.0 + 1.0).sum()


def main() -> None:
    # A collective that waits longer than this fails instead of hanging the test.
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    compiled = torch.compile(skewed_step, backend=cold_cache_backend, dynamic=False)
    tracer = trace.get_tracer("rank-skew-app")
    for step in range(STEPS):
        with tracer.start_as_current_span("rank-step") as span:
            span.set_attribute("app.rank", rank)
            span.set_attribute("app.step", step)
            length = 16 if rank == SKEWED_RANK and step == RECOMPILE_STEP else 8
            total = compiled(torch.ones(length, 4)).reshape(1)
            dist.all_reduce(total)  # every rank waits here for the slowest one
    dist.barrier()
    report = {
        "rank": rank,
        "world_size": world_size,
        "local_rank": int(os.environ["LOCAL_RANK"]),
        "pid": os.getpid(),
        "total": float(total.item()),
    }
    sys.stdout.write(json.dumps(report) + "\n")  # one write: the ranks share the launcher's stdout
    sys.stdout.flush()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
