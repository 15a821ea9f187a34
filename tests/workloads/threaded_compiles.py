"""Several threads compile different functions at the same time, each inside its own application span.

Thread n opens span ``app-thread-<n>`` and calls ``torch.compile(thread_fn_<n>, backend="eager")`` (distinct code
objects, so distinct frames), after a barrier so the compiles overlap as much as dynamo allows. Prints one JSON
line per thread with its span's ids and the function name, and exits 0.
"""

from __future__ import annotations

import json
import threading

import torch
from opentelemetry import trace


def thread_fn_0(x):
    return torch.sin(x) + 1


def thread_fn_1(x):
    return torch.cos(x) * 2


def thread_fn_2(x):
    return torch.tanh(x) - 3


FUNCTIONS = (thread_fn_0, thread_fn_1, thread_fn_2)


def main() -> None:
    tracer = trace.get_tracer("threaded-app")
    barrier = threading.Barrier(len(FUNCTIONS))
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            compiled = torch.compile(FUNCTIONS[n], backend="eager")
            barrier.wait(timeout=60)
            with tracer.start_as_current_span(f"app-thread-{n}") as span:
                compiled(torch.ones(4 + n))
                ctx = span.get_span_context()
            results[n] = {"thread": n, "function": FUNCTIONS[n].__name__, "trace_id": f"{ctx.trace_id:032x}",
                          "span_id": f"{ctx.span_id:016x}"}
        except BaseException as error:  # noqa: BLE001 - reported through the exit code
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,), name=f"compiler-{n}") for n in range(len(FUNCTIONS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for n in sorted(results):
        print(json.dumps(results[n]), flush=True)
    if errors or len(results) != len(FUNCTIONS):
        raise SystemExit(f"threads failed: {errors!r}")


if __name__ == "__main__":
    main()
