"""The fast path's OTLP encoding is byte-for-byte meaningful: decoded with the official protos it equals what
the SDK pipeline would have sent for the same torch records."""

from __future__ import annotations

import logging

import pytest
import torch
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk.resources import Resource

import torch_otel
from torch_otel.exporters.delivery import Tally
from torch_otel.exporters.otlp_wire import EncodedBatch, LogEncoder, WireLogSink, any_value, varint
from torch_otel.config.settings import Settings

from inmemory import LogCapture, app_tracer, instrumented, recompiling_workload
from torch_state import preserved_torch_logging


@pytest.fixture(autouse=True)
def clean_torch_logging():
    with preserved_torch_logging():
        yield


class RecordingExporter:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[EncodedBatch] = []
        self.fail = fail

    def send(self, batch: EncodedBatch) -> bool:
        self.batches.append(batch)
        return not self.fail

    def shutdown(self) -> None:
        pass


def comparable(request: ExportLogsServiceRequest) -> list[tuple]:
    rows = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                rows.append((scope_logs.scope.name, scope_logs.scope.version, record.time_unix_nano, record.observed_time_unix_nano,
                             record.severity_number, record.severity_text, record.body.string_value,
                             sorted((kv.key, kv.value.SerializeToString()) for kv in record.attributes),
                             record.event_name, record.trace_id, record.span_id, record.flags))
    return sorted(rows)


def test_fast_path_encoding_equals_the_sdk_encoding_of_the_same_records():
    resource = Resource.create({"service.name": "wire-test"})
    capture = LogCapture()
    capture.provider._resource = resource
    exporter = RecordingExporter()
    sink = WireLogSink(exporter, LogEncoder(dict(resource.attributes), torch.__version__), 3 * 1024 * 1024, Tally())
    torch._logging.set_logs(dynamo=logging.DEBUG, recompiles=True, graph_breaks=True, guards=True)
    with instrumented(capture, Settings(spans=False, metrics=False)):
        bridge = torch_otel.TorchInstrumentor.bridge
        with app_tracer().start_as_current_span("request"):
            with bridge._export_lock:  # keep the records queued so both paths see the same ones
                recompiling_workload()
                try:
                    raise ValueError("with an exception")
                except ValueError:
                    logging.getLogger("torch._dynamo").exception("failing %s", "here")
                items = bridge._queue.drain()
        sink.export((bridge._converter.prepare(item) for item in items), len(items))
        for item in items:
            bridge._converter.emit(item)
        sdk_records = capture.records()
    ours = ExportLogsServiceRequest()
    for batch in exporter.batches:
        ours.MergeFromString(batch.data)
    assert len(items) > 50 and sum(b.records for b in exporter.batches) == len(items)
    assert comparable(ours) == comparable(encode_logs(sdk_records))
    assert dict((kv.key, kv.value.string_value) for kv in ours.resource_logs[0].resource.attributes)["service.name"] \
        == "wire-test"


def test_batches_stay_under_the_byte_budget_and_failures_are_counted():
    tally = Tally()
    exporter = RecordingExporter(fail=True)
    encoder = LogEncoder({"service.name": "x"}, "1")
    sink = WireLogSink(exporter, encoder, 100_000, tally)
    from torch_otel.signals.log_records import CallSite, WireRecord
    from opentelemetry.context import Context

    site = CallSite("torch._dynamo", 5, "DEBUG", {}, None)
    records = [WireRecord(site, i, "y" * 30_000, {"i": i}, Context()) for i in range(10)]
    sink.export(records, len(records))
    assert [b.records for b in exporter.batches] == [3, 3, 3, 1]
    assert all(len(b.data) <= 100_000 for b in exporter.batches)
    # lost records, counted per failed request
    assert (tally.accepted, tally.delivered, tally.failed, tally.failed_requests) == (10, 0, 10, 4)
    decoded = [ExportLogsServiceRequest.FromString(b.data) for b in exporter.batches]
    assert [r.attributes[0].value.int_value for d in decoded for r in d.resource_logs[0].scope_logs[0].log_records] \
        == list(range(10))


@pytest.mark.parametrize("value", ["", "é" * 200, True, False, 0, -1, 2**63 - 1, 1.25, ["a", 1, 2.5], ()])
def test_any_value_matches_protobuf(value):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    decoded = AnyValue.FromString(any_value(value))
    if isinstance(value, (list, tuple)):
        assert decoded.HasField("array_value") and len(decoded.array_value.values) == len(value)
    elif isinstance(value, bool):
        assert decoded.bool_value is value
    elif isinstance(value, int):
        assert decoded.int_value == value
    elif isinstance(value, float):
        assert decoded.double_value == value
    else:
        assert decoded.string_value == value


def test_varint():
    from google.protobuf.internal.encoder import _VarintBytes

    for value in (0, 1, 127, 128, 300, 16383, 16384, 2**35, 2**64 - 1):
        assert varint(value) == _VarintBytes(value)
