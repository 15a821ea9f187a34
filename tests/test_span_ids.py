"""Dynamo restores Python's global random state after each frame compile; span ids must stay unique anyway."""

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inmemory import LogCapture, recompiling_workload
from torch_state import preserved_torch_logging
from torch_otel.config.settings import Settings


@pytest.fixture(autouse=True)
def clean_torch_logging():
    with preserved_torch_logging():
        yield


def test_span_ids_are_unique_across_compiles_and_app_spans():
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    import torch_otel

    torch_otel.instrument(tracer_provider=tracer_provider, logger_provider=LogCapture().provider, settings=Settings())
    try:
        app = tracer_provider.get_tracer("app")
        for _ in range(2):
            with app.start_as_current_span("request"):
                recompiling_workload()
    finally:
        torch_otel.uninstrument()
    spans = exporter.get_finished_spans()
    assert len([s for s in spans if s.name == "torch.compile"]) >= 4
    span_ids = [s.context.span_id for s in spans]
    assert len(span_ids) == len(set(span_ids))
