"""Loaded by `torch-otel run` in every Python child: runs any other sitecustomize, then starts torch-otel."""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _run_next_sitecustomize() -> None:
    search_path = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search_path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _start_torch_otel() -> None:
    try:
        from torch_otel import autostart
    except ImportError as error:
        sys.stderr.write(f"torch-otel: not importable from {sys.executable} ({error}); running without it.\n")
        return
    autostart.start()


_run_next_sitecustomize()
_start_torch_otel()
