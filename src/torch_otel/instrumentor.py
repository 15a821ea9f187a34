"""The OpenTelemetry instrumentor for torch (``opentelemetry-instrument`` entry point ``torch``) and
``instrument()`` / ``uninstrument()`` / ``flush()``."""

from __future__ import annotations

import atexit
from collections.abc import Collection
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]  # the package declares no __all__

from torch_otel.bridge import LogBridge
from torch_otel.capture.torch_hooks import TorchHooks
from torch_otel.capture.torch_import import import_torch_checked, torch_version
from torch_otel.config.export_config import sdk_disabled
from torch_otel.config.settings import Settings
from torch_otel.signals.ids import use_private_ids
from torch_otel.signals.metrics import HEALTH, CompileMetrics
from torch_otel.signals.redaction import Redactor
from torch_otel.signals.spans import CompileSpans, compile_tracer

INSTRUMENTS = ("torch >= 2.4",)


class TorchInstrumentor(BaseInstrumentor):
    """Bridges torch's logging (as configured by TORCH_LOGS) to OpenTelemetry."""

    bridge: LogBridge | None = None
    hooks: TorchHooks | None = None
    metrics: CompileMetrics | None = None
    replaced_id_generator: tuple[Any, Any] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        if sdk_disabled():
            return
        settings = kwargs.get("settings") or Settings.from_env()
        import_torch_checked()
        logger_provider = kwargs.get("logger_provider") or _logs.get_logger_provider()
        bridge = LogBridge(logger_provider, settings, wire_sink=kwargs.get("log_sink"))
        bridge.start()
        atexit.register(bridge.flush)
        TorchInstrumentor.bridge = bridge
        listeners: list[Any] = []
        version = torch_version()
        if settings.metrics:
            HEALTH.dropped, HEALTH.truncated = (lambda: bridge.dropped), (lambda: bridge.truncated)
            meter_provider = kwargs.get("meter_provider") or metrics.get_meter_provider()
            TorchInstrumentor.metrics = CompileMetrics(self.meter(meter_provider))
            listeners.append(TorchInstrumentor.metrics)
        if settings.spans:
            tracer_provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
            original_ids = use_private_ids(tracer_provider)
            if original_ids is not None:
                TorchInstrumentor.replaced_id_generator = (tracer_provider, original_ids)
            listeners.append(
                CompileSpans(
                    compile_tracer(tracer_provider, version),
                    logger_provider.get_logger("torch._dynamo", version),
                    Redactor(settings.redact_paths, settings.redact_code),
                )
            )
        if listeners:
            TorchInstrumentor.hooks = TorchHooks(listeners)
            TorchInstrumentor.hooks.install_with_dynamo()

    @staticmethod
    def meter(meter_provider: Any) -> Any:
        """The meter torch's compile metrics are recorded with."""
        return meter_provider.get_meter("torch._dynamo", torch_version())

    def _uninstrument(self, **kwargs: Any) -> None:
        TorchInstrumentor.metrics = None
        hooks, TorchInstrumentor.hooks = TorchInstrumentor.hooks, None
        if hooks is not None:
            hooks.uninstall()
        replaced, TorchInstrumentor.replaced_id_generator = TorchInstrumentor.replaced_id_generator, None
        if replaced is not None:
            tracer_provider, original_ids = replaced
            tracer_provider.id_generator = original_ids
        bridge, TorchInstrumentor.bridge = TorchInstrumentor.bridge, None
        if bridge is not None:
            atexit.unregister(bridge.flush)
            bridge.stop()


def instrument(**kwargs: Any) -> None:
    """Start exporting torch's logs through the global (or given) OpenTelemetry providers."""
    TorchInstrumentor().instrument(skip_dep_check=True, **kwargs)


def uninstrument() -> None:
    """Undo ``instrument()`` exactly: handlers, torch hooks and the export thread are removed."""
    TorchInstrumentor().uninstrument()


def flush(timeout: float | None = None) -> bool:
    """Export everything the bridge holds now. Returns within ``timeout`` seconds (default
    TORCH_OTEL_SHUTDOWN_TIMEOUT): True if the export and the SDK's log flush finished, False if not (a send stuck on
    an unresponsive collector carries on in the background, never in the caller's thread)."""
    bridge = TorchInstrumentor.bridge
    return bridge.flush(timeout) if bridge is not None else True
