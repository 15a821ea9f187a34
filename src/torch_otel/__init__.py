"""torch-otel: torch.compile's logs, compile spans and metrics as OpenTelemetry, driven by TORCH_LOGS.

The public names load on first use (PEP 562), so `torch-otel run` and the bootstrap in every child process do not
pay for the OpenTelemetry SDK until they need it."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from torch_otel.version import __version__

_PUBLIC = {
    "Settings": "torch_otel.config.settings",
    "SettingsError": "torch_otel.config.settings",
    "TorchInstrumentor": "torch_otel.instrumentor",
    "TorchLogsError": "torch_otel.capture.torch_logs",
    "TorchLogsSettings": "torch_otel.capture.torch_logs",
    "flush": "torch_otel.instrumentor",
    "instrument": "torch_otel.instrumentor",
    "parse_torch_logs": "torch_otel.capture.torch_logs",
    "uninstrument": "torch_otel.instrumentor",
}

__all__ = [
    "Settings",
    "SettingsError",
    "TorchInstrumentor",
    "TorchLogsError",
    "TorchLogsSettings",
    "__version__",
    "flush",
    "instrument",
    "parse_torch_logs",
    "uninstrument",
]

if TYPE_CHECKING:
    from torch_otel.capture.torch_logs import TorchLogsError, TorchLogsSettings, parse_torch_logs
    from torch_otel.config.settings import Settings, SettingsError
    from torch_otel.instrumentor import TorchInstrumentor, flush, instrument, uninstrument


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'torch_otel' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
