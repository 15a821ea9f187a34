"""The Quick start demo: runs examples/serving.py under `torch-otel run` with nothing configured, so every signal
goes to the embedded default (a local OTLP JSON Lines file), then prints `torch-otel report` on that file, writes
its HTML timeline, and ends with what it wrote and where to look: the file and the HTML first, then sending the
same data to Jaeger or Grafana (collector-config/) as the next step.

    python examples/demo.py [--backend inductor] [--out FOLDER]
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# serving.py ends with a paragraph on finding its traces in Jaeger; the demo sent nothing to Jaeger, so that
# paragraph is held back and shown at the end, as the next step.
JAEGER_PARAGRAPH = "In Jaeger:"


def shown(path: Path) -> str:
    """``path`` as typed from the repository root when it lies under it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_app(command: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run the example, passing its output through as it comes, except its Jaeger paragraph, which is returned."""
    env = {**env, "PYTHONUNBUFFERED": "1"}
    held: list[str] = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, errors="replace") as app:
        assert app.stdout is not None
        for line in app.stdout:
            if held or line.startswith(JAEGER_PARAGRAPH):
                held.append(line.rstrip("\n"))
            else:
                sys.stdout.write(line)
                sys.stdout.flush()
    return app.returncode, held


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--backend", default="aot_eager", help="torch.compile backend for the demo (inductor is slower)"
    )
    parser.add_argument("--out", default="demo-output", help="folder for the telemetry file and the HTML report")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jsonl"):
        old.unlink()
    telemetry = out / "torch-otel-demo.jsonl"
    html = out / "torch-otel-demo.html"
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(
        TORCH_LOGS="recompiles,graph_breaks", OTEL_SERVICE_NAME="torch-otel-demo", TORCH_OTEL_FILE=str(telemetry)
    )
    bin_dir = Path(sys.executable).parent
    torch_otel = str(bin_dir / "torch-otel")
    command = [
        torch_otel,
        "run",
        "--",
        sys.executable,
        str(ROOT / "examples" / "serving.py"),
        "--backend",
        args.backend,
    ]
    print(
        f"$ TORCH_LOGS={env['TORCH_LOGS']} torch-otel run -- python examples/serving.py --backend {args.backend}",
        flush=True,
    )
    code, jaeger = run_app(command, env)
    if code != 0:
        return code
    print(f"\n$ torch-otel report {shown(telemetry)} --html {shown(html)}", flush=True)
    report = subprocess.run([torch_otel, "report", str(telemetry), "--html", str(html)])
    if report.returncode != 0:
        return report.returncode
    found = shutil.which("torch-otel")
    on_path = found is not None and Path(found).resolve() == Path(torch_otel).resolve()
    venv_note = (
        ""
        if on_path
        else (
            f"\n  (`torch-otel` is in {shown(bin_dir)}, not on PATH: run `. {shown(bin_dir / 'activate')}` first, "
            f"or call {shown(bin_dir / 'torch-otel')})"
        )
    )
    print(
        "\nWhat the demo did: no collector was configured, so `torch-otel run` wrote every span, log record and"
        "\nmetric of the run to a local file; nothing was sent anywhere."
        f"\n  {shown(telemetry)}  the telemetry (OTLP JSON Lines); summarise it again with"
        f"\n      torch-otel report {shown(telemetry)}"
        f"\n  {shown(html)}   its HTML timeline: open it in a browser"
        f"{venv_note}"
        "\n\nNext step: see the same data in Jaeger or Grafana (Tempo, Loki, Prometheus) instead of a file. Start the"
        "\nstack in collector-config/ (`docker compose up -d` there; see collector-config/README.md), then rerun with"
        "\nOTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317: Jaeger is at http://localhost:16686, Grafana at"
        "\nhttp://localhost:3000.",
        flush=True,
    )
    if jaeger:
        print("\n".join(["", *jaeger]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
