"""Real torch.compile runs under each entry point, exporting over OTLP to a real rotel-agent on loopback."""

from __future__ import annotations

import time

import pytest

from e2e import WORKLOAD, child_env, fingerprint, launcher_command, run_child

pytestmark = [pytest.mark.collector, pytest.mark.slow]
COMPILE_ARTIFACTS = ("recompiles", "graph_breaks", "guards")


def collect(collector, otlp_sink, launcher: str, protocol: str = "grpc", **env: str):
    run = run_child(launcher_command(launcher, WORKLOAD), child_env(collector, protocol, **env))
    assert run.returncode == 0, run.stderr[-3000:]
    otlp_sink.wait_for(lambda s: any(r.event_name == "pytorch.artifact.recompiles" for r in s.log_records()))
    return run, settled_log_records(otlp_sink)


def settled_log_records(sink, quiet: float = 0.6, timeout: float = 15.0):
    """The records once the collector has stopped forwarding more (it batches, so they arrive in several parts)."""
    deadline = time.monotonic() + timeout
    records = sink.log_records()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        latest = sink.log_records()
        if len(latest) == len(records):
            return latest
        records = latest
    return records


@pytest.mark.parametrize("protocol, fast_path", [("grpc", "on"), ("http/protobuf", "on"), ("grpc", "off")])
def test_torch_otel_run_exports_torch_logs_to_a_real_collector(collector, otlp_sink, protocol, fast_path):
    run, records = collect(collector, otlp_sink, "torch-otel run", protocol, TORCH_OTEL_FAST_PATH=fast_path)
    requests = run.requests()
    assert len(requests) == 3

    events = {r.event_name for r in records}
    assert {f"pytorch.artifact.{a}" for a in COMPILE_ARTIFACTS} <= events
    assert all(r.resource["service.name"] == "torch-otel-e2e" for r in records)
    assert all(r.resource["pytorch.version"].startswith("2.") for r in records)
    assert all("__" not in r.scope_name and r.scope_name.startswith("torch") for r in records)
    (recompile,) = [r for r in records if r.attributes.get("pytorch.compile.id") == "0/1"
                    and r.event_name == "pytorch.artifact.recompiles"]
    assert recompile.scope_name == "torch._dynamo"
    assert recompile.attributes["pytorch.log.component"] == "dynamo"
    assert "size mismatch at index 0. expected 4, actual 8" in recompile.body

    # Compile ids: the same (compile id, artifact) pairs torch printed on stderr, and none missing.
    artifact_records = [r for r in records if r.attributes.get("pytorch.log.artifact") in COMPILE_ARTIFACTS]
    assert all("pytorch.compile.id" in r.attributes for r in artifact_records)
    exported = {(r.attributes["pytorch.compile.id"], r.attributes["pytorch.log.artifact"]) for r in artifact_records}
    printed = {pair for pair in run.stderr_artifacts() if pair[1] in COMPILE_ARTIFACTS}
    assert exported == printed and printed

    # Trace context: compile-time records sit inside the request that triggered the compile (in its
    # torch.compile span or one of the phase spans below it).
    spans = otlp_sink.wait_for(complete_trees)
    assert recompile.trace_id == requests[2]["trace_id"]
    assert requests[2]["span_id"] in ancestors(spans, recompile.span_id)
    first_compile = [r for r in artifact_records if r.attributes["pytorch.compile.id"].startswith("0/0")]
    assert first_compile
    for record in first_compile:
        assert record.trace_id == requests[0]["trace_id"]
        names = {s.span_id: s.name for s in spans}
        chain = [names.get(i) for i in ancestors(spans, record.span_id)]
        assert requests[0]["span_id"] in ancestors(spans, record.span_id), (chain, record.body[:200], record.attributes)


def complete_trees(sink):
    """All spans, once three request spans arrived and every parent referenced has arrived too."""
    spans = sink.spans()
    ids = {s.span_id for s in spans}
    requests = [s for s in spans if s.name == "request"]
    return spans if len(requests) == 3 and all(not s.parent_span_id or s.parent_span_id in ids for s in spans) else None


def ancestors(spans, span_id: str) -> list[str]:
    """span_id and the ids of every span above it."""
    parents = {s.span_id: s.parent_span_id for s in spans}
    chain = [span_id]
    while parents.get(chain[-1]):
        chain.append(parents[chain[-1]])
    return chain


@pytest.mark.parametrize("launcher", ["opentelemetry-instrument", "instrument()"])
def test_other_entry_points_produce_the_same_records(make_collector, otlp_sink, launcher):
    reference, records = collect(make_collector(), otlp_sink, "torch-otel run")
    expected = fingerprint(records)
    otlp_sink.clear()
    run, records = collect(make_collector(), otlp_sink, launcher)
    assert fingerprint(records) == expected
    requests = run.requests()
    recompiles = [r for r in records if r.event_name == "pytorch.artifact.recompiles"]
    assert len(recompiles) == 2 and all(r.trace_id == requests[2]["trace_id"] for r in recompiles)
