"""A report fixture workload: a two-rank run whose rank 1 is stuck in its backend compile (60 s, killed long before)
while rank 0's compile of the same function is slow (past TORCH_OTEL_SLOW_COMPILE) but finishes."""
import os
import time

import torch
from opentelemetry import trace

RANK = int(os.environ["RANK"])


def slow_backend(gm, example_inputs):
    time.sleep(60 if RANK == 1 else 1.3)  # rank 1: stuck; rank 0: slow
    return gm.forward


def scaled_cos(x):
    return torch.cos(x) * 2


def main():
    tracer = trace.get_tracer("fixture-app")
    step = torch.compile(scaled_cos, backend=slow_backend, dynamic=False)
    with tracer.start_as_current_span("train_step") as span:
        span.set_attribute("training.step", 0)
        step(torch.ones(8))
    time.sleep(60)  # rank 0 waits for rank 1, as it would in a collective


if __name__ == "__main__":
    main()
