"""A report fixture workload: two functions that hit torch's recompile limit (2), one compiled plainly (torch then
runs it eagerly) and one with fullgraph=True (torch raises FailOnRecompileLimitHit to the caller)."""
import torch
from opentelemetry import trace


def scale_by(x, k):
    return x * k


def shift_by(x, k):
    return x + k


def main():
    torch._dynamo.config.recompile_limit = 2
    tracer = trace.get_tracer("fixture-app")
    scaled = torch.compile(scale_by, backend="eager", dynamic=False)
    shifted = torch.compile(shift_by, backend="eager", fullgraph=True, dynamic=False)
    for k in range(4):  # a new constant k each step: a recompile each, until the limit
        with tracer.start_as_current_span("train_step") as span:
            span.set_attribute("training.step", k)
            scaled(torch.ones(3), k)
            try:
                shifted(torch.ones(3), k)
            except Exception as error:  # FailOnRecompileLimitHit, from the third k on
                span.set_attribute("error.type", type(error).__name__)


if __name__ == "__main__":
    main()
