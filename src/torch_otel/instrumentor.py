"""The OpenTelemetry instrumentor for torch (``opentelemetry-instrument`` entry point ``torch``) and
``instrument()`` / ``uninstrument()`` / ``flush()``."""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry import _logs, metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]  # the package declares no __all__

from torch_otel.bridge import LogBridge
from torch_otel.capture.torch_hooks import TorchHooks
from torch_otel.capture.torch_import import (
    TORCH_LOGS,
    check_torch_logs_before_import,
    program_search_path,
    torch_version,
)
from torch_otel.capture.torch_logs import TorchLogsError
from torch_otel.config.export_config import has_no_sdk, sdk_disabled
from torch_otel.config.settings import Settings, SettingsError
from torch_otel.console import say
from torch_otel.signals.ids import use_private_ids
from torch_otel.signals.metrics import HEALTH, CompileMetrics
from torch_otel.signals.redaction import Redactor
from torch_otel.signals.spans import CompileSpans, compile_tracer
from torch_otel.signals.watchdog import CompileWatchdog

INSTRUMENTS = ("torch >= 2.13",)


class TorchInstrumentor(BaseInstrumentor):
    """Bridges torch's logging (as configured by TORCH_LOGS) to OpenTelemetry.

    Instrumenting never imports torch and never raises (``opentelemetry-instrument`` would skip the instrumentors
    after this one): a problem is one line on stderr and the program runs without torch telemetry. Before
    ``import torch`` the start waits for that import, so torch applies TORCH_LOGS itself, or refuses it with its own
    error exactly as without torch-otel; a value torch is certain to refuse is also reported up front
    (``check_torch_logs_before_import``)."""

    bridge: LogBridge | None = None
    hooks: TorchHooks | None = None
    metrics: CompileMetrics | None = None
    watchdog: CompileWatchdog | None = None
    replaced_id_generator: tuple[Any, Any] | None = None
    waiting: object | None = None  # the token of the start that waits for `import torch`; None cancels it

    def instrumentation_dependencies(self) -> Collection[str]:
        return INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        try:
            if sdk_disabled():
                return
            settings = kwargs.get("settings") or Settings.from_env()
            if "torch" in sys.modules:
                self._start(settings, kwargs)
            else:
                self._start_after_torch_import(settings, kwargs)
        except Exception as error:  # noqa: BLE001 - never stop the program or the instrumentors after this one
            _say_not_started(error)

    def _start_after_torch_import(self, settings: Settings, kwargs: dict[str, Any]) -> None:
        try:
            check_torch_logs_before_import(os.environ.get(TORCH_LOGS), program_search_path([sys.executable, *sys.argv]))
        except TorchLogsError as error:
            say(f"{error} Torch will refuse it when the program imports torch; torch-otel starts if torch accepts it.")
        token = TorchInstrumentor.waiting = object()

        def start(_torch: object) -> None:
            if TorchInstrumentor.waiting is not token:
                return
            TorchInstrumentor.waiting = None
            try:
                self._start(settings, kwargs)
            except Exception as error:  # noqa: BLE001 - never raise into the program's `import torch`
                _say_not_started(error)

        wrapt.importer.register_post_import_hook(start, "torch")

    def _start(self, settings: Settings, kwargs: dict[str, Any]) -> None:
        logger_provider = kwargs.get("logger_provider") or _logs.get_logger_provider()
        _say_if_nothing_is_exported(
            {
                "logs": logger_provider,
                "metrics": (kwargs.get("meter_provider") or metrics.get_meter_provider()) if settings.metrics else None,
                "traces": (kwargs.get("tracer_provider") or trace.get_tracer_provider()) if settings.spans else None,
            }
        )
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
        if listeners and settings.slow_compile is not None:  # last: it sees the compile span as current
            TorchInstrumentor.watchdog = CompileWatchdog(
                settings.slow_compile,
                logger_provider.get_logger("torch._dynamo", version),
                Redactor(settings.redact_paths, settings.redact_code),
                settings.max_body_bytes,
            )
            listeners.append(TorchInstrumentor.watchdog)
        if listeners:
            TorchInstrumentor.hooks = TorchHooks(listeners)
            TorchInstrumentor.hooks.install_with_dynamo()

    @staticmethod
    def meter(meter_provider: Any) -> Any:
        """The meter torch's compile metrics are recorded with."""
        return meter_provider.get_meter("torch._dynamo", torch_version())

    def _uninstrument(self, **kwargs: Any) -> None:
        TorchInstrumentor.waiting = None
        TorchInstrumentor.metrics = None
        hooks, TorchInstrumentor.hooks = TorchInstrumentor.hooks, None
        if hooks is not None:
            hooks.uninstall()
        watchdog, TorchInstrumentor.watchdog = TorchInstrumentor.watchdog, None
        if watchdog is not None:
            watchdog.stop()
        replaced, TorchInstrumentor.replaced_id_generator = TorchInstrumentor.replaced_id_generator, None
        if replaced is not None:
            tracer_provider, original_ids = replaced
            tracer_provider.id_generator = original_ids
        bridge, TorchInstrumentor.bridge = TorchInstrumentor.bridge, None
        if bridge is not None:
            atexit.unregister(bridge.flush)
            bridge.stop()


def instrument(**kwargs: Any) -> None:
    """Start exporting torch's logs through the global (or given) OpenTelemetry providers: now if torch is
    imported, else when the program imports it. Never raises; see ``TorchInstrumentor``."""
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


def _say_not_started(error: Exception) -> None:
    reason = (
        str(error)
        if isinstance(error, SettingsError)
        else f"Could not instrument torch ({type(error).__name__}: {error})."
    )
    say(f"{reason} The program runs without torch-otel.")


_SDK_CLASSES = {"traces": "TracerProvider", "logs": "LoggerProvider", "metrics": "MeterProvider"}
_SETTERS = {
    "traces": "opentelemetry.trace.set_tracer_provider",
    "logs": "opentelemetry._logs.set_logger_provider",
    "metrics": "opentelemetry.metrics.set_meter_provider",
}
_said_no_sdk = False


def _say_if_nothing_is_exported(providers: dict[str, object | None]) -> None:
    """Say once per process which signals will go nowhere because their provider is the API's no-op one, and how
    to set up an SDK. ``None``: a signal torch-otel does not produce (turned off by its setting)."""
    global _said_no_sdk
    used = {signal: provider for signal, provider in providers.items() if provider is not None}
    missing = [signal for signal, provider in used.items() if has_no_sdk(provider)]
    if not missing or _said_no_sdk:
        return
    _said_no_sdk = True
    fix = (
        "run the program under `torch-otel run` (or `opentelemetry-instrument`, with opentelemetry-distro and an "
        "exporter installed), or set an SDK "
    )
    if len(missing) == len(used):
        classes = ", ".join(_SDK_CLASSES[signal] for signal in missing)
        say(
            "no OpenTelemetry SDK is set up in this process (the global providers are the API's no-op ones), so "
            f"nothing torch-otel records will be exported. To export, {fix}{classes} (opentelemetry.sdk) before "
            "calling torch_otel.instrument()."
        )
        return
    parts = [f"{signal} (no SDK {_SDK_CLASSES[signal]}: set one with {_SETTERS[signal]})" for signal in missing]
    say(
        f"{', '.join(parts)} will not be exported: the global provider is the API's no-op one. Set it before "
        "calling torch_otel.instrument(), or pass it to instrument(), or run under `torch-otel run`."
    )
