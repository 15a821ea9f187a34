"""`import torch_otel` is cheap: it loads neither the OpenTelemetry SDK, nor protobuf, gRPC, torch or the fast path's
encoder; those load when `torch-otel run` sets up providers, or on first use of the public names."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("opentelemetry.sdk", "google.protobuf", "grpc", "torch", "torch_otel.exporters.otlp_wire")


def loaded_after(statement: str) -> list[str]:
    probe = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    modules = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                        text=True).stdout)
    return [m for m in modules if any(m == heavy or m.startswith(heavy + ".") for heavy in HEAVY)]


def test_import_torch_otel_loads_nothing_heavy():
    assert loaded_after("import torch_otel; torch_otel.__version__") == []


def test_the_command_line_checks_settings_without_the_sdk():
    assert loaded_after("import torch_otel.tools.cli") == []
