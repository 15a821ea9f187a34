"""The Quick start demo: starts a real OTLP collector (rotel-agent) on loopback, runs examples/recompiles.py
under `torch-otel run` with TORCH_LOGS set, and prints the spans and events the collector received."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from rotel.agent import Agent

ROOT = Path(__file__).resolve().parents[1]
INTERESTING = ("Name", "EventName", "Body", "pytorch.compile.id", "pytorch.compile.recompile_reason", "service.name")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    grpc_port, http_port = free_port(), free_port()
    collector = subprocess.Popen(
        [str(Agent.agent_path), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
         "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--exporter", "blackhole",
         "--debug-log", "traces", "--debug-log", "logs", "--debug-log-verbosity", "detailed"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "NO_COLOR": "1"},
    )
    time.sleep(0.5)
    env = {
        **os.environ,
        "TORCH_LOGS": "recompiles,graph_breaks",
        "OTEL_SERVICE_NAME": "torch-otel-demo",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc_port}",
        "OTEL_METRICS_EXPORTER": "none",
    }
    bin_dir = Path(sys.executable).parent
    print(f"$ TORCH_LOGS={env['TORCH_LOGS']} torch-otel run -- python examples/recompiles.py")
    app = subprocess.run([str(bin_dir / "torch-otel"), "run", "--", sys.executable, str(ROOT / "examples/recompiles.py")],
                         env=env)
    time.sleep(1.0)
    collector.terminate()
    output, _ = collector.communicate(timeout=10)
    print("\nWhat the collector received (rotel-agent --debug-log, filtered):")
    for line in output.splitlines():
        if line.strip().lstrip("-> ").startswith(INTERESTING):
            print("  " + line.strip())
    return app.returncode


if __name__ == "__main__":
    sys.exit(main())
