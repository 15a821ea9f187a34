"""What `torch-otel run` does inside the child interpreter before user code: check settings, import torch,
set up the SDK from OTEL_*, start the bridge, and flush on SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import NoReturn

from torch_otel.instrumentor import TorchInstrumentor, instrument
from torch_otel.sdk_setup import Providers, configure_sdk, export_plan, sdk_disabled
from torch_otel.settings import Settings, SettingsError
from torch_otel.torch_import import import_torch_checked
from torch_otel.torch_logs import TorchLogsError

EXIT_BAD_SETTING = 2


def fail(error: Exception) -> NoReturn:
    sys.stderr.write(f"torch-otel: {error}\n")
    sys.stderr.flush()
    os._exit(EXIT_BAD_SETTING)


def start() -> None:
    try:
        if sdk_disabled():
            return
        settings = Settings.from_env()
        export_plan()
        import_torch_checked()
    except (SettingsError, TorchLogsError) as error:
        fail(error)
    except Exception as error:  # noqa: BLE001 - the program's own import of torch will report it
        sys.stderr.write(f"torch-otel: torch could not be imported ({error}); running without the bridge.\n")
        return
    providers = configure_sdk(settings)
    if providers.file_path is not None:
        sys.stderr.write(
            f"torch-otel: no OTLP endpoint configured, so traces, logs and metrics go to {providers.file_path} "
            f"(read it with `torch-otel report {providers.file_path}`; set OTEL_EXPORTER_OTLP_ENDPOINT to send to "
            "a collector instead).\n"
        )
    instrument(settings=settings)
    _flush_on_sigterm(providers, settings.shutdown_timeout)


def _flush_on_sigterm(providers: Providers, timeout: float) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def flush_then_terminate(signum: int, frame: object) -> None:
        bridge = TorchInstrumentor.bridge
        if bridge is not None:
            bridge.flush(timeout)
        for name in providers.created:
            getattr(providers, f"{name}_provider").force_flush(int(timeout * 1000))
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, flush_then_terminate)
