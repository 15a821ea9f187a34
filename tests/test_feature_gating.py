"""Torch internals are detected by feature: a missing hook costs one warning and some attributes, never an error."""

from __future__ import annotations

import logging

import pytest
from inmemory import LogCapture, app_tracer, recompiling_workload
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from torch_state import preserved_torch_logging

import torch_otel
from torch_otel.capture.torch_hooks import FEATURES, supported_features
from torch_otel.config.settings import Settings


@pytest.fixture(autouse=True)
def clean_torch_logging():
    with preserved_torch_logging():
        yield


def test_all_features_are_present_on_the_tested_torch():
    assert supported_features() == {feature: True for feature in FEATURES}


def compile_with_warnings(while_instrumented=lambda: None) -> tuple[list[str], list]:
    """Instrument, run the recompiling workload in an application span, uninstrument; torch-otel's warnings and
    the torch.compile spans. ``while_instrumented`` runs before the workload, with the hooks installed."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    warnings = []
    handler = logging.Handler()
    handler.emit = warnings.append
    logging.getLogger("torch_otel").addHandler(handler)
    try:
        torch_otel.instrument(tracer_provider=tracer_provider, logger_provider=LogCapture().provider, settings=Settings())
        try:
            while_instrumented()
            with app_tracer().start_as_current_span("request"):
                recompiling_workload()
        finally:
            torch_otel.uninstrument()
    finally:
        logging.getLogger("torch_otel").removeHandler(handler)
    return [w.getMessage() for w in warnings], [s for s in exporter.get_finished_spans() if s.name == "torch.compile"]


def test_missing_hooks_degrade_to_fewer_attributes_with_one_warning(monkeypatch):
    # What a torch without these private functions looks like to torch-otel (deleting them would break torch).
    monkeypatch.setitem(FEATURES, "recompile reasons", ("torch._dynamo.convert_frame", "renamed_recompile_reasons"))
    monkeypatch.setitem(FEATURES, "compilation metrics", ("torch._dynamo.no_such_module", "log_compilation_event"))
    monkeypatch.setitem(FEATURES, "frame compiles", ("torch._dynamo.convert_frame", "no_such_function"))
    warnings, compiles = compile_with_warnings()
    assert len(warnings) == 1
    message = warnings[0]
    assert "recompile reasons" in message and "compilation metrics" in message and "frame compiles" in message
    assert len(compiles) == 4  # phases still become spans
    assert all("code.function.name" not in s.attributes for s in compiles)  # that came from the metrics hook
    assert not [e for s in compiles for e in s.events if e.name == "pytorch.recompile"]


def test_a_hooked_function_with_another_signature_is_a_missing_feature_with_one_warning(monkeypatch):
    # What a torch that changed these functions' parameters looks like: torch still works, the hooks stay off.
    from torch._dynamo import convert_frame
    from torch._dynamo.symbolic_convert import InstructionTranslatorBase

    original_break = InstructionTranslatorBase.log_graph_break
    original_reasons = convert_frame.get_and_maybe_log_recompilation_reasons

    def log_graph_break(self, options, reason, exc):  # "code_options" renamed
        return original_break(self, options, reason, exc)

    def get_and_maybe_log_recompilation_reasons(*args, **kwargs):  # a wrapper without functools.wraps
        return original_reasons(*args, **kwargs)

    monkeypatch.setattr(InstructionTranslatorBase, "log_graph_break", log_graph_break)
    monkeypatch.setattr(convert_frame, "get_and_maybe_log_recompilation_reasons", get_and_maybe_log_recompilation_reasons)
    assert supported_features() == {feature: feature not in ("graph breaks", "recompile reasons") for feature in FEATURES}

    def left_alone() -> None:
        assert InstructionTranslatorBase.__dict__["log_graph_break"] is log_graph_break
        assert convert_frame.get_and_maybe_log_recompilation_reasons is get_and_maybe_log_recompilation_reasons

    warnings, compiles = compile_with_warnings(left_alone)
    assert len(warnings) == 1
    message = warnings[0]
    assert "graph breaks (changed signature)" in message and "recompile reasons (changed signature)" in message
    assert len(compiles) == 4  # phases still become spans
    assert all("code.function.name" in s.attributes for s in compiles)  # the metrics hook still works
    events = {e.name for s in compiles for e in s.events}
    assert "pytorch.recompile" not in events and "pytorch.graph_break" not in events
    assert InstructionTranslatorBase.__dict__["log_graph_break"] is log_graph_break
    assert convert_frame.get_and_maybe_log_recompilation_reasons is get_and_maybe_log_recompilation_reasons
