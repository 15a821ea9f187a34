"""Proves the harness: real OTel SDK -> real rotel-agent (gRPC and HTTP) -> OtlpSink, fields intact."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from opentelemetry._logs import SeverityNumber
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from collector import RotelCollector
from otlp_sink import OtlpSink, any_value

PROTOCOLS = ["grpc", "http/protobuf"]


def _exporters(protocol: str) -> tuple[Any, Any, Any]:
    """(log, span, metric) exporters configured only from OTEL_EXPORTER_OTLP_* env vars."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # type: ignore[assignment]
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    return OTLPLogExporter(), OTLPSpanExporter(), OTLPMetricExporter()


@pytest.mark.collector
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sdk_signals_arrive_intact(
    protocol: str, collector: RotelCollector, otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("OTEL_EXPORTER_OTLP_")]:
        monkeypatch.delenv(key)
    for key, value in collector.otel_env(protocol).items():
        monkeypatch.setenv(key, value)
    run_id = uuid.uuid4().hex
    resource = Resource.create({"service.name": "harness", "run.id": run_id})
    log_exp, span_exp, metric_exp = _exporters(protocol)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exp))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exp))
    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(
        metric_readers=[reader], resource=resource, exemplar_filter=TraceBasedExemplarFilter(),
        views=[View(instrument_name="harness.latency", attribute_keys={"op"},
                    aggregation=ExplicitBucketHistogramAggregation([1.0, 10.0, 100.0]))],
    )
    meter = meter_provider.get_meter("harness.meter", "1.2")
    counter = meter.create_counter("harness.calls", unit="1")
    histogram = meter.create_histogram("harness.latency", unit="ms")
    tracer = tracer_provider.get_tracer("harness.tracer", "0.1")
    try:
        with tracer.start_as_current_span("parent") as parent:
            with tracer.start_as_current_span("child", kind=SpanKind.CLIENT,
                                              attributes={"s": "x", "i": 7, "f": 1.5, "b": True, "l": [1, 2]}) as child:
                child.add_event("evt", {"k": "v", "n": 3})
                child.set_status(Status(StatusCode.ERROR, "boom"))
                logger_provider.get_logger("harness.logger", "3.4").emit(
                    event_name="torch_otel.harness", body={"msg": "hi", "vals": [1, "a"]},
                    severity_number=SeverityNumber.WARN, severity_text="WARN",
                    attributes={"s": "x", "i": -1, "f": 0.25, "b": False, "bytes": b"\x00\xff", "l": ["a", "b"]},
                )
                counter.add(3, {"op": "compile"})
                counter.add(2, {"op": "compile"})
                histogram.record(5.0, {"op": "compile", "graph": "g1"})
                histogram.record(50.0, {"op": "compile", "graph": "g1"})
    finally:
        for provider in (tracer_provider, logger_provider, meter_provider):
            provider.shutdown()  # the metric reader's final collect+export happens here (exactly once)
    trace_id = format(child.get_span_context().trace_id, "032x")
    child_id = format(child.get_span_context().span_id, "016x")
    parent_id = format(parent.get_span_context().span_id, "016x")

    spans = otlp_sink.wait_for(lambda s: {x.name: x for x in s.spans()} if len(s.spans()) >= 2 else None)
    assert spans["child"].trace_id == spans["parent"].trace_id == trace_id
    assert (spans["child"].span_id, spans["child"].parent_span_id) == (child_id, parent_id)
    assert spans["parent"].parent_span_id == ""
    assert spans["child"].attributes == {"s": "x", "i": 7, "f": 1.5, "b": True, "l": [1, 2]}
    assert spans["child"].events == [("evt", {"k": "v", "n": 3})]
    assert (spans["child"].status_code, spans["child"].status_message) == (2, "boom")  # STATUS_CODE_ERROR
    assert spans["child"].kind == 3  # SPAN_KIND_CLIENT
    assert (spans["child"].scope_name, spans["child"].scope_version) == ("harness.tracer", "0.1")
    assert spans["child"].resource["run.id"] == run_id

    [log] = otlp_sink.wait_for(lambda s: s.log_records())
    assert log.event_name == "torch_otel.harness"  # LogRecord field 12 survives rotel
    assert log.body == {"msg": "hi", "vals": [1, "a"]}
    assert (log.severity_number, log.severity_text) == (SeverityNumber.WARN.value, "WARN")
    assert log.attributes == {"s": "x", "i": -1, "f": 0.25, "b": False, "bytes": b"\x00\xff", "l": ["a", "b"]}
    assert (log.trace_id, log.span_id) == (trace_id, child_id)
    assert (log.scope_name, log.scope_version, log.resource["run.id"]) == ("harness.logger", "3.4", run_id)

    points = otlp_sink.wait_for(lambda s: {p.name: p for p in s.metrics()} if len(s.metrics()) >= 2 else None)
    calls, latency = points["harness.calls"], points["harness.latency"]
    assert (calls.type, calls.value, calls.is_monotonic, calls.unit) == ("sum", 5, True, "1")
    assert calls.attributes == {"op": "compile"} and calls.resource["run.id"] == run_id
    assert calls.exemplars and all((e.trace_id, e.span_id) == (trace_id, child_id) for e in calls.exemplars)
    assert (latency.type, latency.count, latency.sum, latency.min, latency.max) == ("histogram", 2, 55.0, 5.0, 50.0)
    assert (latency.explicit_bounds, latency.bucket_counts) == ([1.0, 10.0, 100.0], [0, 1, 1, 0])
    assert latency.attributes == {"op": "compile"}
    assert sorted(e.value for e in latency.exemplars) == [5.0, 50.0]
    for e in latency.exemplars:
        assert (e.trace_id, e.span_id, e.filtered_attributes) == (trace_id, child_id, {"graph": "g1"})


CHILD = textwrap.dedent("""
    import os
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    if os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    tp.get_tracer("child").start_span("from-child").end()
    tp.shutdown()
""")


@pytest.mark.collector
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_child_env_reaches_collector(protocol: str, collector: RotelCollector, otlp_sink: OtlpSink) -> None:
    env = collector.child_env(protocol, base={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9"})
    subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, timeout=60)
    assert [s.name for s in otlp_sink.wait_for(lambda s: s.spans())] == ["from-child"]


# -- raw-protobuf fidelity: every OTLP field set, compared with what rotel forwards ------------------------
# rotel 0.0.1-alpha10 drops only these newest/experimental fields (string-table indices, entity refs).
ROTEL_DROPS = {"entity_refs", "key_strindex", "string_value_strindex"}


def _is_repeated(field: Any) -> bool:
    # protobuf 7 has only FieldDescriptor.is_repeated; 5.x (paired with the OTel floor) only its label.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _populate(msg: Message, depth: int = 0) -> Message:
    """Set every field (first member of each oneof, one element per repeated field) to a distinct value."""
    seen_oneofs: set[str] = set()
    for f in msg.DESCRIPTOR.fields:
        if f.containing_oneof is not None:
            if f.containing_oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(f.containing_oneof.name)
        if f.message_type is not None:
            if depth < 8:
                _populate(getattr(msg, f.name).add() if _is_repeated(f) else getattr(msg, f.name), depth + 1)
            continue
        value: Any = {f.TYPE_STRING: f"{f.name}-{depth}", f.TYPE_BOOL: True, f.TYPE_DOUBLE: depth + 0.5,
                      f.TYPE_ENUM: 1, f.TYPE_BYTES: bytes(range(1, 17 if "trace_id" in f.name else 9))
                      }.get(f.type, depth + 3)
        if _is_repeated(f):
            getattr(msg, f.name).append(value)
        else:
            setattr(msg, f.name, value)
    return msg


def _strip(msg: Message, names: set[str]) -> Message:
    for f, value in msg.ListFields():
        if f.name in names:
            msg.ClearField(f.name)
        elif f.message_type is not None:
            for sub in value if _is_repeated(f) else [value]:
                _strip(sub, names)
    return msg


def _full_requests() -> dict[str, Message]:
    logs = _populate(logs_service_pb2.ExportLogsServiceRequest())
    attrs = logs.resource_logs[0].scope_logs[0].log_records[0].attributes  # type: ignore[attr-defined]
    for kind, v in [("string_value", "s"), ("bool_value", True), ("int_value", -7), ("double_value", 1.25),
                    ("bytes_value", b"\x00\xff")]:
        kv = attrs.add(key=kind)
        setattr(kv.value, kind, v)
    attrs.add(key="arr").value.array_value.values.add(int_value=1)
    attrs.add(key="kvl").value.kvlist_value.values.add(key="in").value.double_value = 2.0
    metrics = _populate(metrics_service_pb2.ExportMetricsServiceRequest())
    for kind in ("sum", "histogram", "exponential_histogram", "summary"):
        m = metrics.resource_metrics[0].scope_metrics[0].metrics.add(name=kind)  # type: ignore[attr-defined]
        _populate(getattr(m, kind), 1)
    return {"logs": logs, "traces": _populate(trace_service_pb2.ExportTraceServiceRequest()), "metrics": metrics}


STUBS: dict[str, Any] = {
    "logs": logs_service_pb2_grpc.LogsServiceStub,
    "traces": trace_service_pb2_grpc.TraceServiceStub,
    "metrics": metrics_service_pb2_grpc.MetricsServiceStub,
}


@pytest.mark.collector
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rotel_forwards_every_stable_otlp_field(protocol: str, collector: RotelCollector, otlp_sink: OtlpSink) -> None:
    for signal, request in _full_requests().items():
        if protocol == "grpc":
            with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
                STUBS[signal](channel).Export(request, timeout=5)
        else:
            http_request = urllib.request.Request(
                f"{collector.http_endpoint}/v1/{signal}", data=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"})
            with urllib.request.urlopen(http_request, timeout=5) as response:
                assert response.status == 200
        [received] = otlp_sink.wait_for(lambda s: s.requests(signal))
        assert received != request, f"rotel now forwards one of {ROTEL_DROPS}; update ROTEL_DROPS"
        assert received == _strip(copy.deepcopy(request), ROTEL_DROPS), f"{signal}: rotel lost more than {ROTEL_DROPS}"


# -- collector behaviour later fault-injection tests rely on ---------------------------------------------------
def _send_log(collector: RotelCollector, body: str, size: int = 0) -> None:
    request = logs_service_pb2.ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = body + "x" * size
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}",
                               options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=5)


@pytest.mark.collector
def test_oversize_grpc_request_rejected_collector_survives(collector: RotelCollector, otlp_sink: OtlpSink) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _send_log(collector, "big", size=(4 << 20) + 1)
    # Not RESOURCE_EXHAUSTED: rotel answers OUT_OF_RANGE, which the Python OTLP exporter treats as retryable.
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE  # type: ignore[attr-defined]
    assert "limit is: 4194304" in err.value.details()  # type: ignore[attr-defined]
    _send_log(collector, "small")
    assert [r.body for r in otlp_sink.wait_for(lambda s: s.log_records())] == ["small"]
    assert collector.running()


@pytest.mark.collector
def test_stop_flushes_kill_loses_restart_keeps_ports(
    make_collector: Callable[..., RotelCollector], otlp_sink: OtlpSink
) -> None:
    collector = make_collector({"--batch-timeout": "30s"})  # data would sit in rotel's batch for 30 s
    ports = (collector.grpc_port, collector.http_port)
    _send_log(collector, "flushed")
    assert collector.stop() == 0
    assert [r.body for r in otlp_sink.log_records()] == ["flushed"]  # SIGTERM flushes synchronously
    collector.start()
    assert (collector.grpc_port, collector.http_port) == ports
    _send_log(collector, "lost")
    assert collector.kill() == -9
    collector.restart()
    assert collector.running() and (collector.grpc_port, collector.http_port) == ports
    _send_log(collector, "after-restart")
    collector.stop()
    assert [r.body for r in otlp_sink.log_records()] == ["flushed", "after-restart"]


@pytest.mark.collector
def test_collector_retries_when_sink_unavailable(collector: RotelCollector, otlp_sink: OtlpSink) -> None:
    otlp_sink.fail_next(2, grpc.StatusCode.UNAVAILABLE)
    _send_log(collector, "retried")
    assert [r.body for r in otlp_sink.wait_for(lambda s: s.log_records())] == ["retried"]
    assert [signal for signal, _ in otlp_sink.metadata()] == ["logs"] * 3


# -- sink-only unit tests (no collector) --------------------------------------------------------------
def test_any_value_conversion() -> None:
    value = common_pb2.AnyValue()
    kv = value.kvlist_value.values
    for key, kind, v in [("s", "string_value", "a"), ("i", "int_value", 2), ("d", "double_value", 0.5),
                         ("b", "bool_value", True), ("y", "bytes_value", b"\x01")]:
        setattr(kv.add(key=key).value, kind, v)
    kv.add(key="arr").value.array_value.values.add().string_value = "z"
    kv.add(key="unset")
    assert any_value(value) == {"s": "a", "i": 2, "d": 0.5, "b": True, "y": b"\x01", "arr": ["z"], "unset": None}


def test_wait_for_times_out_with_summary(otlp_sink: OtlpSink) -> None:
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"requests=\{'logs': 0"):
        otlp_sink.wait_for(lambda s: s.spans(), timeout=0.1)
    assert time.monotonic() - start < 2
