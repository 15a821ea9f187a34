"""Measurements that run in a fresh child process, started by ``benchmarks/run.py``.

Usage: ``python benchmarks/_child.py MODE 'JSON-PARAMS'``; prints one JSON object (the result) as the last line of
stdout. Modes:

* ``records``  per-record cost of torch's artifact logger under one setup (a-e, see ``SETUPS``), with the CPU time
               of every thread of the process;
* ``steady``   ns per call of a warm ``torch.compile``d function, torch-otel off vs on, interleaved;
* ``compile``  compile time of a small model with ``aot_eager``, torch-otel (spans only) off vs on, interleaved;
* ``live``     the same compile with torch-otel on in every state: without the live compile events (no
               ``pytorch.compile.start``, TORCH_OTEL_SLOW_COMPILE=off), with them as by default (60 s watchdog), and
               with a watchdog that fires during every compile; states rotated.

While measuring, fd 2 points at /dev/null, so torch's stderr handler (which holds ``sys.stderr``, i.e. fd 2) does
real writes whose cost does not depend on a terminal. Tracebacks still reach the real stderr.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Sequence

SETUPS = {
    "a": "no handler (floor)",
    "b": "torch stderr handler only",
    "c": "stderr + OTel SDK LoggingHandler",
    "d": "stderr + torch-otel (fast OTLP path, torch-otel run's default)",
    "e": "stderr + torch-otel via the SDK LoggerProvider (FAST_PATH=off)",
}
ARTIFACT_MODULE, ARTIFACT = "torch._dynamo.guards", "recompiles"
SMALL_MESSAGE_BYTES = 200


# -- plumbing ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """Point fd 2 at /dev/null (restored afterwards, even on error)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def make_message(size: int) -> str:
    """An ASCII recompile-style message of exactly ``size`` bytes: a header line, then guard-failure lines."""
    lines = ["Recompiling function forward in /srv/app/model.py:42 triggered by the following guard failure(s):"]
    index = 0
    while sum(len(line) + 1 for line in lines) < size:
        guard = f"{index // 8}/{index % 8}: tensor 'L['x']' size mismatch at index 0. expected 8, actual {index}"
        lines.append("    - " + guard)
        index += 1
    return "\n".join(lines)[:size]


def settle_gc() -> None:
    """Collect, then move every surviving object (torch's millions) out of the collector's sight: later
    collections, in or between measurements, scan only what the benchmark itself allocates."""
    gc.collect()
    gc.freeze()


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of every live Python thread by name, plus ``process`` (all threads, native ones included)."""
    seconds: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            clock = time.pthread_getcpuclockid(thread.ident)  # type: ignore[arg-type]
            seconds[thread.name] = seconds.get(thread.name, 0.0) + time.clock_gettime(clock)
        except (AttributeError, OSError, TypeError):  # not POSIX, or the thread just ended
            pass
    seconds["process"] = time.process_time()
    return seconds


def per_thread_us(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """µs of CPU per record by thread; ``native`` is what no Python thread accounts for (gRPC's C threads)."""
    spent = {name: (after[name] - before.get(name, 0.0)) / count * 1e6 for name in after}
    process = spent.pop("process")
    spent["native"] = process - sum(spent.values())
    return {name: us for name, us in spent.items() if abs(us) >= 0.005}


@dataclass
class CountingExporter:
    """Wraps a log exporter and counts what it accepted and what failed (to prove nothing was silently lost)."""

    inner: Any
    exported: int = 0
    failed: int = 0

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        try:
            result = self.inner.export(batch)
        except Exception:  # noqa: BLE001
            result = LogRecordExportResult.FAILURE
        if result == LogRecordExportResult.SUCCESS:
            self.exported += len(batch)
        else:
            self.failed += len(batch)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


def otlp_log_pipeline(endpoint: str, queue_size: int, byte_budget: int | None) -> tuple[Any, CountingExporter]:
    """LoggerProvider -> BatchLogRecordProcessor -> [ByteBudgetLogExporter ->] OTLP/gRPC exporter."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    exporter: Any = OTLPLogExporter(endpoint=endpoint, insecure=True)
    if byte_budget is not None:
        from torch_otel.exporters.log_batching import ByteBudgetLogExporter

        from torch_otel.exporters.delivery import Tally

        inner = exporter
        exporter = ByteBudgetLogExporter(lambda: inner, byte_budget, Tally())
    counting = CountingExporter(exporter)
    provider = LoggerProvider(resource=Resource.create({"service.name": "torch-otel-bench"}))
    processor = BatchLogRecordProcessor(counting, max_queue_size=queue_size)  # type: ignore[arg-type]
    provider.add_log_record_processor(processor)
    return provider, counting


def otlp_tracer_provider(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    return provider


def torch_otel_settings(queue_size: int, **overrides: Any) -> Any:
    import torch_otel

    return torch_otel.Settings(queue_size=queue_size, shutdown_timeout=120.0, **overrides)


def torch_loggers() -> list[logging.Logger]:
    from torch._logging import _internal

    return [logging.getLogger(qname) for qname in sorted(_internal.log_registry.get_log_qnames())]


# -- records: one setup, every message size -------------------------------------------------------------
@dataclass
class Pipeline:
    """What a setup attached, how to flush it, and how to read its loss counters."""

    flush: Callable[[], Any] = lambda: None
    counters: Callable[[], dict[str, int]] = lambda: {}
    notes: dict[str, Any] = field(default_factory=dict)
    around_loop: Callable[[], ContextManager[Any]] = contextlib.nullcontext


def remove_torch_handlers() -> int:
    from torch._logging import _internal

    removed = 0
    for logger in torch_loggers():
        for handler in list(logger.handlers):
            if _internal._is_torch_handler(handler):
                logger.removeHandler(handler)
                removed += 1
    return removed


def naive_pipeline(endpoint: str, queue_size: int) -> Pipeline:
    from opentelemetry.sdk._logs import LoggingHandler

    provider, counting = otlp_log_pipeline(endpoint, queue_size, byte_budget=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    for logger in torch_loggers():
        logger.addHandler(handler)
    return Pipeline(
        flush=lambda: provider.force_flush(),
        counters=lambda: {"exported": counting.exported, "failed": counting.failed},
    )


def torch_otel_pipeline(endpoint: str, queue_size: int) -> Pipeline:
    import torch_otel
    from opentelemetry.sdk.trace import TracerProvider
    from torch_otel.instrumentor import TorchInstrumentor

    settings = torch_otel_settings(queue_size)
    provider, counting = otlp_log_pipeline(endpoint, queue_size, byte_budget=settings.max_batch_bytes)
    torch_otel.instrument(logger_provider=provider, tracer_provider=TracerProvider(), settings=settings)
    bridge = TorchInstrumentor.bridge
    assert bridge is not None, "torch_otel.instrument() did not start the bridge"
    return Pipeline(
        flush=lambda: torch_otel.flush(120.0),
        counters=lambda: {
            "exported": counting.exported, "failed": counting.failed,
            "dropped": bridge.dropped, "truncated": bridge.truncated, "errors": bridge.export_errors,
        },
        notes={"max_body_bytes": settings.max_body_bytes},
    )


def fast_path_sink(endpoint: str, sent: dict[str, int]) -> Any:
    """The OTLP log sink `torch-otel run` builds: records encoded straight to OTLP, sent by the SDK's gRPC
    transport; ``sent`` counts what the collector accepted and what failed."""
    import torch
    from torch_otel.exporters.otlp_wire import LogEncoder, WireLogSink, grpc_log_exporter_for_bytes

    exporter = grpc_log_exporter_for_bytes(endpoint=endpoint, insecure=True)
    send = exporter.send

    def counting_send(batch: Any) -> bool:
        ok = send(batch)
        sent["exported" if ok else "failed"] += batch.records
        return ok

    exporter.send = counting_send
    from torch_otel.exporters.delivery import Tally

    return WireLogSink(exporter, LogEncoder({"service.name": "torch-otel-bench"}, str(torch.__version__)),
                       torch_otel_settings(1).max_batch_bytes, Tally())


def fast_path_pipeline(endpoint: str, queue_size: int) -> Pipeline:
    """torch-otel as `torch-otel run` sets it up (the fast path)."""
    import torch_otel
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.trace import TracerProvider
    from torch_otel.instrumentor import TorchInstrumentor

    settings = torch_otel_settings(queue_size)
    sent = {"exported": 0, "failed": 0}
    torch_otel.instrument(logger_provider=LoggerProvider(), tracer_provider=TracerProvider(), settings=settings,
                          log_sink=fast_path_sink(endpoint, sent))
    bridge = TorchInstrumentor.bridge
    assert bridge is not None, "torch_otel.instrument() did not start the bridge"
    return Pipeline(
        flush=lambda: torch_otel.flush(120.0),
        counters=lambda: {**sent, "dropped": bridge.dropped, "truncated": bridge.truncated,
                          "errors": bridge.export_errors},
        notes={"max_body_bytes": settings.max_body_bytes},
    )


def build_pipeline(setup: str, endpoint: str, queue_size: int) -> Pipeline:
    if setup == "a":
        return Pipeline(notes={"removed_torch_handlers": remove_torch_handlers()})
    if setup == "b":
        return Pipeline()
    if setup == "c":
        return naive_pipeline(endpoint, queue_size)
    if setup == "d":
        return fast_path_pipeline(endpoint, queue_size)
    if setup == "e":
        return torch_otel_pipeline(endpoint, queue_size)
    raise ValueError(f"unknown setup {setup!r}")


def recompiles_logger() -> logging.Logger:
    """torch's recompiles artifact logger, enabled (what every per-record measurement logs through)."""
    import torch._logging

    torch._logging.set_logs(recompiles=True)
    return torch._logging.getArtifactLogger(ARTIFACT_MODULE, ARTIFACT)


def emit_records(log: logging.Logger, message: str, count: int) -> None:
    debug = log.debug
    for _ in range(count):
        debug("%s", message)


def measure_records(log: logging.Logger, pipeline: Pipeline, message: str, count: int) -> dict[str, Any]:
    """Emit ``count`` records, then flush. Per record: emitting-thread wall and CPU time during the loop, and
    whole-process CPU time (every thread, so background conversion and export too) until the flush returned."""
    before, threads0 = pipeline.counters(), thread_cpu_seconds()
    cpu0, wall0, thread0 = time.process_time(), time.perf_counter(), time.thread_time()
    with pipeline.around_loop():
        emit_records(log, message, count)
        wall1, thread1 = time.perf_counter(), time.thread_time()
    pipeline.flush()
    cpu1, wall2 = time.process_time(), time.perf_counter()
    after, threads1 = pipeline.counters(), thread_cpu_seconds()
    return {
        "emit_us": (wall1 - wall0) / count * 1e6,
        "emit_cpu_us": (thread1 - thread0) / count * 1e6,
        "cpu_us": (cpu1 - cpu0) / count * 1e6,
        "flush_ms": (wall2 - wall1) * 1e3,
        "threads_us": per_thread_us(threads0, threads1, count),
        "count": count,
        **{key: after[key] - before.get(key, 0) for key in after},
    }


def run_records(params: dict[str, Any]) -> dict[str, Any]:
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401

    setup, sizes = params["setup"], [tuple(pair) for pair in params["sizes"]]
    queue_size = max(count + count // 5 for _, count in sizes) + 4096
    with stderr_to_devnull():
        log = recompiles_logger()
        pipeline = build_pipeline(setup, params["endpoint"], queue_size)
        results = {}
        for size, count in sizes:
            message = make_message(size)
            measure_records(log, pipeline, message, max(20, count // 10))  # warm-up: caches, gRPC connection
            settle_gc()
            results[str(size)] = measure_records(log, pipeline, message, count)
    return {"setup": setup, "results": results, "notes": pipeline.notes}


# -- steady state and compile: torch-otel toggled in one process ---------------------------------------
class Toggle:
    """Switches torch-otel on and off around interleaved measurements, reusing the same providers (and, with
    ``fast_path``, the same OTLP log sink that `torch-otel run` uses by default)."""

    def __init__(self, endpoint: str, fast_path: bool = False, queue_size: int = 20_000, **settings: Any) -> None:
        self.queue_size = queue_size
        self.settings = settings
        self.logger_provider, self.log_counter = otlp_log_pipeline(endpoint, 8192, byte_budget=3 * 1024 * 1024)
        self.sent = {"exported": 0, "failed": 0}  # by the fast path's sink
        self.log_sink = fast_path_sink(endpoint, self.sent) if fast_path else None
        self.tracer_provider = otlp_tracer_provider(endpoint)
        self.span_count = 0
        self._count_spans()
        self.on = False

    def _count_spans(self) -> None:
        from opentelemetry.sdk.trace import SpanProcessor

        toggle = self

        class _Counter(SpanProcessor):
            def on_end(self, span: Any) -> None:
                toggle.span_count += 1

        self.tracer_provider.add_span_processor(_Counter())

    def set(self, on: bool) -> None:
        import torch_otel

        if on and not self.on:
            torch_otel.instrument(
                logger_provider=self.logger_provider, tracer_provider=self.tracer_provider,
                settings=torch_otel_settings(self.queue_size, **self.settings), log_sink=self.log_sink,
            )
        elif self.on and not on:
            torch_otel.uninstrument()
        self.on = on

    def flush(self) -> None:
        import torch_otel

        torch_otel.flush(60.0)
        self.tracer_provider.force_flush()


def alternating(repetitions: int) -> Iterator[tuple[int, bool]]:
    """(rep, on) pairs: off,on then on,off, ... so slow drift hits both sides equally."""
    for rep in range(repetitions):
        for on in ((False, True) if rep % 2 == 0 else (True, False)):
            yield rep, on


def run_paired(params: dict[str, Any]) -> dict[str, Any]:
    """Setups b and d (the fast path) alternated in one process, so every d measurement has a b measurement taken
    seconds before or after it: the ratio survives the machine's speed drifting between fresh processes."""
    count = params["count"]
    with stderr_to_devnull():
        log = recompiles_logger()
        toggle = Toggle(params["endpoint"], fast_path=True, queue_size=count + count // 5 + 4096)
        pipelines = {False: Pipeline(), True: Pipeline(flush=toggle.flush, counters=lambda: {**toggle.sent})}
        message = make_message(SMALL_MESSAGE_BYTES)
        for on in (False, True):  # warm-up: caches, gRPC connection
            toggle.set(on)
            measure_records(log, pipelines[on], message, max(20, count // 10))
        settle_gc()
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for _, on in alternating(params["rounds"]):
            toggle.set(on)
            runs["on" if on else "off"].append(measure_records(log, pipelines[on], message, count))
        toggle.set(False)
    return {"runs": runs}


def time_calls(fn: Callable[[Any], Any], arg: Any, calls: int) -> dict[str, float]:
    """ns per call: wall, CPU of this thread, CPU of the whole process."""
    wall0, thread0, process0 = time.perf_counter_ns(), time.thread_time_ns(), time.process_time_ns()
    for _ in range(calls):
        fn(arg)
    wall1, thread1, process1 = time.perf_counter_ns(), time.thread_time_ns(), time.process_time_ns()
    return {"wall_ns": (wall1 - wall0) / calls, "thread_cpu_ns": (thread1 - thread0) / calls,
            "process_cpu_ns": (process1 - process0) / calls}


def run_steady(params: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch._logging

    calls, repetitions = params["calls"], params["repetitions"]
    with stderr_to_devnull():
        torch._logging.set_logs(recompiles=True, graph_breaks=True)
        toggle = Toggle(params["endpoint"])

        def small(x: torch.Tensor) -> torch.Tensor:
            return torch.sin(x) * 2 + 1

        compiled = torch.compile(small, backend="eager")
        x = torch.randn(8)
        times: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for on in (True, False):  # compile, and warm both states
            toggle.set(on)
            time_calls(compiled, x, max(1000, calls // 10))
        settle_gc()
        for _, on in alternating(repetitions):
            toggle.set(on)
            time_calls(compiled, x, 500)
            times["on" if on else "off"].append(time_calls(compiled, x, calls))
        toggle.set(False)
    return {"runs": times, "calls": calls}


def build_model() -> Any:
    import torch

    layers: list[torch.nn.Module] = []
    for _ in range(4):
        layers += [torch.nn.Linear(64, 64), torch.nn.GELU()]
    return torch.nn.Sequential(*layers)


class HookTimer:
    """Accumulates time spent in torch-otel's compile hooks (TorchHooks' phase tracking and its listeners) by
    wrapping TorchHooks._phase_event and TorchHooks._notify (private; best effort). Nested calls count once."""

    def __init__(self) -> None:
        self.ns = 0
        self.cpu_ns = 0
        self.calls = 0
        self._wrapped: Any = None
        self._depth = threading.local()

    def attach(self) -> bool:
        """Wrap the current TorchHooks (once per instrument() call); False if that is not possible."""
        from torch_otel.instrumentor import TorchInstrumentor

        hooks = TorchInstrumentor.hooks
        if hooks is not None and hooks is self._wrapped:
            return True
        targets = {name: getattr(hooks, name, None) for name in ("_phase_event", "_notify")}
        if None in targets.values():
            return False
        self._wrapped = hooks
        for name, method in targets.items():
            setattr(hooks, name, self._timed(method))
        return True

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            depth = getattr(self._depth, "value", 0)
            if depth:
                return method(*args)
            self._depth.value = 1
            start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
            try:
                return method(*args)
            finally:
                self.cpu_ns += time.thread_time_ns() - cpu_start
                self.ns += time.perf_counter_ns() - start
                self.calls += 1
                self._depth.value = 0

        return timed


def time_one_compile(model: Any, x: Any, toggle: Toggle) -> dict[str, float]:
    import torch

    torch._dynamo.reset()
    gc.collect()  # cheap after settle_gc(): only what earlier compiles left behind
    compiled = torch.compile(model, backend="aot_eager")
    cpu0, wall0, thread0 = time.process_time(), time.perf_counter(), time.thread_time()
    compiled(x)
    wall1, thread1 = time.perf_counter(), time.thread_time()
    toggle.flush()
    cpu1 = time.process_time()
    return {"wall_ms": (wall1 - wall0) * 1e3, "thread_cpu_ms": (thread1 - thread0) * 1e3,
            "cpu_ms": (cpu1 - cpu0) * 1e3}


def run_compile(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    repetitions = params["repetitions"]
    with stderr_to_devnull():
        toggle = Toggle(params["endpoint"])
        model, x = build_model(), torch.randn(8, 64)
        runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        timer = HookTimer()
        for on in (False, True):  # first compiles pay one-time imports and caches
            toggle.set(on)
            time_one_compile(model, x, toggle)
        settle_gc()
        for _, on in alternating(repetitions):
            toggle.set(on)
            timed = on and timer.attach()
            spans_before, hook_ns_before, hook_cpu_ns_before = toggle.span_count, timer.ns, timer.cpu_ns
            run = time_one_compile(model, x, toggle)
            if on:
                run["spans"] = toggle.span_count - spans_before
                run["hook_ms"] = (timer.ns - hook_ns_before) / 1e6 if timed else float("nan")
                run["hook_cpu_ms"] = (timer.cpu_ns - hook_cpu_ns_before) / 1e6 if timed else float("nan")
            runs["on" if on else "off"].append(run)
        toggle.set(False)
    return {"runs": runs}


# -- live compile events: the start record and the slow-compile watchdog, with torch-otel on in every state --------
LIVE_STATES = ("without", "default", "firing")
WATCHDOG_THREAD = "torch-otel-watchdog"


class LiveTimer:
    """CPU time inside the live events' own code: CompileSpans._start_event (the start record) and the watchdog
    listener's phase_started/phase_ended on the compiling thread (wrapped on the classes for the run)."""

    def __init__(self) -> None:
        from torch_otel.signals.spans import CompileSpans
        from torch_otel.signals.watchdog import CompileWatchdog

        self.ns = 0
        self.start_records = 0
        self.slow_records = 0
        self.enabled = True
        warn = CompileWatchdog._warn

        def counted_warn(watchdog: Any, due: Any) -> None:
            self.slow_records += 1
            warn(watchdog, due)

        CompileWatchdog._warn = counted_warn  # type: ignore[method-assign]
        for owner, name in ((CompileSpans, "_start_event"), (CompileWatchdog, "phase_started"),
                            (CompileWatchdog, "phase_ended")):
            setattr(owner, name, self._timed(getattr(owner, name), counts=name == "_start_event"))

    def _timed(self, method: Callable[..., Any], counts: bool) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            if counts and not self.enabled:
                return None  # the "without" state: no start record
            start = time.thread_time_ns()
            try:
                return method(*args)
            finally:
                self.ns += time.thread_time_ns() - start
                self.start_records += counts

        return timed


def run_live(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    repetitions = params["repetitions"]
    firing_threshold = params.get("firing_threshold", 0.02)
    with stderr_to_devnull():
        timer = LiveTimer()
        toggles = {"without": Toggle(params["endpoint"], slow_compile=None),
                   "default": Toggle(params["endpoint"]),
                   "firing": Toggle(params["endpoint"], slow_compile=firing_threshold)}
        model, x = build_model(), torch.randn(8, 64)
        runs: dict[str, list[dict[str, float]]] = {state: [] for state in LIVE_STATES}

        def one(state: str) -> dict[str, float]:
            toggle = toggles[state]
            timer.enabled = state != "without"
            toggle.set(True)
            try:
                live_ns, starts, slow = timer.ns, timer.start_records, timer.slow_records
                threads0 = thread_cpu_seconds()
                run = time_one_compile(model, x, toggle)
                threads1 = thread_cpu_seconds()
                run["live_ms"] = (timer.ns - live_ns) / 1e6
                run["start_records"] = timer.start_records - starts
                run["slow_records"] = timer.slow_records - slow
                run["watchdog_thread_ms"] = (threads1.get(WATCHDOG_THREAD, 0.0)
                                             - threads0.get(WATCHDOG_THREAD, 0.0)) * 1e3
            finally:
                toggle.set(False)
            return run

        for state in LIVE_STATES:  # first compiles pay one-time imports and caches
            one(state)
        settle_gc()
        for rep in range(repetitions):
            for state in LIVE_STATES[rep % 3:] + LIVE_STATES[:rep % 3]:
                runs[state].append(one(state))
    return {"runs": runs, "firing_threshold": firing_threshold}


# -- workload: transformer blocks compiled by inductor, with TORCH_LOGS set or unset -----------------------
WORKLOAD_TORCH_LOGS = "+dynamo,+inductor,recompiles,graph_breaks,guards,output_code"
OUR_THREAD_PREFIXES = ("torch-otel", "OtelBatch")  # the bridge's export thread and the SDK's batch processors


def build_transformer(blocks: int = 3, dim: int = 64, heads: int = 4) -> Any:
    """A few pre-norm transformer blocks: LayerNorm, causal attention (SDPA), residuals and a GELU MLP."""
    import torch
    import torch.nn.functional as F

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
            self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(), torch.nn.Linear(4 * dim, dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, d = x.shape
            q, k, v = (part.view(b, t, heads, d // heads).transpose(1, 2)
                       for part in self.qkv(self.norm1(x)).chunk(3, dim=-1))
            attention = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(attention.transpose(1, 2).reshape(b, t, d))
            return x + self.mlp(self.norm2(x))

    return torch.nn.Sequential(*(Block() for _ in range(blocks)))


class HandlerTimer:
    """Accumulates CPU time inside torch-otel's log handler (TorchLogHandler.handle, wrapped for the run). Thread
    CPU, not wall: a GIL hand-off to the export thread inside the handler would count that export twice."""

    def __init__(self) -> None:
        from torch_otel.capture.log_handler import TorchLogHandler

        self.ns = 0
        self.calls = 0
        original = TorchLogHandler.handle

        def timed(handler: Any, record: logging.LogRecord) -> bool:
            start = time.thread_time_ns()
            try:
                return original(handler, record)
            finally:
                self.ns += time.thread_time_ns() - start
                self.calls += 1

        TorchLogHandler.handle = timed  # type: ignore[method-assign]


def time_workload_compile(model: Any, x: Any, toggle: Toggle, handler: HandlerTimer,
                          hooks: HookTimer) -> dict[str, float]:
    """One inductor compile from scratch (caches off); torch-otel's self-time is what ran in its handler, its
    hooks, its export and the SDK's batch threads, and the final flush."""
    import torch

    torch._dynamo.reset()
    gc.collect()
    compiled = torch.compile(model)
    timed_hooks = toggle.on and hooks.attach()
    handler_ns, handler_calls, hook_ns, spans = handler.ns, handler.calls, hooks.cpu_ns, toggle.span_count
    threads0 = thread_cpu_seconds()
    cpu0, wall0, thread0 = time.process_time(), time.perf_counter(), time.thread_time()
    with torch._inductor.config.patch(force_disable_caches=True):
        compiled(x)
    wall1, thread1 = time.perf_counter(), time.thread_time()
    toggle.flush()
    flush_cpu = time.thread_time() - thread1
    cpu1, threads1 = time.process_time(), thread_cpu_seconds()
    ours = {name: (seconds - threads0.get(name, 0.0)) * 1e3 for name, seconds in threads1.items()
            if name.startswith(OUR_THREAD_PREFIXES)}
    run = {"wall_ms": (wall1 - wall0) * 1e3, "thread_cpu_ms": (thread1 - thread0) * 1e3, "cpu_ms": (cpu1 - cpu0) * 1e3}
    if toggle.on:
        run.update(records=handler.calls - handler_calls, spans=toggle.span_count - spans,
                   handler_ms=(handler.ns - handler_ns) / 1e6,
                   hook_ms=(hooks.cpu_ns - hook_ns) / 1e6 if timed_hooks else float("nan"),
                   export_ms=sum(ours.values()) + flush_cpu * 1e3, threads_ms=ours)
        run["self_ms"] = run["handler_ms"] + run["hook_ms"] + run["export_ms"]
    return run


def run_workload(params: dict[str, Any]) -> dict[str, Any]:
    """Compiles with TORCH_LOGS as the environment set it (WORKLOAD_TORCH_LOGS, or unset: spans only)."""
    import torch

    repetitions = params["repetitions"]
    with stderr_to_devnull(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # force_disable_caches warns once per compile
        toggle = Toggle(params["endpoint"], fast_path=True)
        model, x = build_transformer(), torch.randn(2, 16, 64)
        handler, hooks = HandlerTimer(), HookTimer()
        for on in (False, True):  # the first compile pays one-time imports and inductor's warm-up
            toggle.set(on)
            time_workload_compile(model, x, toggle, handler, hooks)
        settle_gc()
        runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for _, on in alternating(repetitions):
            toggle.set(on)
            runs["on" if on else "off"].append(time_workload_compile(model, x, toggle, handler, hooks))
        toggle.set(False)
    return {"runs": runs, "torch_logs": os.environ.get("TORCH_LOGS", "")}


# -- load: memory with the collector down, throughput with it up ----------------------------------------------
def peak_rss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def emit_paced(log: logging.Logger, message: str, seconds: float, rate: float | None) -> int:
    """Emit for ``seconds``, flat out (``rate`` None) or at ``rate`` records/s in chunks of 100; returns the count."""
    chunk, emitted = 100, 0
    started = time.perf_counter()
    while (now := time.perf_counter()) - started < seconds:
        if rate is not None and emitted > (now - started) * rate:
            time.sleep(min(0.01, emitted / rate - (now - started)))
            continue
        emit_records(log, message, chunk)
        emitted += chunk
    return emitted


def run_load(params: dict[str, Any]) -> dict[str, Any]:
    """Setup b (stderr only) or d (torch-otel's fast path, default settings) under load. ``records`` set: emit that
    many flat out (memory; the collector is down); else emit for ``seconds`` at ``rate`` (throughput)."""
    import torch_otel

    with stderr_to_devnull():
        log = recompiles_logger()
        pipeline = build_pipeline(params["setup"], params["endpoint"], torch_otel.Settings().queue_size)
        message = make_message(SMALL_MESSAGE_BYTES)
        settle_gc()
        rss_before = peak_rss_kib()
        started = time.perf_counter()
        if params.get("records"):
            emit_records(log, message, params["records"])
            emitted = params["records"]
        else:
            emitted = emit_paced(log, message, params["seconds"], params.get("rate"))
        elapsed = time.perf_counter() - started
        if params.get("flush", True):
            pipeline.flush()
        return {"emitted": emitted, "seconds": elapsed, "rss_growth_mib": (peak_rss_kib() - rss_before) / 1024,
                **pipeline.counters()}


MODES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "records": run_records, "steady": run_steady, "compile": run_compile, "workload": run_workload,
    "load": run_load, "paired": run_paired, "live": run_live,
}


def main(argv: list[str]) -> None:
    mode, params = argv[1], json.loads(argv[2])
    allowed = {"TORCH_LOGS": WORKLOAD_TORCH_LOGS} if mode == "workload" else {}
    for variable in ("TORCH_LOGS", "TORCH_TRACE", "TORCH_LOGS_OUT"):
        if variable in os.environ and os.environ[variable] != allowed.get(variable):
            raise SystemExit(f"{variable} must be unset in benchmark children (or {allowed} for the workload)")
    result = MODES[mode](params)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv)
