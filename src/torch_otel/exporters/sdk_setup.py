"""Builds the global tracer, logger and meter providers from the standard OTEL_* variables."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import import_module, metadata
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter, SpanExportResult

from torch_otel import catalog
from torch_otel.config.export_config import ExportPlan, PlannedExporter, export_plan, has_no_sdk, load_exporter_class
from torch_otel.config.settings import Settings
from torch_otel.exporters.delivery import LEDGER, Tally
from torch_otel.exporters.file_export import (
    JsonLinesFile,
    OtlpJsonLogExporter,
    OtlpJsonMetricExporter,
    OtlpJsonSpanExporter,
)
from torch_otel.exporters.fork_safety import ForkSafeExporter
from torch_otel.exporters.log_batching import ByteBudgetLogExporter
from torch_otel.exporters.otlp_wire import (
    LogEncoder,
    WireLogSink,
    grpc_log_exporter_for_bytes,
    http_log_exporter_for_bytes,
)
from torch_otel.signals.ids import PRIVATE_IDS

_RANK_VARIABLES = {
    "RANK": catalog.RESOURCE_RANK,
    "WORLD_SIZE": catalog.RESOURCE_WORLD_SIZE,
    "LOCAL_RANK": catalog.RESOURCE_LOCAL_RANK,
}

_log = logging.getLogger("torch_otel")


_PROCESS_PID = "process.pid"
_SERVICE_INSTANCE_ID = "service.instance.id"


def build_resource(environ: Mapping[str, str] | None = None) -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, plus the torch version, torchrun's rank variables, and the
    process's identity: ``process.pid`` and a random ``service.instance.id`` (the SDK's own where it makes one).
    Keys set in OTEL_RESOURCE_ATTRIBUTES win over the identity; see ``Providers.renew_after_fork`` for a child."""
    environ = os.environ if environ is None else environ
    attributes: dict[str, Any] = {}
    try:
        attributes[catalog.RESOURCE_TORCH_VERSION] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pass
    for variable, key in _RANK_VARIABLES.items():
        value = environ.get(variable, "")
        if value.isascii() and value.isdigit():  # torchrun's own values; anything else is not a rank
            attributes[key] = int(value)
    return Resource(_new_identity()).merge(Resource.create(attributes))


def _new_identity() -> dict[str, Any]:
    return {_PROCESS_PID: os.getpid(), _SERVICE_INSTANCE_ID: str(uuid.uuid4())}


def renewed_identity(resource: Resource) -> Resource:
    """``resource`` as this process's own after a fork: a new ``service.instance.id`` and this ``process.pid``,
    except for keys the user set in OTEL_RESOURCE_ATTRIBUTES."""
    user_set = OTELResourceDetector().detect().attributes
    return resource.merge(Resource({key: value for key, value in _new_identity().items() if key not in user_set}))


def _set_resource(provider: Any, resource: Resource) -> None:
    """Give an SDK tracer or logger provider, and the tracers or loggers it has handed out, ``resource``."""
    update = getattr(provider, "_update_resource", None)
    if update is not None:
        update(resource)  # merged over the old one, whose keys ``resource`` all has
        return
    # SDK releases before fork-aware resources (1.39) have no way to update one; their tracers and loggers all
    # share the provider's Resource object, so it is changed in place (this process's copy only).
    provider.resource._attributes = resource._attributes


_OTLP_EXPORTER_CLASSES = {
    "traces": ("trace_exporter", "OTLPSpanExporter"),
    "logs": ("_log_exporter", "OTLPLogExporter"),
    "metrics": ("metric_exporter", "OTLPMetricExporter"),
}


def _otlp_exporter(signal: str, protocol: str) -> Any:
    transport = "grpc" if protocol == "grpc" else "http"
    module, name = _OTLP_EXPORTER_CLASSES[signal]
    return getattr(import_module(f"opentelemetry.exporter.otlp.proto.{transport}.{module}"), name)()


_FILE_EXPORTERS = {"traces": OtlpJsonSpanExporter, "logs": OtlpJsonLogExporter, "metrics": OtlpJsonMetricExporter}
_CONSOLE_EXPORTERS = {"traces": ConsoleSpanExporter, "logs": ConsoleLogRecordExporter, "metrics": ConsoleMetricExporter}


def _exporter(planned: PlannedExporter, signal: str, file_sink: JsonLinesFile | None = None) -> Any:
    """Build one planned exporter: the file, console and OTLP ones directly (the same classes the SDK's entry
    points name), any other by its entry point, with no arguments, as the SDK builds it."""
    kind = planned.kind
    if kind == "file" and file_sink is not None:
        return _FILE_EXPORTERS[signal](file_sink)
    if kind == "console":
        return _CONSOLE_EXPORTERS[signal]()
    if kind == "entry_point":
        return load_exporter_class(signal, planned.entry_point)()
    return _otlp_exporter(signal, planned.protocol or "grpc")


def _only_otlp(plan: ExportPlan, signal: str) -> PlannedExporter | None:
    """The signal's exporter if it has exactly one and that one is OTLP (what the fast log path replaces)."""
    exporters = plan.exporters[signal]
    return exporters[0] if len(exporters) == 1 and exporters[0].kind == "otlp" else None


def run_bounded(
    targets: Mapping[str, Callable[[], Any]], seconds: float, on_overrun: Callable[[], Any] | None = None
) -> set[str]:
    """Run the callables at once on daemon threads; the names of those still running after ``seconds``. A daemon
    left running cannot hold the process at exit. If some are still running when a tenth of the time (at most
    0.5 s) is left, ``on_overrun`` is called to hurry them."""
    threads = {
        name: threading.Thread(target=target, daemon=True, name=f"torch-otel-shutdown-{name}")
        for name, target in targets.items()
    }
    deadline = time.monotonic() + seconds
    for thread in threads.values():
        thread.start()

    def join_until(until: float) -> bool:
        for thread in threads.values():
            thread.join(max(0.0, until - time.monotonic()))
        return any(thread.is_alive() for thread in threads.values())

    if join_until(deadline - min(0.5, seconds / 10)) and on_overrun is not None:
        on_overrun()
    join_until(deadline)
    return {name for name, thread in threads.items() if thread.is_alive()}


def _wire_log_sink(planned: PlannedExporter, resource: Resource, settings: Settings) -> WireLogSink | None:
    """torch-otel's fast log path: its own encoder, the SDK's OTLP transport; None where the installed exporter
    cannot send pre-encoded bytes, so that records take the SDK's own pipeline instead of being lost."""
    exporter = grpc_log_exporter_for_bytes() if planned.protocol == "grpc" else http_log_exporter_for_bytes()
    if exporter is None:
        _log.debug(
            "torch-otel: this OTLP %s log exporter cannot send pre-encoded bytes; using the SDK path", planned.protocol
        )
        return None
    return WireLogSink(exporter, _log_encoder(resource), settings.max_batch_bytes, LEDGER.logs)


def _log_encoder(resource: Resource) -> LogEncoder:
    version = resource.attributes.get(catalog.RESOURCE_TORCH_VERSION)
    return LogEncoder(dict(resource.attributes), None if version is None else str(version))


def _sdk_log_queue_size(settings: Settings) -> int:
    """Large enough for what the bridge hands over in one go, and never below the SDK's batch size."""
    raw_batch = os.environ.get("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "")
    batch = int(raw_batch) if raw_batch.isascii() and raw_batch.isdigit() else 512
    return max(settings.queue_size, 2048, batch)


class CountingSpanProcessor(SpanProcessor):
    """Put before the batch processor: every sampled span that ends is accepted into the traces tally."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    def on_end(self, span: Any) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self._tally.accept()


class CountingSpanExporter(ForkSafeExporter, SpanExporter):
    """Settles every span export request in the traces tally."""

    def __init__(self, build: Callable[[], SpanExporter], tally: Tally) -> None:
        super().__init__(build)
        self._tally = tally

    def export(self, spans: Any) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # noqa: BLE001 - an exporter error is a failed export, counted like one
            result = SpanExportResult.FAILURE
        self._tally.settle(len(spans), result == SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingLogProcessor(LogRecordProcessor):
    """Put before the batch processor: every record emitted through the SDK is accepted into the logs tally, so
    records the SDK's queue drops count as undelivered."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    def on_emit(self, log_record: Any) -> None:
        self._tally.accept()

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class CountingMetricExporter(MetricExporter):
    """Settles every metric export request in the metrics tally and skips collections without a point, so a
    process with nothing to say sends and writes nothing. In a forked child it sends nothing at all: the child's
    metrics have a provider of their own, and these instruments hold the parent's cumulative values."""

    def __init__(self, inner: MetricExporter, tally: Tally) -> None:
        super().__init__(inner._preferred_temporality, inner._preferred_aggregation)
        self._inner = inner
        self._tally = tally
        self._pid = os.getpid()
        self._closed = False

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if self._pid != os.getpid() or not _has_points(metrics_data):
            return MetricExportResult.SUCCESS
        self._tally.accept()
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:  # noqa: BLE001 - an exporter error is a failed export, counted like one
            result = MetricExportResult.FAILURE
        self._tally.settle(1, result == MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.close()

    def close(self) -> None:
        """Shut the exporter down once, in the process that built it (see ``ForkSafeExporter.close``)."""
        if self._pid == os.getpid() and not self._closed:
            self._closed = True
            self._inner.shutdown()


def _has_points(metrics_data: Any) -> bool:
    return any(
        metric.data.data_points
        for resource_metrics in getattr(metrics_data, "resource_metrics", ())
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


def _is_pull_reader(planned: PlannedExporter) -> bool:
    """A Prometheus endpoint, or another metrics entry point that is a reader rather than a push exporter."""
    if planned.kind == "prometheus":
        return True
    if planned.kind != "entry_point":
        return False
    from opentelemetry.sdk.metrics.export import MetricReader

    return issubclass(load_exporter_class("metrics", planned.entry_point), MetricReader)


def _metric_readers(
    plan: ExportPlan,
    environ: Mapping[str, str] | None,
    file_sink: JsonLinesFile | None,
    exporters: list[Any],
    pull: bool = True,
) -> list[Any]:
    """One reader per planned metrics exporter: a periodic reader for each OTLP/console/file/entry-point push
    exporter (wrapped for counting and added to ``exporters``), and, with ``pull``, the Prometheus endpoint
    (OTEL_EXPORTER_PROMETHEUS_HOST/PORT) or another entry point's reader."""
    readers: list[Any] = []
    for planned in plan.exporters["metrics"]:
        if planned.kind == "prometheus":
            if not pull:
                continue
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import start_http_server

            environ = os.environ if environ is None else environ
            start_http_server(
                port=int(environ.get("OTEL_EXPORTER_PROMETHEUS_PORT") or 9464),
                addr=environ.get("OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost",
            )
            readers.append(PrometheusMetricReader())
        elif _is_pull_reader(planned):
            if pull:
                readers.append(load_exporter_class("metrics", planned.entry_point)())
        else:
            exporter = CountingMetricExporter(_exporter(planned, "metrics", file_sink), LEDGER.metrics)
            exporters.append(exporter)
            readers.append(PeriodicExportingMetricReader(exporter))
    return readers


@dataclass
class Providers:
    tracer_provider: Any
    logger_provider: Any
    meter_provider: Any
    created: tuple[str, ...]
    plan: ExportPlan
    resource: Resource
    file_sink: JsonLinesFile | None = None
    log_sink: WireLogSink | None = None
    exporters: list[Any] = field(default_factory=list)  # torch-otel's own, each with close()

    def shutdown(self, timeout: float, drain_logs: Callable[[], Any] | None = None) -> set[str]:
        """Flush and shut down the providers torch-otel created, giving up after ``timeout`` seconds (the threads
        are daemons, so an unreachable collector cannot hold the process at exit). Logs go on one thread, in order:
        ``drain_logs`` (the bridge's queue), the SDK log pipeline, the fast path's sink. Traces and metrics shut
        down beside them, so a log export stuck in retries cannot take away their time. Returns the signals
        ("traces", "logs", "metrics") whose shutdown had not finished at the deadline."""
        log_steps = [drain_logs] if drain_logs is not None else []
        if "logger" in self.created:
            log_steps.append(self.logger_provider.shutdown)
        if self.log_sink is not None:
            log_steps.append(self.log_sink.shutdown)

        def shut_down_logs() -> None:
            for step in log_steps:
                step()

        targets = {
            signal: getattr(self, f"{name}_provider").shutdown
            for signal, name in (("traces", "tracer"), ("metrics", "meter"))
            if name in self.created
        }
        if log_steps:
            targets["logs"] = shut_down_logs
        return run_bounded(targets, seconds=timeout, on_overrun=self.close_exporters)

    def close_exporters(self) -> None:
        """Interrupt exports still in retries, so their threads end (and count their loss) before the deadline."""
        for exporter in self.exporters:
            try:
                exporter.close()
            except Exception:  # noqa: BLE001 - the process is on its way out
                pass

    def renew_after_fork(self) -> Any:
        """In a forked child: one new identity (``renewed_identity``) for spans, logs and metrics alike, and a
        meter provider of the child's own, exporting like the parent's, so that the child's cumulative series never
        mix with the parent's. Returns that meter provider; None if torch-otel did not create the meter provider,
        or for a Prometheus endpoint (which stays the parent's)."""
        self.resource = renewed_identity(self.resource)
        for name in ("tracer", "logger"):
            if name in self.created:
                _set_resource(getattr(self, f"{name}_provider"), self.resource)
        if self.log_sink is not None:
            self.log_sink.encoder = _log_encoder(self.resource)
        if "meter" not in self.created or all(_is_pull_reader(p) for p in self.plan.exporters["metrics"]):
            return None
        self.meter_provider = MeterProvider(
            resource=self.resource,
            shutdown_on_exit=False,
            metric_readers=_metric_readers(self.plan, None, self.file_sink, self.exporters, pull=False),
        )
        return self.meter_provider


def configure_sdk(settings: Settings, environ: Mapping[str, str] | None = None) -> Providers:
    """Create and install global providers for each signal the application has not configured itself."""
    plan = export_plan(environ)
    resource = build_resource(environ)
    file_sink = JsonLinesFile(plan.file_path) if plan.file_path is not None else None
    created: list[str] = []
    exporters: list[Any] = []
    tracer_provider = trace.get_tracer_provider()
    if has_no_sdk(tracer_provider):
        tracer_provider = TracerProvider(resource=resource, id_generator=PRIVATE_IDS, shutdown_on_exit=False)
        for planned in plan.exporters["traces"]:  # one counted pipeline per exporter: each delivery counts
            tracer_provider.add_span_processor(CountingSpanProcessor(LEDGER.traces))
            exporter = CountingSpanExporter(partial(_exporter, planned, "traces", file_sink), LEDGER.traces)
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
            exporters.append(exporter)
        trace.set_tracer_provider(tracer_provider)
        created.append("tracer")
    log_sink = None
    logger_provider = _logs.get_logger_provider()
    if has_no_sdk(logger_provider):
        only_otlp = _only_otlp(plan, "logs")
        if settings.fast_path and only_otlp is not None:  # any other list goes through the SDK's pipeline
            log_sink = _wire_log_sink(only_otlp, resource, settings)
            if log_sink is not None:
                exporters.append(log_sink)
        logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for planned in plan.exporters["logs"]:  # one counted pipeline per exporter: each delivery counts
            batched = ByteBudgetLogExporter(
                partial(_exporter, planned, "logs", file_sink), settings.max_batch_bytes, LEDGER.logs
            )
            exporters.append(batched)
            logger_provider.add_log_record_processor(CountingLogProcessor(LEDGER.logs))
            logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(batched, max_queue_size=_sdk_log_queue_size(settings))
            )
        _logs.set_logger_provider(logger_provider)
        created.append("logger")
    meter_provider = metrics.get_meter_provider()
    if has_no_sdk(meter_provider):
        readers = _metric_readers(plan, environ, file_sink, exporters)
        meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
        metrics.set_meter_provider(meter_provider)
        created.append("meter")
    return Providers(
        tracer_provider, logger_provider, meter_provider, tuple(created), plan, resource, file_sink, log_sink, exporters
    )
