"""The serving and training examples under `torch-otel run`, exporting compile spans over OTLP to a real
rotel-agent on loopback; asserts on the spans as they arrived."""

from __future__ import annotations

import re

import pytest

from e2e import ROOT, child_env, launcher_command, run_child

pytestmark = [pytest.mark.collector, pytest.mark.slow]

SERVING = ROOT / "examples" / "serving.py"
TRAINING = ROOT / "examples" / "training.py"
SERVICE = "torch-otel-wire"
PRINTED_IDS = re.compile(r"^(?:request|step) (?P<number>\d+): .*trace_id=(?P<trace_id>[0-9a-f]{32}) "
                         r"span_id=(?P<span_id>[0-9a-f]{16})$", re.MULTILINE)


def run_example(collector, otlp_sink, script, *args: str, roots: str, expected_roots: int):
    """Run an example under `torch-otel run` (no TORCH_LOGS: spans need none) and return (printed ids, spans)."""
    env = child_env(collector, TORCH_LOGS=None, OTEL_SERVICE_NAME=SERVICE)
    run = run_child(launcher_command("torch-otel run", script, "--backend", "aot_eager", *args), env)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = [match.groupdict() for match in PRINTED_IDS.finditer(run.stdout)]
    assert len(printed) == expected_roots, run.stdout
    assert "In Jaeger" in run.stdout

    def complete(sink):
        spans = sink.spans()
        ids = {s.span_id for s in spans}
        arrived = [s for s in spans if s.name == roots]
        whole = all(not s.parent_span_id or s.parent_span_id in ids for s in spans)
        return spans if len(arrived) == expected_roots and whole else None

    return printed, otlp_sink.wait_for(complete)


def children(spans, parent) -> list:
    return [s for s in spans if s.parent_span_id == parent.span_id and s.trace_id == parent.trace_id]


def test_serving_example_exports_compile_spans_under_request_spans(collector, otlp_sink):
    printed, spans = run_example(collector, otlp_sink, SERVING, "--batch-sizes", "8,8,16,8",
                                 roots="request", expected_roots=4)
    assert all(s.resource["service.name"] == SERVICE for s in spans)
    assert len({s.span_id for s in spans}) == len(spans)
    requests = {s.span_id: s for s in spans if s.name == "request"}
    ordered = [requests[p["span_id"]] for p in printed]
    assert [r.trace_id for r in ordered] == [p["trace_id"] for p in printed]
    assert [r.attributes["request.batch_size"] for r in ordered] == [8, 8, 16, 8]
    assert all(r.parent_span_id == "" for r in ordered)

    compile_spans = [s for s in spans if s.name == "torch.compile"]
    assert sorted(s.attributes["pytorch.compile.id"] for s in compile_spans) == ["0/0", "0/1"]
    by_id = {s.attributes["pytorch.compile.id"]: s for s in compile_spans}
    first, cached, new_batch_size, cached_again = ordered
    assert children(spans, first) == [by_id["0/0"]]
    assert children(spans, new_batch_size) == [by_id["0/1"]]
    assert not children(spans, cached) and not children(spans, cached_again)
    for compile_span in compile_spans:
        assert compile_span.scope_name == "torch._dynamo"
        assert compile_span.scope_version.startswith("2.")
        assert compile_span.attributes["pytorch.compile.phase"] == "dynamo"
        phases = {s.name for s in children(spans, compile_span)}
        assert "entire_frame_compile" in phases
        assert compile_span.start_time_unix_nano <= compile_span.end_time_unix_nano

    recompile = by_id["0/1"]
    assert "size mismatch at index 0. expected 8, actual 16" in recompile.attributes["pytorch.compile.recompile_reason"]
    (event,) = [attributes for name, attributes in new_batch_size.events if name == "pytorch.recompile"]
    (reason,) = event["pytorch.compile.recompile_reasons"]
    assert "size mismatch at index 0. expected 8, actual 16" in reason
    assert event["pytorch.compile.id"] == "0/1"
    assert [name for name, _ in recompile.events].count("pytorch.recompile") == 1
    assert not [name for r in (first, cached, cached_again) for name, _ in r.events]

    # The same recompile also arrived as a log record in the request's trace.
    record = otlp_sink.wait_for(lambda sink: [r for r in sink.log_records() if r.event_name == "pytorch.recompile"])[0]
    assert record.trace_id == new_batch_size.trace_id
    assert record.attributes["pytorch.compile.id"] == "0/1"
    assert record.resource["service.name"] == SERVICE


def test_training_example_exports_the_backward_compile_under_the_step(collector, otlp_sink):
    printed, spans = run_example(collector, otlp_sink, TRAINING, "--steps", "3", roots="train_step", expected_roots=3)
    assert all(s.resource["service.name"] == SERVICE for s in spans)
    steps = {s.span_id: s for s in spans if s.name == "train_step"}
    ordered = [steps[p["span_id"]] for p in printed]
    assert [s.attributes["train.step"] for s in ordered] == [0, 1, 2]

    (forward,) = [s for s in spans if s.name == "torch.compile"]
    (backward,) = [s for s in spans if s.name == "torch.compile.backward"]
    step_0 = ordered[0]
    assert forward.parent_span_id == step_0.span_id and forward.trace_id == step_0.trace_id
    assert backward.parent_span_id == step_0.span_id and backward.trace_id == step_0.trace_id
    assert backward.attributes["pytorch.compile.id"] == forward.attributes["pytorch.compile.id"]
    assert backward.attributes["pytorch.compile.phase"] == "entire_backward_compile"
    assert forward.end_time_unix_nano <= backward.start_time_unix_nano <= step_0.end_time_unix_nano
    assert [(trace_id, span_id) for trace_id, span_id, _ in backward.links] == [(forward.trace_id, forward.span_id)]
    assert backward.span_id != forward.span_id
    for later in ordered[1:]:
        assert not [s for s in children(spans, later) if s.name.startswith("torch.compile")]
