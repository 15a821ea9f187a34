"""A few training steps of a tiny model: one OpenTelemetry span per step, torch.compile spans inside them.

    torch-otel run -- python examples/training.py
    torch-otel run -- python examples/training.py --backend aot_eager   # compiles in a fraction of the time

Each step is a span named ``train_step``. Step 0 compiles the forward pass (a ``torch.compile`` span) and, lazily
inside ``loss.backward()``, the backward pass (a ``torch.compile.backward`` span under the same step, linked to the
forward ``torch.compile`` span of the same compile id). Later steps reuse the compiled code: no compile spans.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import torch
from opentelemetry import trace

tracer = trace.get_tracer("examples.training")


def build_model(features: int, hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))


def train(backend: str, steps: int, batch_size: int = 32, features: int = 8) -> list[str]:
    """Fit y = sum(x) for ``steps`` steps; returns the trace id of each step (hex)."""
    model = build_model(features, hidden=16)
    compiled = torch.compile(model, backend=backend)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    trace_ids: list[str] = []
    for step in range(steps):
        with tracer.start_as_current_span("train_step", attributes={"train.step": step}) as span:
            inputs = torch.randn(batch_size, features)
            targets = inputs.sum(dim=1, keepdim=True)
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(compiled(inputs), targets)
            loss.backward()  # step 0: the backward graph is compiled here
            optimizer.step()
            loss_value = loss.detach().item()
            span.set_attribute("train.loss", loss_value)
            context = span.get_span_context()
        trace_ids.append(f"{context.trace_id:032x}")
        print(f"step {step}: loss={loss_value:.4f} trace_id={trace_ids[-1]} span_id={context.span_id:016x}",
              flush=True)
    return trace_ids


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (default: inductor)")
    parser.add_argument("--steps", type=int, default=4, help="number of training steps (default: 4)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    trace_ids = train(args.backend, args.steps)
    if set(trace_ids[0]) == {"0"}:
        print("\nNo OpenTelemetry SDK is configured, so nothing was recorded: run this under `torch-otel run --`.")
        return
    service = os.environ.get("OTEL_SERVICE_NAME") or "unknown_service (set OTEL_SERVICE_NAME)"
    print(
        f"\nIn Jaeger: pick service {service!r} and open the trace of step 0 (`train_step`, train.step=0). It holds"
        "\nthe forward `torch.compile` span (search by tag `pytorch.compile.id=0/0`) and, under the same step, the"
        "\n`torch.compile.backward` span compiled during loss.backward(); its span link (References) leads back to"
        "\nthe forward compile. Later steps hold no compile spans: they run the compiled code.",
        flush=True,
    )


if __name__ == "__main__":
    main()
