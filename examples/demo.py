"""The Quick start demo: runs examples/serving.py under `torch-otel run` with nothing configured, so every signal
goes to the embedded default (a local OTLP JSON Lines file), then prints `torch-otel report` on that file and
writes its HTML timeline.

    python examples/demo.py [--backend inductor]
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="aot_eager", help="torch.compile backend for the demo (inductor is slower)")
    parser.add_argument("--out", default="demo-output", help="folder for the telemetry file and the HTML report")
    args = parser.parse_args()
    out = ROOT / args.out
    out.mkdir(exist_ok=True)
    for old in out.glob("*.jsonl"):
        old.unlink()
    telemetry = out / "torch-otel-demo.jsonl"
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(TORCH_LOGS="recompiles,graph_breaks", OTEL_SERVICE_NAME="torch-otel-demo", TORCH_OTEL_FILE=str(telemetry))
    torch_otel = str(Path(sys.executable).parent / "torch-otel")
    command = [torch_otel, "run", "--", sys.executable, str(ROOT / "examples" / "serving.py"), "--backend", args.backend]
    print(f"$ TORCH_LOGS={env['TORCH_LOGS']} torch-otel run -- python examples/serving.py --backend {args.backend}",
          flush=True)
    app = subprocess.run(command, env=env)
    if app.returncode != 0:
        return app.returncode
    html = out / "torch-otel-demo.html"
    print(f"\n$ torch-otel report {telemetry.relative_to(ROOT)} --html {html.relative_to(ROOT)}", flush=True)
    report = subprocess.run([torch_otel, "report", str(telemetry), "--html", str(html)])
    print(f"\nOpen {html} in a browser for the timeline. To send the same data to a collector instead, set "
          "OTEL_EXPORTER_OTLP_ENDPOINT (see collector-config/README.md).")
    return report.returncode


if __name__ == "__main__":
    sys.exit(main())
