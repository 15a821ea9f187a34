"""In-memory OpenTelemetry pipelines and small torch workloads shared by the unit tests."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import torch_otel
from torch_otel.config.settings import Settings


class LogCapture:
    def __init__(self) -> None:
        self.exporter = InMemoryLogRecordExporter()
        self.provider = LoggerProvider(resource=Resource.create({"service.name": "unit"}))
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))

    def records(self) -> list:
        torch_otel.flush(5)
        return list(self.exporter.get_finished_logs())

    def by_artifact(self, artifact: str) -> list:
        return [r for r in self.records() if (r.log_record.attributes or {}).get("pytorch.log.artifact") == artifact]


@contextmanager
def instrumented(capture: LogCapture, settings: Settings | None = None) -> Iterator[LogCapture]:
    torch_otel.instrument(logger_provider=capture.provider, settings=settings or Settings())
    try:
        yield capture
    finally:
        torch_otel.uninstrument()


def app_tracer():
    return TracerProvider().get_tracer("app")


def recompiling_workload(backend: str = "eager") -> None:
    """One compile, one graph break, then a recompile caused by a new input shape."""
    import torch

    def step(x):
        y = x * 2
        torch._dynamo.graph_break()
        return y + 1

    compiled = torch.compile(step, backend=backend, dynamic=False)
    compiled(torch.ones(4))
    compiled(torch.ones(8))
