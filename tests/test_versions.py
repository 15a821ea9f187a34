"""What differs between the torch and OpenTelemetry releases torch-otel supports: registry snapshots per torch
release (compared by release, never by build tag), and the fast log path falling back to the SDK pipeline where
the installed OTLP exporter cannot send pre-encoded bytes. `./dev matrix` runs the whole suite on each release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import pytest
import torch

from torch_otel.capture import registry_snapshots
from torch_otel.capture.registry_snapshots import release
from torch_otel.capture.torch_logs import parse_torch_logs, snapshot_registry
from torch_otel.exporters import otlp_wire

from e2e import ROOT, WORKLOAD, child_env, launcher_command, run_child

# (aliases, artifacts, off by default) as read off each release's own registry; 2.13's are in DESIGN.md.
KNOWN_COUNTS = {(2, 13): (18, 51, 30), (2, 14): (19, 54, 33), (2, 15): (19, 54, 33)}


def test_versions_compare_by_release_not_by_build_tag():
    assert release("2.13.0+cpu") == release("2.13.0+cu130") == release("2.13.0") == (2, 13, 0)
    assert release("2.15.0a0+git1234") == (2, 15, 0)
    assert release("2.10.0rc1") == (2, 10, 0) < release("2.13.0")
    assert snapshot_registry("2.13.0+cu130") == snapshot_registry("2.13.0+cpu")


def test_every_supported_release_has_a_snapshot_and_others_take_the_nearest():
    shipped = {r[:2] for r in registry_snapshots.available()}
    assert shipped == set(KNOWN_COUNTS)
    for minor, counts in KNOWN_COUNTS.items():
        snapshot = snapshot_registry(".".join(map(str, minor)) + ".0")
        assert release(snapshot.torch_version)[:2] == minor
        assert (len(snapshot.aliases), len(snapshot.artifacts), len(snapshot.off_by_default)) == counts
    newest, oldest = max(KNOWN_COUNTS), min(KNOWN_COUNTS)
    assert release(snapshot_registry("2.99.0").torch_version)[:2] == newest
    assert release(snapshot_registry("2.4.1").torch_version)[:2] == oldest


def test_the_running_torch_has_a_snapshot_equal_to_its_live_registry():
    """In a fresh interpreter, so that no module a test named in TORCH_LOGS has registered itself as an alias."""
    script = textwrap.dedent(
        """
        import json
        from torch_otel.capture.torch_logs import live_registry, snapshot_registry
        live, snap = live_registry(), snapshot_registry()
        fields = ("aliases", "artifacts", "off_by_default", "descriptions")
        print(json.dumps({"differs": [f for f in fields if getattr(live, f) != getattr(snap, f)],
                          "live": live.torch_version, "snapshot": snap.torch_version}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["differs"] == [], f"regenerate with `python -m torch_otel.capture.registry_snapshots` ({result})"
    assert release(result["live"]) == release(result["snapshot"]) == release(torch.__version__)
    assert release(torch.__version__)[:2] in KNOWN_COUNTS


@pytest.mark.parametrize("value", ["+dynamo,guards", "all", "-inductor, output_code", "cache,recompiles"])
def test_the_snapshot_parses_like_the_live_registry(value: str):
    from torch_otel.capture.torch_logs import live_registry

    live = live_registry()
    assert live is not None
    snapshot = replace(snapshot_registry(), torch_version=live.torch_version)
    assert parse_torch_logs(value, snapshot) == parse_torch_logs(value, live)


# -- the fast log path on exporters that cannot send bytes ------------------------------------------------------


def _exporter_release(distribution: str) -> tuple[int, ...]:
    return release(metadata.version(distribution))


def test_fast_path_takes_the_exporters_that_can_send_bytes_and_only_those():
    """Read off the installed releases: HTTP from 1.45, gRPC from 1.42 (the OTel floor, 1.39, has neither)."""
    http = _exporter_release("opentelemetry-exporter-otlp-proto-http") >= (1, 45)
    grpc = _exporter_release("opentelemetry-exporter-otlp-proto-grpc") >= (1, 42)
    assert (otlp_wire.http_log_exporter_for_bytes() is not None) == http
    assert (otlp_wire.grpc_log_exporter_for_bytes() is not None) == grpc


def test_fast_path_declines_an_http_exporter_without_a_bytes_client(monkeypatch):
    from opentelemetry.exporter.otlp.proto.http import _log_exporter

    real = _log_exporter.OTLPLogExporter
    if otlp_wire.http_log_exporter_for_bytes() is None:
        pytest.skip("this exporter release already lacks it (see the test above)")

    class LikeRelease144(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            del self._client

    monkeypatch.setattr(_log_exporter, "OTLPLogExporter", LikeRelease144)
    assert otlp_wire.http_log_exporter_for_bytes() is None


def test_fast_path_declines_a_grpc_exporter_without_the_channel_hook(monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin

    if otlp_wire.grpc_log_exporter_for_bytes() is None:
        pytest.skip("this exporter release already lacks it (see the test above)")
    monkeypatch.delattr(OTLPExporterMixin, "_initialize_channel_and_stub")  # 1.39 builds its channel inline
    assert otlp_wire.grpc_log_exporter_for_bytes() is None


@pytest.mark.slow
@pytest.mark.collector
def test_records_take_the_sdk_path_over_http_when_the_exporter_cannot_send_bytes(collector, otlp_sink):
    """The 1.44 shape, through `torch-otel run` to a real collector: nothing is lost, nothing is printed."""
    shim = ROOT / "tests" / "workloads" / "exporter_1_44"
    env = child_env(collector, "http/protobuf", TORCH_OTEL_FAST_PATH="on", PYTHONPATH=str(shim))
    run = run_child(launcher_command("torch-otel run", WORKLOAD), env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "lost" not in run.stderr
    records = otlp_sink.wait_for(
        lambda s: [r for r in s.log_records() if r.event_name == "pytorch.artifact.recompiles"] or None
    )
    assert any("expected 4, actual 8" in r.body for r in records)
    printed = {pair for pair in run.stderr_artifacts() if pair[1] == "recompiles"}
    assert {(r.attributes["pytorch.compile.id"], "recompiles") for r in records} == printed


def test_the_shim_is_only_a_test_helper():
    assert not (Path(otlp_wire.__file__).parent / "sitecustomize.py").exists()
