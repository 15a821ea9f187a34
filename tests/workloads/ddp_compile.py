"""One torchrun rank: DDP (gloo, CPU) around a small model, compiled with backend="aot_eager".

DDPOptimizer splits the graph at bucket boundaries and logs the pieces under the ``ddp_graphs`` artifact (enable
it with TORCH_LOGS=ddp_graphs); two 1 MiB layers with 1 MiB buckets force a split. Each rank logs
``ddp-rank-<rank>-step-<n>`` through torch's logger and opens an application span ``ddp-step`` per step, so records
and spans of each rank can be told apart. Prints one JSON line per rank and exits 0.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import torch
import torch.distributed as dist
from opentelemetry import trace
from torch.nn.parallel import DistributedDataParallel

STEPS = 2


class Model(torch.nn.Module):
    """A user module (its forward is user code, so dynamo compiles it as its own frame under DDP)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(512, 512)
        self.second = torch.nn.Linear(512, 512)
        self.head = torch.nn.Linear(512, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.second(torch.relu(self.first(x)))))


def main() -> None:
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    # Two 1 MiB layers and 1 MiB buckets (DDPOptimizer's first bucket is 1 MiB and no bucket may be smaller):
    # the compiled graph is split into several submodules.
    ddp = DistributedDataParallel(Model(), bucket_cap_mb=1)
    compiled = torch.compile(ddp, backend="aot_eager")
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
    tracer = trace.get_tracer("ddp-app")
    log = logging.getLogger("torch._dynamo")
    for step in range(STEPS):
        with tracer.start_as_current_span("ddp-step") as span:
            span.set_attribute("app.rank", rank)
            log.warning("ddp-rank-%d-step-%d", rank, step)
            loss = compiled(torch.randn(8, 512)).sum()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    dist.barrier()
    report = {"rank": rank, "world_size": world_size, "local_rank": int(os.environ["LOCAL_RANK"]), "pid": os.getpid()}
    sys.stdout.write(json.dumps(report) + "\n")  # one write: the ranks share the launcher's stdout
    sys.stdout.flush()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
