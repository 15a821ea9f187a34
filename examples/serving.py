"""A small inference server loop: one OpenTelemetry span per request, torch.compile spans inside them.

    torch-otel run -- python examples/serving.py
    torch-otel run -- python examples/serving.py --backend aot_eager   # compiles in a fraction of the time

Each request is a span named ``request``. The first request compiles the model (a ``torch.compile`` span with
torch's phases as children); a request with a batch size not seen before makes torch.compile recompile
(``dynamic=False``), and that request's span carries a ``pytorch.recompile`` event with the reason.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import torch
from opentelemetry import trace

tracer = trace.get_tracer("examples.serving")


def build_model(features: int, hidden: int, classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes)
    ).eval()


def parse_batch_sizes(raw: str) -> list[int]:
    sizes = [int(part) for part in raw.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive batch sizes, got {raw!r}")
    return sizes


def serve(backend: str, batch_sizes: Sequence[int], features: int = 16) -> list[str]:
    """Handle one request per batch size; returns the trace id of each request (hex)."""
    model = build_model(features, hidden=32, classes=4)
    predict = torch.compile(model, backend=backend, dynamic=False)
    trace_ids: list[str] = []
    for number, batch_size in enumerate(batch_sizes):
        attributes = {"request.number": number, "request.batch_size": batch_size}
        with tracer.start_as_current_span("request", attributes=attributes) as span:
            with torch.inference_mode():
                scores = predict(torch.randn(batch_size, features))
            span.set_attribute("request.top_class", int(scores.argmax(dim=1)[0]))
            context = span.get_span_context()
        trace_ids.append(f"{context.trace_id:032x}")
        print(f"request {number}: batch_size={batch_size} trace_id={trace_ids[-1]} span_id={context.span_id:016x}",
              flush=True)
    return trace_ids


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (default: inductor)")
    parser.add_argument("--batch-sizes", type=parse_batch_sizes, default=parse_batch_sizes("8,8,16,8"),
                        help="batch size of each request; a new size forces a recompile (default: 8,8,16,8)")
    args = parser.parse_args(argv)
    trace_ids = serve(args.backend, args.batch_sizes)
    if set(trace_ids[0]) == {"0"}:
        print("\nNo OpenTelemetry SDK is configured, so nothing was recorded: run this under `torch-otel run --`.")
        return
    service = os.environ.get("OTEL_SERVICE_NAME") or "unknown_service (set OTEL_SERVICE_NAME)"
    print(
        f"\nIn Jaeger: pick service {service!r} and open a trace of a `request` span. The first request and the one"
        "\nwith a new batch size hold `torch.compile` spans (children: entire_frame_compile, compile_attempt_0,"
        "\nbytecode_tracing, backend_compile, build_guards, ...). Search by tag `pytorch.compile.id=0/1` for the"
        "\nrecompile: its `request` span has a `pytorch.recompile` event (Logs) whose"
        "\n`pytorch.compile.recompile_reasons` says which guard failed, e.g. a size mismatch at index 0.",
        flush=True,
    )


if __name__ == "__main__":
    main()
