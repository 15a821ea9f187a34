"""A request loop whose third request has a new input shape, which forces torch.compile to recompile.

    TORCH_LOGS=+dynamo,recompiles,graph_breaks,guards torch-otel run -- python examples/recompiles.py

Each request is an OpenTelemetry span; torch's log records land inside the span of the request that caused them.
"""

import argparse

import torch
from opentelemetry import trace

tracer = trace.get_tracer("examples.recompiles")


def scale_and_shift(x: torch.Tensor) -> torch.Tensor:
    return x * 2 + 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="eager", help="torch.compile backend (inductor is slower to compile)")
    parser.add_argument("--sizes", default="4,4,8", help="input size of each request")
    args = parser.parse_args()
    compiled = torch.compile(scale_and_shift, backend=args.backend, dynamic=False)
    for number, size in enumerate(int(s) for s in args.sizes.split(",")):
        with tracer.start_as_current_span("request", attributes={"request.size": size}) as span:
            compiled(torch.ones(size))
            context = span.get_span_context()
            print(f"request {number}: size={size} trace_id={context.trace_id:032x} span_id={context.span_id:016x}")
    print("In Jaeger: search service by OTEL_SERVICE_NAME, open the trace of the size-8 request, and look for "
          "the log record named pytorch.artifact.recompiles.")


if __name__ == "__main__":
    main()
