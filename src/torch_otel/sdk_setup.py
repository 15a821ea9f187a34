"""Builds the global tracer, logger and meter providers from the standard OTEL_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Mapping
from urllib.parse import urlsplit

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from torch_otel import catalog
from torch_otel.ids import PRIVATE_IDS
from torch_otel.log_batching import ByteBudgetLogExporter
from torch_otel.settings import Settings, SettingsError, parse_bool

SIGNALS = ("traces", "logs", "metrics")
PROTOCOLS = ("grpc", "http/protobuf")
EXPORTERS = ("otlp", "console", "none")
_UNSET_PROVIDER_TYPES = {
    "ProxyTracerProvider", "NoOpTracerProvider", "ProxyLoggerProvider", "NoOpLoggerProvider",
    "_ProxyMeterProvider", "NoOpMeterProvider",
}
_RANK_VARIABLES = {
    "RANK": catalog.RESOURCE_RANK,
    "WORLD_SIZE": catalog.RESOURCE_WORLD_SIZE,
    "LOCAL_RANK": catalog.RESOURCE_LOCAL_RANK,
}


@dataclass(frozen=True)
class ExportPlan:
    """What each signal is exported with, decided from the environment before anything is built."""

    exporters: dict[str, str]
    protocols: dict[str, str]


def sdk_disabled(environ: Mapping[str, str] | None = None) -> bool:
    raw = (os.environ if environ is None else environ).get("OTEL_SDK_DISABLED", "")
    return raw != "" and parse_bool("OTEL_SDK_DISABLED", raw)


def _validate_endpoint(variable: str, raw: str) -> None:
    parts = urlsplit(raw)
    try:
        parts.port
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(variable, raw, "an http:// or https:// URL with a host, e.g. http://localhost:4317")


def _validate_headers(variable: str, raw: str) -> None:
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            # Name only the key (or nothing): header values are secrets and never printed.
            raise SettingsError(variable, "<hidden>", "comma-separated key=value pairs, e.g. api-key=SECRET,team=ml")


def export_plan(environ: Mapping[str, str] | None = None) -> ExportPlan:
    """Validate the OTEL_* exporter settings and pick an exporter and protocol per signal."""
    environ = os.environ if environ is None else environ
    exporters, protocols = {}, {}
    default_protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    for signal in SIGNALS:
        variable = f"OTEL_{signal.upper()}_EXPORTER"
        exporter = (environ.get(variable) or "otlp").strip()
        if exporter not in EXPORTERS:
            raise SettingsError(variable, exporter, "one of " + ", ".join(EXPORTERS))
        exporters[signal] = exporter
        protocol_variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
        protocol = environ.get(protocol_variable) or default_protocol
        if protocol not in PROTOCOLS:
            shown = protocol_variable if environ.get(protocol_variable) else "OTEL_EXPORTER_OTLP_PROTOCOL"
            raise SettingsError(shown, protocol, "grpc or http/protobuf")
        protocols[signal] = protocol
    for signal in ("",) + tuple(f"{s.upper()}_" for s in SIGNALS):
        endpoint = environ.get(f"OTEL_EXPORTER_OTLP_{signal}ENDPOINT")
        if endpoint:
            _validate_endpoint(f"OTEL_EXPORTER_OTLP_{signal}ENDPOINT", endpoint)
        headers = environ.get(f"OTEL_EXPORTER_OTLP_{signal}HEADERS")
        if headers:
            _validate_headers(f"OTEL_EXPORTER_OTLP_{signal}HEADERS", headers)
    return ExportPlan(exporters, protocols)


def build_resource(environ: Mapping[str, str] | None = None) -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, plus the torch version and torchrun's rank variables."""
    environ = os.environ if environ is None else environ
    attributes: dict[str, Any] = {}
    try:
        attributes[catalog.RESOURCE_TORCH_VERSION] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pass
    for variable, key in _RANK_VARIABLES.items():
        value = environ.get(variable, "")
        if value.isdigit():
            attributes[key] = int(value)
    return Resource.create(attributes)


def _otlp_exporter(signal: str, protocol: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc import _log_exporter, metric_exporter, trace_exporter
    else:
        from opentelemetry.exporter.otlp.proto.http import _log_exporter, metric_exporter, trace_exporter
    return {
        "traces": trace_exporter.OTLPSpanExporter,
        "logs": _log_exporter.OTLPLogExporter,
        "metrics": metric_exporter.OTLPMetricExporter,
    }[signal]()


_CONSOLE_EXPORTERS = {"traces": ConsoleSpanExporter, "logs": ConsoleLogRecordExporter, "metrics": ConsoleMetricExporter}


def _exporter(plan: ExportPlan, signal: str) -> Any:
    kind = plan.exporters[signal]
    if kind == "none":
        return None
    if kind == "console":
        return _CONSOLE_EXPORTERS[signal]()
    return _otlp_exporter(signal, plan.protocols[signal])


@dataclass
class Providers:
    tracer_provider: Any
    logger_provider: Any
    meter_provider: Any
    created: tuple[str, ...]

    def shutdown(self) -> None:
        for name in self.created:
            getattr(self, f"{name}_provider").shutdown()


def _is_unset(provider: Any) -> bool:
    return type(provider).__name__ in _UNSET_PROVIDER_TYPES


def configure_sdk(settings: Settings, environ: Mapping[str, str] | None = None) -> Providers:
    """Create and install global providers for each signal the application has not configured itself."""
    plan = export_plan(environ)
    resource = build_resource(environ)
    created = []
    tracer_provider = trace.get_tracer_provider()
    if _is_unset(tracer_provider):
        tracer_provider = TracerProvider(resource=resource, id_generator=PRIVATE_IDS)
        if (span_exporter := _exporter(plan, "traces")) is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        trace.set_tracer_provider(tracer_provider)
        created.append("tracer")
    logger_provider = _logs.get_logger_provider()
    if _is_unset(logger_provider):
        logger_provider = LoggerProvider(resource=resource)
        if (log_exporter := _exporter(plan, "logs")) is not None:
            batched = ByteBudgetLogExporter(log_exporter, settings.max_batch_bytes)
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(batched))
        _logs.set_logger_provider(logger_provider)
        created.append("logger")
    meter_provider = metrics.get_meter_provider()
    if _is_unset(meter_provider):
        metric_exporter = _exporter(plan, "metrics")
        readers = [PeriodicExportingMetricReader(metric_exporter)] if metric_exporter is not None else []
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(meter_provider)
        created.append("meter")
    return Providers(tracer_provider, logger_provider, meter_provider, tuple(created))
