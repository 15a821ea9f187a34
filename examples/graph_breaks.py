"""A compiled function with a data-dependent branch and a print(), each of which breaks the graph.

    TORCH_LOGS=graph_breaks torch-otel run -- python examples/graph_breaks.py
"""

import torch
from opentelemetry import trace

tracer = trace.get_tracer("examples.graph_breaks")


def normalise(x: torch.Tensor) -> torch.Tensor:
    total = x.sum()
    print("normalising")  # a side effect dynamo cannot trace: graph break
    if total.item() > 0:  # data-dependent control flow: graph break
        return x / total
    return x


def main() -> None:
    compiled = torch.compile(normalise, backend="eager")
    with tracer.start_as_current_span("step") as span:
        compiled(torch.arange(1.0, 5.0))
        context = span.get_span_context()
        print(f"step: trace_id={context.trace_id:032x} span_id={context.span_id:016x}")
    print("In Jaeger or Loki: look for log records named pytorch.artifact.graph_breaks; "
          "code.file.path and code.line.number point at the user frame.")


if __name__ == "__main__":
    main()
