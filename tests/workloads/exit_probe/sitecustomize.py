"""Test probe: put this directory on PYTHONPATH of a `torch-otel run` child to learn when its atexit work ended.

torch-otel's bootstrap runs any other sitecustomize *before* it starts torch-otel, so the handler registered
here is registered before torch-otel's and therefore (atexit is last-in, first-out) runs after torch-otel's exit
flush. It writes ``torch-otel-test-probe: atexit-done <time.time()>`` to stderr: the time the interpreter starts
tearing itself down, which lets a test tell torch-otel's shutdown cost from the interpreter's own teardown.
"""

import atexit
import sys
import time


def _atexit_done() -> None:
    sys.stderr.write(f"torch-otel-test-probe: atexit-done {time.time():.6f}\n")
    sys.stderr.flush()


atexit.register(_atexit_done)
