"""What `torch-otel run` does inside a process once it has imported torch: set up the SDK from OTEL_*, start the
bridge, finish within TORCH_OTEL_SHUTDOWN_TIMEOUT at exit, on SIGTERM and in multiprocessing workers, and say once
what did not leave. Torch's own helper processes are left alone."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass

from torch_otel.config.export_config import export_plan, sdk_disabled
from torch_otel.config.settings import Settings, SettingsError
from torch_otel.console import say
from torch_otel.exporters.delivery import LEDGER, Ledger
from torch_otel.exporters.exporter_logs import limit_sdk_warnings
from torch_otel.exporters.sdk_setup import Providers, configure_sdk
from torch_otel.instrumentor import TorchInstrumentor, instrument

WORKER_EXIT_BUDGET_S = 1.0  # DataLoader terminates workers that linger on their way out
_LAUNCHERS = ("torch.distributed.",)  # torch modules run as programs that start user processes, e.g. torchrun

_log = logging.getLogger("torch_otel")


def start_after_torch_import() -> None:
    """wrapt's post-import hook for torch, installed by the bootstrap. Never raises into the program's import."""
    try:
        if sdk_disabled() or is_torch_helper():
            return
        settings = Settings.from_env()
        export_plan()
    except SettingsError as error:  # `torch-otel run` checked them; the program changed them since
        say(f"{error} The program runs without torch-otel.")
        return
    # Before torch._dynamo is imported, so this runs after torch's own exit handlers (which still log).
    atexit.register(_finish_at_exit)
    try:
        providers = configure_sdk(settings)
        limit_sdk_warnings()  # for the life of the process: a long outage must not flood stderr
        instrument(settings=settings, log_sink=providers.log_sink)
    except Exception as error:  # noqa: BLE001 - e.g. an OTEL_* value the SDK itself rejects
        atexit.unregister(_finish_at_exit)
        say(
            f"could not set up OpenTelemetry ({type(error).__name__}: {error}); the program runs without "
            "torch-otel. Run `torch-otel doctor` to check the settings."
        )
        return
    bridge = TorchInstrumentor.bridge
    if bridge is not None:
        atexit.unregister(bridge.flush)  # finish() flushes it within the same deadline
        bridge.at_worker_exit = lambda: _finish_at_exit(WORKER_EXIT_BUDGET_S)
    _started.append((providers, settings.shutdown_timeout))
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_renew_in_child)
    _finish_on_sigterm()


def is_torch_helper() -> bool:
    """True in a process whose program is a module of torch itself (inductor's compile worker, started as
    ``python .../torch/_inductor/compile_worker/__main__.py``), torch's launchers excepted."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if name.startswith("torch."):
        return not name.startswith(_LAUNCHERS)
    torch = sys.modules.get("torch")
    path, torch_file = getattr(main, "__file__", None), getattr(torch, "__file__", None)
    if not path or not torch_file:
        return False
    torch_dir = os.path.dirname(os.path.abspath(torch_file)) + os.sep
    program = os.path.abspath(path)
    if not program.startswith(torch_dir):
        return False
    module = "torch." + os.path.splitext(program[len(torch_dir) :])[0].replace(os.sep, ".")
    return not module.startswith(_LAUNCHERS)


_started: list[tuple[Providers, float]] = []


def _finish_at_exit(budget: float | None = None) -> None:
    while _started:
        providers, timeout = _started.pop()
        finish(providers, timeout if budget is None else min(budget, timeout))


def _renew_in_child() -> None:
    """A forked child is a process of its own: a new identity on all three signals, and torch-otel's metrics in a
    meter provider of its own (the inherited instruments hold the parent's cumulative values). Registered after
    the SDK's providers were built, so this runs after their own at-fork handlers."""
    for providers, _ in _started:
        try:
            meter_provider = providers.renew_after_fork()
            if meter_provider is not None and TorchInstrumentor.metrics is not None:
                TorchInstrumentor.metrics.rebind(TorchInstrumentor.meter(meter_provider))
        except Exception:  # noqa: BLE001 - never raise into os.fork's caller; the child keeps the parent's identity
            _log.debug("torch-otel: could not renew the forked child's resource", exc_info=True)


def finish(providers: Providers, timeout: float) -> None:
    """Export what is queued and shut the SDK down within ``timeout`` seconds, then report any loss once."""
    bridge = TorchInstrumentor.bridge
    unfinished = providers.shutdown(timeout, drain_logs=bridge.drain if bridge is not None else None)
    losses = Losses.read(bridge, LEDGER, metrics_finished="metrics" not in unfinished)
    line = losses.summary(timeout if unfinished else None)
    if line:
        say(line)


@dataclass(frozen=True)
class Losses:
    """What one process did not deliver, read at the end of its exit deadline."""

    dropped_records: int = 0
    undelivered_records: int = 0
    undelivered_spans: int = 0
    undelivered_metric_exports: int = 0
    metric_count_is_lower_bound: bool = False
    failed_requests: int = 0

    @classmethod
    def read(cls, bridge: object, ledger: Ledger, metrics_finished: bool = True) -> Losses:
        return cls(
            dropped_records=getattr(bridge, "dropped", 0),
            undelivered_records=getattr(bridge, "undelivered", 0) + ledger.logs.undelivered,
            undelivered_spans=ledger.traces.undelivered,
            undelivered_metric_exports=ledger.metrics.undelivered,
            metric_count_is_lower_bound=not metrics_finished,
            failed_requests=sum(tally.failed_requests for tally in ledger.tallies().values()),
        )

    def summary(self, timed_out_after: float | None = None) -> str:
        """One line, or "" when nothing was lost and the deadline was kept."""
        undelivered = [_count(self.undelivered_records, "log record"), _count(self.undelivered_spans, "span")]
        if self.undelivered_metric_exports:
            bound = "at least " if self.metric_count_is_lower_bound else ""
            undelivered.append(bound + _count(self.undelivered_metric_exports, "metric export"))
        parts = []
        if any(undelivered):
            parts.append("not delivered (failed, or still queued at exit): " + ", ".join(filter(None, undelivered)))
        if self.dropped_records:
            parts.append(
                f"{_count(self.dropped_records, 'log record')} dropped because the queue was full "
                "(TORCH_OTEL_QUEUE_SIZE)"
            )
        if self.failed_requests:
            parts.append(f"{_count(self.failed_requests, 'export request')} failed")
        if timed_out_after is not None:
            parts.append(f"the final flush did not finish within TORCH_OTEL_SHUTDOWN_TIMEOUT={timed_out_after:g}s")
        return "; ".join(parts) + ("; see the torch_otel.* metrics and `torch-otel doctor`." if parts else "")


def _count(number: int, noun: str) -> str:
    if not number:
        return ""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _finish_on_sigterm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def finish_then_terminate(signum: int, frame: object) -> None:
        _finish_at_exit()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, finish_then_terminate)
