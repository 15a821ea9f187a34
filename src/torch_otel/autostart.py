"""What `torch-otel run` does inside the child interpreter before user code: check settings, import torch,
set up the SDK from OTEL_*, start the bridge, and flush on SIGTERM."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import NoReturn

from torch_otel.exporter_logs import limit_sdk_warnings
from torch_otel.instrumentor import TorchInstrumentor, instrument
from torch_otel.metrics import HEALTH
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
        # Registered before torch is imported, so it runs after torch's own exit handlers (which still log).
        atexit.register(_finish_at_exit)
        settings = Settings.from_env()
        export_plan()
        import_torch_checked()
    except (SettingsError, TorchLogsError) as error:
        fail(error)
    except Exception as error:  # noqa: BLE001 - the program's own import of torch will report it
        sys.stderr.write(f"torch-otel: torch could not be imported ({error}); running without the bridge.\n")
        return
    try:
        providers = configure_sdk(settings)
        limit_sdk_warnings()  # for the life of the process: a long outage must not flood stderr
        announce_file(providers)
        instrument(settings=settings, log_sink=providers.log_sink)
    except Exception as error:  # noqa: BLE001 - e.g. an OTEL_* value the SDK itself rejects
        sys.stderr.write(f"torch-otel: could not set up OpenTelemetry ({type(error).__name__}: {error}); "
                         "the program runs without torch-otel. Run `torch-otel doctor` to check the settings.\n")
        return
    bridge = TorchInstrumentor.bridge
    if bridge is not None:
        atexit.unregister(bridge.flush)  # finish() flushes it within the same deadline
    _started.append((providers, settings.shutdown_timeout))
    _finish_on_sigterm(providers, settings.shutdown_timeout)


_started: list[tuple[Providers, float]] = []


def announce_file(providers: Providers) -> None:
    if providers.file_path is not None:
        sys.stderr.write(
            f"torch-otel: no OTLP endpoint configured, so traces, logs and metrics go to {providers.file_path} "
            f"(read it with `torch-otel report {providers.file_path}`; set OTEL_EXPORTER_OTLP_ENDPOINT to send to "
            "a collector instead).\n"
        )


def _finish_at_exit() -> None:
    while _started:
        finish(*_started.pop())


def finish(providers: Providers, timeout: float) -> None:
    """Export what is queued and shut the SDK down within ``timeout`` seconds, then report any loss once."""
    bridge = TorchInstrumentor.bridge
    completed = providers.shutdown(timeout, drain_logs=bridge.drain if bridge is not None else None)
    in_flight = providers.log_sink.in_flight if providers.log_sink is not None else 0
    undelivered = HEALTH.lost_records + in_flight + (bridge.queued if bridge else 0)
    losses = loss_summary(bridge.dropped if bridge else 0, undelivered, HEALTH.export_failures, completed, timeout)
    if losses:
        sys.stderr.write(f"torch-otel: {losses}\n")


def loss_summary(dropped: int, undelivered: int, export_failures: dict[str, int], completed: bool,
                 timeout: float) -> str:
    parts = []
    if dropped:
        parts.append(f"{dropped} log records dropped because the queue was full (TORCH_OTEL_QUEUE_SIZE)")
    if undelivered:
        parts.append(f"{undelivered} log records not delivered (failed requests or still queued at exit)")
    failed = {signal: count for signal, count in export_failures.items() if count}
    if failed:
        parts.append("failed export requests: " + ", ".join(f"{count} {signal}" for signal, count in failed.items()))
    if not completed:
        parts.append(f"the final flush did not finish within TORCH_OTEL_SHUTDOWN_TIMEOUT={timeout:g}s")
    return "; ".join(parts) + ("; see torch_otel.* metrics and `torch-otel doctor`." if parts else "")


def _finish_on_sigterm(providers: Providers, timeout: float) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def finish_then_terminate(signum: int, frame: object) -> None:
        _finish_at_exit()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, finish_then_terminate)
