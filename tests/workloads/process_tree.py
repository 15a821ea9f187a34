"""Programs that start processes, for the tests of which processes get torch-otel. One JSON line on stdout.

    bare-children N   compiles (eager), then starts N `python -c` children that never import torch; each reports
                      what it has loaded and how many exit callbacks it holds
    fork-compile      compiles, then a multiprocessing fork child compiles a function of its own and exits through
                      multiprocessing's os._exit
    inductor          one inductor compile (the default backend), which makes torch start its own helpers: the
                      CPU-feature probes, and (with TORCHINDUCTOR_COMPILE_THREADS > 1) the compile-worker pool
                      that inductor warms up on machines with Triton, started here as inductor starts it there
    drop-then-fork    floods a tiny queue (set TORCH_OTEL_QUEUE_SIZE) so records are dropped, then os.fork()s a child
                      that leaves through sys.exit, running its own exit
    steady N [SIZE]   compiles with one recompile and logs N records of SIZE bytes (default: short) through torch's
                      dynamo logger; deterministic
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys

import torch

CHILD = (
    "import atexit, json, os, sys; print(json.dumps({'pid': os.getpid(), "
    "'torch_otel': sorted(m for m in sys.modules if m.startswith('torch_otel')), "
    "'wrapt': 'wrapt' in sys.modules, 'torch': 'torch' in sys.modules, "
    "'exit_callbacks': atexit._ncallbacks()}))"
)


def compile_once(backend: str = "eager") -> None:
    def scaled(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * 2

    torch.compile(scaled, backend=backend)(torch.ones(4))


def bare_children(count: int) -> dict:
    compile_once()
    children = [json.loads(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                                          check=True).stdout) for _ in range(count)]
    return {"pid": os.getpid(), "children": children}


def child_compile() -> None:
    def in_the_child(x: torch.Tensor) -> torch.Tensor:
        return torch.cos(x) + 1

    torch.compile(in_the_child, backend="eager")(torch.ones(4))


def fork_compile() -> dict:
    compile_once()
    child = multiprocessing.get_context("fork").Process(target=child_compile)
    child.start()
    child.join(60)
    return {"pid": os.getpid(), "child_pid": child.pid, "child_exitcode": child.exitcode}


def steady(count: int, size: int = 0) -> dict:
    def shaped(x: torch.Tensor) -> torch.Tensor:
        return x * 3

    compiled = torch.compile(shaped, backend="eager")
    compiled(torch.ones(4))
    compiled(torch.ones(4, 2))  # a recompile
    log = logging.getLogger("torch._dynamo")
    for index in range(count):
        log.warning("steady-record-%d %s", index, "x" * size)
    return {"pid": os.getpid()}


def drop_then_fork() -> dict:
    log = logging.getLogger("torch._dynamo")
    for index in range(200):
        log.warning("flood-%d", index)
    child = os.fork()
    if child == 0:
        sys.exit(0)
    os.waitpid(child, 0)
    return {"pid": os.getpid(), "child_pid": child}


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "bare-children":
        report = bare_children(int(args[0]))
    elif mode == "fork-compile":
        report = fork_compile()
    elif mode == "inductor":
        from torch._inductor.async_compile import AsyncCompile

        AsyncCompile.warm_pool()
        AsyncCompile.wait_pool_ready()
        compile_once("inductor")
        report = {"pid": os.getpid()}
    elif mode == "drop-then-fork":
        report = drop_then_fork()
    elif mode == "steady":
        report = steady(*map(int, args))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
