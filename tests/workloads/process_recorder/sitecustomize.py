"""Put on PYTHONPATH by the process tests: every Python process of the run that reaches it writes a line to
$TORCH_OTEL_TEST_PROCESS_LOG at start (its argv, and whether torch-otel's bootstrap loaded it) and at exit (which
torch_otel modules it had loaded)."""

import atexit
import json
import os
import sys

_LOG = os.environ.get("TORCH_OTEL_TEST_PROCESS_LOG")


def _write(**fields):
    line = json.dumps({"pid": os.getpid(), **fields}) + "\n"
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


if _LOG:
    _outer = sys.modules.get("sitecustomize")
    _write(event="start", argv=sys.argv, main=getattr(sys.modules.get("__main__"), "__file__", None),
           bootstrap="torch_otel" in (getattr(_outer, "__file__", None) or ""))
    atexit.register(lambda: _write(event="exit",
                                   torch_otel=sorted(m for m in sys.modules if m.startswith("torch_otel"))))
