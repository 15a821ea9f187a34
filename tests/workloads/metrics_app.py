"""Test workload for metrics: a graph break and a recompile, then stays up (so it can be scraped) until stdin closes."""

import sys

import torch


def step(x):
    y = x * 2
    torch._dynamo.graph_break()
    return y + 1


compiled = torch.compile(step, backend="eager", dynamic=False)
compiled(torch.ones(4))
compiled(torch.ones(8))
print("ready", flush=True)
sys.stdin.read()
