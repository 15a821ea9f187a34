"""Shutting down the SDK torch-otel built: the bridge's drain comes before the log pipeline closes, and a drain
stuck behind a log export in retries cannot take the traces' and metrics' time away."""

from __future__ import annotations

import threading
import time

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from torch_otel.config.export_config import export_plan
from torch_otel.exporters.sdk_setup import Providers


class RecordingMetricExporter(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                self.names += [metric.name for metric in scope_metrics.metrics]
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def sdk() -> tuple[Providers, InMemorySpanExporter, InMemoryLogRecordExporter, RecordingMetricExporter]:
    spans, logs, metrics = InMemorySpanExporter(), InMemoryLogRecordExporter(), RecordingMetricExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    logger_provider = LoggerProvider(shutdown_on_exit=False)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(logs))
    reader = PeriodicExportingMetricReader(metrics, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    plan = export_plan({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317"})
    providers = Providers(tracer_provider, logger_provider, meter_provider, ("tracer", "logger", "meter"), plan,
                          Resource.create())
    return providers, spans, logs, metrics


def test_a_stuck_log_drain_leaves_traces_and_metrics_their_shutdown():
    providers, spans, _, metrics = sdk()
    providers.tracer_provider.get_tracer("t").start_span("compile").end()
    providers.meter_provider.get_meter("m").create_counter("torch_otel.records.dropped").add(3)
    export_finished = threading.Event()  # a drain waiting for the export thread, which is stuck in retries

    started = time.monotonic()
    unfinished = providers.shutdown(1.0, drain_logs=lambda: export_finished.wait(30))
    elapsed = time.monotonic() - started
    export_finished.set()

    assert unfinished == {"logs"} and elapsed < 2.5, f"shutdown took {elapsed:.1f}s for a 1s budget"
    assert [span.name for span in spans.get_finished_spans()] == ["compile"]
    assert "torch_otel.records.dropped" in metrics.names


def test_what_the_drain_hands_over_is_exported_before_the_log_pipeline_closes():
    providers, _, logs, _ = sdk()
    logger = providers.logger_provider.get_logger("torch._dynamo")

    def drain() -> None:
        time.sleep(0.2)  # the export thread finishing its batch first
        logger.emit(body="the last record torch logged")

    assert providers.shutdown(5.0, drain_logs=drain) == set()
    assert [record.log_record.body for record in logs.get_finished_logs()] == ["the last record torch logged"]
