"""A real rotel-agent OTLP collector on loopback that accepts everything and discards it (``--exporter blackhole``).

The collector is always killed: on ``stop``/context exit, at interpreter exit, and (on Linux) by the kernel if the
benchmark process itself dies, via ``PR_SET_PDEATHSIG``.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import tempfile
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from collector import TcpBlackhole, accepts, free_port, stop_process  # noqa: E402,F401 - the tests' loopback helpers, shared

_PR_SET_PDEATHSIG = 1


def agent_path() -> str:
    """The rotel-agent binary shipped in the ``rotel`` wheel."""
    from rotel.agent import Agent

    return str(Agent.agent_path)


def _collector_env() -> dict[str, str]:
    """The caller's environment without ROTEL_* settings (which would override the command line)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROTEL_")}
    env["NO_COLOR"] = "1"
    return env


def die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGKILL the collector when the benchmark process exits, however it exits."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # noqa: BLE001 - not Linux: atexit and the context manager still apply
        pass


class BlackholeCollector:
    """``with BlackholeCollector() as c: ... c.grpc_endpoint``."""

    def __init__(self, startup_timeout: float = 20.0) -> None:
        self.startup_timeout = startup_timeout
        self.grpc_port = 0
        self.http_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="torch-otel-bench-rotel-")
        self.output = Path(self._tmp.name) / "rotel-agent.out"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        return [
            agent_path(), "start",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
            "--exporter", "blackhole",
        ]

    def start(self) -> BlackholeCollector:
        for _ in range(3):  # a "free" port can be taken between probing and binding
            self.grpc_port, self.http_port = free_port(), free_port()
            if self.grpc_port != self.http_port and self._spawn_and_wait():
                atexit.register(self.stop)
                return self
            self.stop()
        raise RuntimeError(f"rotel-agent did not start: {' '.join(self.command())}\n{self.log_text()}")

    def _spawn_and_wait(self) -> bool:
        with open(self.output, "ab") as out:
            self._proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=_collector_env(), preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if accepts(self.grpc_port) and accepts(self.http_port):
                return True
            time.sleep(0.01)
        return False

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)

    def log_text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def close(self) -> None:
        self.stop()
        atexit.unregister(self.stop)
        self._tmp.cleanup()

    def __enter__(self) -> BlackholeCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
