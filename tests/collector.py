"""Run the real rotel-agent OTLP collector on loopback, forwarding OTLP/gRPC to a test sink."""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import socket
import subprocess
import threading
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

OTLP_PROTOCOLS = ("grpc", "http/protobuf")

# Defaults tuned for tests: no compression (readable on the wire), fast batching and retries.
DEFAULT_OPTIONS: dict[str, str | bool] = {
    "--exporter": "otlp",
    "--otlp-exporter-protocol": "grpc",
    "--otlp-exporter-compression": "none",
    "--batch-timeout": "50ms",
    "--otlp-exporter-retry-initial-backoff": "100ms",
    "--otlp-exporter-retry-max-backoff": "1s",
}

_live: set[RotelCollector] = set()


def agent_path() -> Path:
    """Path of the rotel-agent binary shipped inside the `rotel` wheel."""
    spec = importlib.util.find_spec("rotel")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'rotel' package is not installed (pip install 'torch-otel[test]')")
    for location in spec.submodule_search_locations:
        path = Path(location) / "rotel-agent"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise RuntimeError(f"rotel-agent binary not found in {list(spec.submodule_search_locations)}")


def free_port() -> int:
    """An ephemeral 127.0.0.1 TCP port that was free a moment ago (rotel cannot bind port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen, sig: signal.Signals = signal.SIGTERM, timeout: float = 5.0) -> int:
    """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class RotelCollector:
    """A foreground rotel-agent subprocess: OTLP gRPC+HTTP receivers in, OTLP/gRPC out to `sink_endpoint`."""

    def __init__(
        self,
        sink_endpoint: str,
        options: Mapping[str, str | bool | None] | None = None,
        workdir: Path | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        """`options` override DEFAULT_OPTIONS: value str -> '--flag value', True -> bare flag, None -> dropped."""
        self.sink_endpoint = sink_endpoint
        merged: dict[str, str | bool | None] = {**DEFAULT_OPTIONS, **(options or {})}
        self.options = {k: v for k, v in merged.items() if v is not None and v is not False}
        self.startup_timeout = startup_timeout
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="rotel-test-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.output_path = self.workdir / "rotel-agent.out"  # stdout+stderr, appended across restarts
        self.grpc_port = 0
        self.http_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    # -- endpoints -------------------------------------------------------------------------
    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def otel_env(self, protocol: str = "grpc") -> dict[str, str]:
        """OTEL_EXPORTER_OTLP_{ENDPOINT,PROTOCOL} pointing a child process at this collector."""
        if protocol not in OTLP_PROTOCOLS:
            raise ValueError(f"protocol must be one of {OTLP_PROTOCOLS}, got {protocol!r}")
        endpoint = self.grpc_endpoint if protocol == "grpc" else self.http_endpoint
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}

    def child_env(self, protocol: str = "grpc", base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) minus any OTEL_EXPORTER_OTLP_* settings, plus otel_env(protocol)."""
        env = {k: v for k, v in (os.environ if base is None else base).items()
               if not k.startswith("OTEL_EXPORTER_OTLP_")}
        return {**env, **self.otel_env(protocol)}

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        args = [str(agent_path()), "start",
                "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
                "--otlp-exporter-endpoint", self.sink_endpoint,
                "--pid-file", str(self.workdir / "rotel-agent.pid"),
                "--log-file", str(self.workdir / "rotel-agent.log")]
        for flag, value in self.options.items():
            args += [flag] if value is True else [flag, str(value)]
        return args

    def start(self) -> RotelCollector:
        """Start on fresh free ports (or the previous ones after a stop/kill) and wait until ready."""
        if self.running():
            raise RuntimeError("collector already running")
        reuse_ports = bool(self.grpc_port)
        for _ in range(1 if reuse_ports else 3):
            if not reuse_ports:
                self.grpc_port, self.http_port = free_port(), free_port()
                while self.http_port == self.grpc_port:
                    self.http_port = free_port()
            if self._spawn_and_wait():
                return self
            if "Address already in use" not in self.log_text():
                break
        rc = self.proc.returncode if self.proc else None
        why = f"exited with rc={rc}" if rc is not None else f"not ready within {self.startup_timeout}s"
        raise RuntimeError(
            f"rotel-agent failed to start on grpc={self.grpc_port} http={self.http_port}: {why}\n"
            f"command: {' '.join(self.command())}\n--- collector output ---\n{self.log_text()}"
        )

    def _spawn_and_wait(self) -> bool:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
        env["NO_COLOR"] = "1"
        t0 = time.monotonic()
        with open(self.output_path, "ab") as out:
            out.write(f"=== starting rotel-agent grpc={self.grpc_port} http={self.http_port}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        _live.add(self)
        deadline = t0 + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if accepts(self.grpc_port) and accepts(self.http_port) and self.proc.poll() is None:
                self.startup_seconds = time.monotonic() - t0
                return True
            time.sleep(0.005)
        self.kill()
        return False

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (graceful: rotel flushes its batches), escalating to SIGKILL. Returns the exit code."""
        return self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL, simulating a crash (buffered telemetry is lost). Returns the exit code."""
        return self._terminate(signal.SIGKILL, 5.0)

    def _terminate(self, sig: signal.Signals, timeout: float) -> int | None:
        proc = self.proc
        _live.discard(self)
        if proc is None:
            return None
        return stop_process(proc, sig, timeout)

    def restart(self) -> RotelCollector:
        """Graceful stop (if still running) and start again on the same ports."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RotelCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_text(self) -> str:
        """Everything rotel-agent printed (its --log-file too, which it only writes when daemonized)."""
        parts = [p.read_text(errors="replace") for p in (self.output_path, self.workdir / "rotel-agent.log")
                 if p.exists()]
        return "\n".join(parts)


@atexit.register
def _kill_leftovers() -> None:
    for collector in list(_live):
        collector.kill()


class TcpBlackhole:
    """127.0.0.1 listener that accepts connections and never reads or answers (a hung collector)."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(128)
        self.port = int(self._server.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self._closed = True
        self._server.close()
        for connection in self.accepted:
            connection.close()
