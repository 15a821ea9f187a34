"""A report fixture workload: application spans around a compiled function with a graph break, called with new
shapes and a new scale (recompiles with torch's guard pointers). RANK set: one rank of a multi-rank run."""
import os

import torch
from opentelemetry import trace


def model_step(x, mask, scale):
    y = torch.sin(x) * scale + mask.float().sum()
    if y.sum() > 0:  # data-dependent branch: a graph break
        y = y * 2
    return torch.cos(y) + 1


def main():
    rank = os.environ.get("RANK")
    tracer = trace.get_tracer("fixture-app")
    # Serving: eager (no caches); the ranks: inductor with a backward compile (FX graph and AOTAutograd cache counts).
    step = torch.compile(model_step, backend="eager" if rank is None else "inductor", dynamic=False)
    if rank is None:
        plan = [(101, 16, 2.0), (102, 16, 2.0), (103, 48, 2.0), (104, 48, 3.5)]
        for request_id, seq_len, scale in plan:
            with tracer.start_as_current_span("POST /v1/generate") as span:
                span.set_attribute("request.id", f"req-{request_id}")
                span.set_attribute("seq_len", seq_len)
                span.set_attribute("http.route", "/v1/generate")
                step(torch.ones(seq_len), torch.ones(seq_len, dtype=torch.bool), scale)
    else:
        rank = int(rank)
        for n in range(3):
            seq_len = 32 if not (rank == 1 and n == 2) else 40  # rank 1 sees a longer batch at step 2
            with tracer.start_as_current_span("train_step") as span:
                span.set_attribute("training.step", n)
                span.set_attribute("seq_len", seq_len)
                x = torch.ones(seq_len, requires_grad=True)
                step(x, torch.ones(seq_len, dtype=torch.bool), 2.0).sum().backward()


if __name__ == "__main__":
    main()
