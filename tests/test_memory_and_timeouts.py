"""The bridge's memory is bounded in bytes and its timeouts are kept: bodies and exception texts are cut when
queued, the queue holds at most TORCH_OTEL_QUEUE_BYTES, no traceback keeps a frame alive, and flush(timeout)
returns while a send it started is still stuck."""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import weakref

import pytest

import torch_otel
from collector import TcpBlackhole
from e2e import BIN, run_child
from inmemory import LogCapture, instrumented
from torch_otel.capture.log_handler import CutText, held_bytes
from torch_otel.config.settings import Settings

LOGGER = logging.getLogger("torch._dynamo")


def queued(settings: Settings, emit) -> list:
    """The records the bridge queued while ``emit`` ran, before the export thread took them."""
    with instrumented(LogCapture(), settings):
        bridge = torch_otel.TorchInstrumentor.bridge
        with bridge._export_lock:
            emit()
            return bridge._queue.drain()


def test_a_body_is_cut_when_queued_and_its_size_kept():
    items = queued(Settings(spans=False, metrics=False, max_body_bytes=1024),
                   lambda: LOGGER.warning("%s", "ü" * 5000))
    (item,) = [i for i in items if i.message.startswith("ü")]
    assert isinstance(item.message, CutText) and len(item.message) == 1024
    assert item.message.original_size == 10_000  # bytes of UTF-8


def test_the_export_marks_a_body_cut_in_the_queue():
    capture = LogCapture()
    with instrumented(capture, Settings(spans=False, metrics=False, max_body_bytes=1024)):
        LOGGER.warning("%s", "y" * 100_000)
        torch_otel.flush(5)
    (record,) = [r for r in capture.records() if str(r.log_record.body).startswith("y")]
    assert len(record.log_record.body) == 1024
    assert record.log_record.attributes["pytorch.log.truncated"] is True
    assert record.log_record.attributes["pytorch.log.original_size"] == 100_000


def test_an_exception_is_queued_as_text_and_frees_its_frames():
    class Payload:
        pass

    def fail(payload: Payload) -> None:
        raise ValueError("x" * 50_000)

    def emit() -> None:
        payload = Payload()
        emit.ref = weakref.ref(payload)
        try:
            fail(payload)
        except ValueError:
            LOGGER.exception("failed")

    items = queued(Settings(spans=False, metrics=False, max_body_bytes=2048), emit)
    gc.collect()
    assert emit.ref() is None, "a queued record kept the raising frame's locals alive"
    (item,) = [i for i in items if i.message == "failed"]
    assert item.exception.type == "ValueError"
    assert len(item.exception.message) == 2048 and len(item.exception.stacktrace) <= 2048


def test_the_queue_drops_what_would_exceed_its_bytes_and_counts_it():
    settings = Settings(spans=False, metrics=False, max_body_bytes=64 * 1024, queue_bytes=1 << 20)
    with instrumented(LogCapture(), settings):
        bridge = torch_otel.TorchInstrumentor.bridge
        with bridge._export_lock:  # the export thread is "stuck": nothing leaves the queue
            for _ in range(100):
                LOGGER.warning("%s", "z" * 1_000_000)
            held = bridge._queue.bytes_held
            dropped = bridge.dropped
            items = bridge._queue.drain()
            bridge._queue.release(items)
    assert held <= 1 << 20 and sum(map(held_bytes, items)) == held
    assert len(items) == 15 and dropped == 85  # 16 × 64 KiB would pass 1 MiB
    assert bridge._queue.bytes_held == 0


@pytest.mark.slow
def test_flush_returns_at_its_timeout_while_the_send_is_still_stuck():
    """A collector that accepts and never answers: the send blocks for the exporter's own 10 s deadline, and
    flush(1.0) returns False with that send still running."""
    hole = TcpBlackhole()
    script = (
        "import json, logging, threading, torch, torch_otel\n"
        "logging.getLogger('torch._dynamo').warning('to a black hole')\n"
        "returned = torch_otel.flush(1.0)\n"
        "still_sending = any(t.name == 'torch-otel-flush' and t.is_alive() for t in threading.enumerate())\n"
        "print(json.dumps({'returned': returned, 'still_sending': still_sending}), flush=True)\n"
        "import os; os._exit(0)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=hole.endpoint, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
    try:
        run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", script], env, timeout=60)
    finally:
        hole.close()
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1]) == {"returned": False, "still_sending": True}


@pytest.mark.slow
def test_large_records_to_a_blackholed_collector_stay_within_the_queue_bytes():
    """300 records of 1 MB with the collector blackholed: the process's peak RSS grows by at most 64 MiB more than
    the same program's without torch-otel (bodies are cut to 64 KiB when queued; the queue holds 32 MiB)."""
    script = (
        "import json, logging, time, torch\n"
        "def status(field):\n"
        "    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith(field))\n"
        "log = logging.getLogger('torch._dynamo')\n"
        "for handler in [h for h in log.handlers if type(h) is logging.StreamHandler]:\n"
        "    log.removeHandler(handler)  # torch's stderr printing is not what is measured\n"
        "before = status('VmRSS:')\n"
        "open('/proc/self/clear_refs', 'w').write('5')  # the peak starts again from here\n"
        "for i in range(300):\n"
        "    log.warning('%d %s', i, 'm' * 1_000_000)\n"
        "time.sleep(2)  # the export thread at work on what was queued\n"
        "print(json.dumps({'grew_kib': status('VmHWM:') - before}), flush=True)\n"
        "import os; os._exit(0)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    plain = run_child([sys.executable, "-c", script], env, timeout=120)
    hole = TcpBlackhole()
    try:
        bridged = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", script],
                            {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": hole.endpoint}, timeout=120)
    finally:
        hole.close()
    assert plain.returncode == 0 and bridged.returncode == 0, bridged.stderr[-2000:]
    grew = [json.loads(run.stdout.splitlines()[-1])["grew_kib"] for run in (plain, bridged)]
    assert grew[1] - grew[0] <= 64 * 1024, f"RSS grew by {grew[1]} KiB with torch-otel, {grew[0]} KiB without"
