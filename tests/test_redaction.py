"""Redaction of absolute paths and code bodies before export, on real compiles."""

from __future__ import annotations

import logging

import pytest
import torch
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import torch_otel
from torch_otel.redaction import Redactor
from torch_otel.settings import Settings, SettingsError

from inmemory import LogCapture, recompiling_workload
from torch_state import preserved_torch_logging

HERE = __file__


@pytest.fixture(autouse=True)
def clean_torch_logging():
    with preserved_torch_logging():
        yield


def exported_text(settings: Settings) -> tuple[str, list]:
    capture = LogCapture()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    torch._logging.set_logs(dynamo=logging.INFO, recompiles=True, graph_breaks=True, graph_code=True)
    torch_otel.instrument(tracer_provider=tracer_provider, logger_provider=capture.provider, settings=settings)
    try:
        recompiling_workload()
        records = capture.records()
    finally:
        torch_otel.uninstrument()
    parts = []
    for readable in records:
        parts.append(str(readable.log_record.body))
        parts.extend(str(v) for v in (readable.log_record.attributes or {}).values())
    for span in spans.get_finished_spans():
        parts.extend(str(v) for v in span.attributes.values())
        parts.extend(str(v) for event in span.events for v in event.attributes.values())
        parts.append(span.status.description or "")
    return "\n".join(parts), records


def test_without_redaction_paths_and_code_are_exported():
    text, _ = exported_text(Settings())
    assert "/tests/inmemory.py" in text and "torch/_dynamo" in text
    assert "def forward" in text


@pytest.mark.parametrize("mode", ["hash", "remove"])
def test_paths_are_redacted_everywhere(mode):
    text, records = exported_text(Settings(redact_paths=mode))
    assert "/tests/inmemory.py" not in text and "/site-packages/" not in text
    assert "inmemory.py" in text  # the file name stays useful
    if mode == "hash":
        assert "<" in text and ">/inmemory.py" in text


def test_code_bodies_are_redacted():
    text, records = exported_text(Settings(redact_code=True))
    assert "def forward" not in text
    graph_code = [r.log_record for r in records if r.log_record.attributes.get("pytorch.log.artifact") == "graph_code"]
    assert graph_code and all(r.body.startswith("<code redacted: ") for r in graph_code)
    assert all(r.attributes["pytorch.log.redacted"] is True for r in graph_code)
    recompiles = [r for r in records if r.log_record.attributes.get("pytorch.log.artifact") == "recompiles"]
    assert recompiles and "size mismatch" in recompiles[0].log_record.body


def test_redactor_units():
    redactor = Redactor("remove")
    assert redactor.text('File "/a/b/c.py", line 3 and C:\\work\\x.py') == 'File "c.py", line 3 and x.py'
    assert redactor.path("relative/path.py") == "relative/path.py"
    assert Redactor("off").text("/a/b/c.py") == "/a/b/c.py"


def test_bad_mode_is_a_clear_error():
    with pytest.raises(SettingsError, match="TORCH_OTEL_REDACT_PATHS='everything'.*off, hash, remove"):
        Settings.from_env({"TORCH_OTEL_REDACT_PATHS": "everything"})
