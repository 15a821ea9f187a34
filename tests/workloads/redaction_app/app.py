"""Compiles code whose source and directory carry markers. tests/test_redaction.py copies this folder into a
directory named with a space, non-ASCII letters and MARKERDIR, and checks that no marker is exported."""

import logging
import sys

import torch
from helpers import scaled

BACKEND = sys.argv[1] if len(sys.argv) > 1 else "aot_eager"


def step(x, n):
    y = scaled(x, n)  # MARKERSRC comment on a traced line
    label = "MARKERSRC string literal"
    if n > 2:
        y = y + len(label)
    torch._dynamo.graph_break()
    return y.cos() + 1  # MARKERSRC second traced line


def failing_backend(gm, example_inputs):
    raise RuntimeError("backend refused the graph")  # MARKERSRC line in a stack trace


def main() -> None:
    compiled = torch.compile(step, backend=BACKEND, dynamic=False)
    for size, n in ((4, 1), (8, 1), (8, 3), (16, 3)):  # each one a recompile, with reasons and guards
        compiled(torch.ones(size), n)
    torch._dynamo.config.suppress_errors = True
    torch.compile(lambda x: x.sin() * 3, backend=failing_backend)(torch.ones(3))  # MARKERSRC lambda
    logging.getLogger("torch._dynamo").info("done")


if __name__ == "__main__":
    main()
