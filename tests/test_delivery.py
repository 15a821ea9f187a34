"""The delivery ledger and what reads it: the counting exporters, the exit line, and torch's helper detection."""

from __future__ import annotations

import os
import sys
import types

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader, MetricExporter, MetricExportResult, PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from torch_otel.tools import autostart
from torch_otel.tools.autostart import Losses
from torch_otel.exporters.delivery import Ledger, Tally
from torch_otel.exporters.sdk_setup import CountingMetricExporter, CountingSpanExporter, run_bounded


class RecordingMetricExporter(MetricExporter):
    def __init__(self, result: MetricExportResult = MetricExportResult.SUCCESS) -> None:
        super().__init__()
        self.result = result
        self.exports = 0
        self.shutdowns = 0

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        self.exports += 1
        return self.result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self.shutdowns += 1


def collection(with_point: bool):
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    counter = provider.get_meter("m").create_counter("c")
    if with_point:
        counter.add(1)
    return reader.get_metrics_data()


def test_tally_counts_what_was_not_confirmed():
    tally = Tally()
    tally.accept(10)
    tally.settle(4, succeeded=True)
    tally.settle(3, succeeded=False)
    assert (tally.undelivered, tally.failed, tally.failed_requests) == (6, 3, 1)  # 3 failed, 3 still pending
    tally.reset()
    assert (tally.accepted, tally.delivered, tally.undelivered) == (0, 0, 0)


def test_metric_exports_without_points_are_skipped_and_failures_counted():
    inner, tally = RecordingMetricExporter(MetricExportResult.FAILURE), Tally()
    exporter = CountingMetricExporter(inner, tally)
    assert exporter.export(collection(with_point=False)) == MetricExportResult.SUCCESS
    assert inner.exports == 0 and tally.accepted == 0
    assert exporter.export(collection(with_point=True)) == MetricExportResult.FAILURE
    assert (tally.accepted, tally.failed_requests, tally.undelivered) == (1, 1, 1)


def test_a_forked_child_never_exports_the_inherited_metric_instruments():
    inner, tally = RecordingMetricExporter(), Tally()
    exporter = CountingMetricExporter(inner, tally)
    exporter._pid = os.getpid() + 1  # as seen from a child forked after the exporter was built
    assert exporter.export(collection(with_point=True)) == MetricExportResult.SUCCESS
    assert inner.exports == 0 and tally.accepted == 0


def test_a_forked_child_builds_its_own_span_exporter_and_close_happens_once():
    built = []

    class Exporter:
        def __init__(self) -> None:
            self.shutdowns = 0
            built.append(self)

        def export(self, spans):
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            self.shutdowns += 1

    tally = Tally()
    exporter = CountingSpanExporter(Exporter, tally)
    exporter._pid = os.getpid() + 1
    assert exporter.export(["a", "b"]) == SpanExportResult.SUCCESS
    assert len(built) == 2 and tally.delivered == 2
    exporter.close()
    exporter.shutdown()
    assert [e.shutdowns for e in built] == [0, 1]


def test_a_periodic_reader_shutdown_counts_its_final_export():
    inner, tally = RecordingMetricExporter(MetricExportResult.FAILURE), Tally()
    reader = PeriodicExportingMetricReader(CountingMetricExporter(inner, tally), export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider.get_meter("m").create_counter("c").add(2)
    provider.shutdown()
    assert (tally.accepted, tally.undelivered, inner.shutdowns) == (1, 1, 1)


@pytest.mark.parametrize("losses, expected", [
    (Losses(undelivered_records=1), "not delivered (failed, or still queued at exit): 1 log record; "),
    (Losses(undelivered_records=2, undelivered_spans=1, undelivered_metric_exports=1),
     "not delivered (failed, or still queued at exit): 2 log records, 1 span, 1 metric export; "),
    (Losses(undelivered_spans=24, undelivered_metric_exports=2, metric_count_is_lower_bound=True),
     "not delivered (failed, or still queued at exit): 24 spans, at least 2 metric exports; "),
    (Losses(dropped_records=1_500), "1,500 log records dropped because the queue was full "),
    (Losses(failed_requests=1), "1 export request failed; "),
])
def test_the_exit_line_counts_each_signal_in_words(losses, expected):
    assert losses.summary().startswith(expected)


def test_nothing_lost_says_nothing_and_a_missed_deadline_is_said():
    assert Losses().summary() == ""
    assert "did not finish within TORCH_OTEL_SHUTDOWN_TIMEOUT=2s" in Losses().summary(timed_out_after=2.0)


def test_losses_add_the_bridge_to_the_ledger():
    ledger = Ledger()
    ledger.logs.accept(5)
    ledger.logs.settle(5, succeeded=False)
    ledger.traces.accept(3)
    bridge = types.SimpleNamespace(dropped=2, undelivered=4)
    losses = Losses.read(bridge, ledger)
    assert (losses.undelivered_records, losses.undelivered_spans, losses.dropped_records) == (9, 3, 2)
    assert losses.failed_requests == 1


def test_run_bounded_hurries_what_overruns_and_names_what_did_not_finish():
    import threading

    release = threading.Event()
    hurried = []
    unfinished = run_bounded({"stuck": lambda: release.wait(5), "quick": lambda: None}, seconds=0.5,
                             on_overrun=lambda: hurried.append(True))
    assert unfinished == {"stuck"} and hurried == [True]
    release.set()
    assert run_bounded({"slow": lambda: release.wait(5)}, 1.0, on_overrun=release.set) == set()


@pytest.mark.parametrize("main, expected", [
    ({"__file__": "{torch}/_inductor/compile_worker/__main__.py"}, True),
    ({"__spec__": "torch._inductor.compile_worker"}, True),
    ({"__spec__": "torch.distributed.run"}, False),
    ({"__file__": "{torch}/distributed/run.py"}, False),
    ({"__file__": "/home/me/train.py"}, False),
    ({}, False),
])
def test_torch_helpers_are_told_by_their_main_module(monkeypatch, main, expected):
    import torch

    torch_dir = os.path.dirname(torch.__file__)
    module = types.ModuleType("__main__")
    if "__file__" in main:
        module.__file__ = main["__file__"].format(torch=torch_dir)
    module.__spec__ = types.SimpleNamespace(name=main["__spec__"]) if "__spec__" in main else None
    monkeypatch.setitem(sys.modules, "__main__", module)
    assert autostart.is_torch_helper() is expected
