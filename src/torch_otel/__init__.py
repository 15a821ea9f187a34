"""torch-otel: torch.compile's logs, compile spans and metrics as OpenTelemetry, driven by TORCH_LOGS."""

from torch_otel.instrumentor import TorchInstrumentor, flush, instrument, uninstrument
from torch_otel.settings import Settings, SettingsError
from torch_otel.torch_logs import TorchLogsError, TorchLogsSettings, parse_torch_logs

__version__ = "0.1.0"

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
