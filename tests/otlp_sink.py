"""In-process OTLP/gRPC capture server that records requests and flattens them for assertions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_svc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_svc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc
from opentelemetry.proto.common.v1 import common_pb2

T = TypeVar("T")
SIGNALS = ("logs", "traces", "metrics")


def any_value(value: common_pb2.AnyValue) -> Any:
    """Convert an OTLP AnyValue into the equivalent plain Python value (unset -> None)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attrs(value.kvlist_value.values)
    return getattr(value, kind)


def attrs(kvs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    """Convert repeated KeyValue into a dict."""
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class ReceivedLog:
    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    body: Any
    severity_number: int
    severity_text: str
    attributes: dict[str, Any]
    event_name: str
    trace_id: str
    span_id: str
    time_unix_nano: int
    observed_time_unix_nano: int
    flags: int


@dataclass(frozen=True)
class ReceivedSpan:
    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str, dict[str, Any]]]
    status_code: int
    status_message: str
    start_time_unix_nano: int
    end_time_unix_nano: int


@dataclass(frozen=True)
class ReceivedExemplar:
    value: int | float
    trace_id: str
    span_id: str
    filtered_attributes: dict[str, Any]
    time_unix_nano: int


@dataclass(frozen=True)
class ReceivedPoint:
    """One metric data point; fields not meaningful for `type` are left at their defaults."""

    resource: dict[str, Any]
    scope_name: str
    name: str
    type: str  # "sum" | "gauge" | "histogram" | "exponential_histogram" | "summary"
    unit: str
    description: str
    attributes: dict[str, Any]
    start_time_unix_nano: int
    time_unix_nano: int
    value: int | float | None = None  # sum / gauge
    is_monotonic: bool | None = None  # sum only
    temporality: int = 0  # AggregationTemporality enum (sum / histograms)
    count: int | None = None  # histograms / summary
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)
    exemplars: list[ReceivedExemplar] = field(default_factory=list)


def _exemplars(point: Any) -> list[ReceivedExemplar]:
    return [
        ReceivedExemplar(
            value=getattr(e, e.WhichOneof("value")) if e.WhichOneof("value") else 0,
            trace_id=e.trace_id.hex(),
            span_id=e.span_id.hex(),
            filtered_attributes=attrs(e.filtered_attributes),
            time_unix_nano=e.time_unix_nano,
        )
        for e in point.exemplars
    ]


def _points(metric: Any, resource: dict[str, Any], scope_name: str) -> Iterator[ReceivedPoint]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    data = getattr(metric, kind)
    for p in data.data_points:
        common: dict[str, Any] = dict(
            resource=resource, scope_name=scope_name, name=metric.name, type=kind, unit=metric.unit,
            description=metric.description, attributes=attrs(p.attributes),
            start_time_unix_nano=p.start_time_unix_nano, time_unix_nano=p.time_unix_nano,
        )
        if kind in ("sum", "gauge"):
            which = p.WhichOneof("value")
            yield ReceivedPoint(
                **common, value=getattr(p, which) if which else None,
                is_monotonic=data.is_monotonic if kind == "sum" else None,
                temporality=data.aggregation_temporality if kind == "sum" else 0,
                exemplars=_exemplars(p),
            )
        elif kind == "histogram":
            yield ReceivedPoint(
                **common, temporality=data.aggregation_temporality, count=p.count,
                sum=p.sum if p.HasField("sum") else None, min=p.min if p.HasField("min") else None,
                max=p.max if p.HasField("max") else None, bucket_counts=list(p.bucket_counts),
                explicit_bounds=list(p.explicit_bounds), exemplars=_exemplars(p),
            )
        elif kind == "exponential_histogram":
            yield ReceivedPoint(
                **common, temporality=data.aggregation_temporality, count=p.count,
                sum=p.sum if p.HasField("sum") else None, exemplars=_exemplars(p),
            )
        else:  # summary
            yield ReceivedPoint(**common, count=p.count, sum=p.sum)


class OtlpSink:
    """OTLP gRPC server on 127.0.0.1:<ephemeral>; records every Export request it gets."""

    def __init__(self, max_workers: int = 8, max_receive_mib: int = 64) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, list[Message]] = {s: [] for s in SIGNALS}
        self._metadata: list[tuple[str, dict[str, str]]] = []
        self._fail: list[grpc.StatusCode] = []
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otlp-sink"),
            options=[("grpc.max_receive_message_length", max_receive_mib << 20)],
        )
        for signal, add, response in (
            ("logs", logs_grpc.add_LogsServiceServicer_to_server, logs_svc.ExportLogsServiceResponse),
            ("traces", trace_grpc.add_TraceServiceServicer_to_server, trace_svc.ExportTraceServiceResponse),
            ("metrics", metrics_grpc.add_MetricsServiceServicer_to_server, metrics_svc.ExportMetricsServiceResponse),
        ):
            add(self._make_servicer(signal, response), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        if not self.port:
            raise RuntimeError("OtlpSink could not bind 127.0.0.1")

    def _make_servicer(self, signal: str, response: type[Message]) -> Any:
        sink = self

        class Servicer:
            def Export(self, request: Message, context: grpc.ServicerContext) -> Message:  # noqa: N802
                with sink._lock:
                    code = sink._fail.pop(0) if sink._fail else None
                    sink._metadata.append((signal, {k: str(v) for k, v in context.invocation_metadata()}))
                    if code is None:
                        sink._requests[signal].append(request)
                if code is not None:
                    context.abort(code, f"OtlpSink injected failure ({signal})")
                return response()

        return Servicer()

    # -- lifecycle -------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """URL for an OTLP gRPC exporter, e.g. 'http://127.0.0.1:40123'."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpSink:
        self._server.start()
        return self

    def stop(self, grace: float | None = 0.5) -> None:
        self._server.stop(grace).wait()

    def __enter__(self) -> OtlpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- recording ---------------------------------------------------------------------
    def clear(self) -> None:
        with self._lock:
            for reqs in self._requests.values():
                reqs.clear()
            self._metadata.clear()
            self._fail.clear()

    def fail_next(self, count: int = 1, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        """Reject the next `count` Export calls (any signal) with `code`; rejected data is not stored."""
        with self._lock:
            self._fail.extend([code] * count)

    def requests(self, signal: str) -> list[Message]:
        """Raw Export*ServiceRequest protobufs received for 'logs', 'traces' or 'metrics'."""
        with self._lock:
            return list(self._requests[signal])

    def metadata(self) -> list[tuple[str, dict[str, str]]]:
        """(signal, gRPC invocation metadata) for every Export call, including rejected ones."""
        with self._lock:
            return list(self._metadata)

    # -- flattening --------------------------------------------------------------------
    def log_records(self) -> list[ReceivedLog]:
        return [
            ReceivedLog(
                resource=attrs(rl.resource.attributes), scope_name=sl.scope.name, scope_version=sl.scope.version,
                body=any_value(r.body), severity_number=r.severity_number, severity_text=r.severity_text,
                attributes=attrs(r.attributes), event_name=r.event_name, trace_id=r.trace_id.hex(),
                span_id=r.span_id.hex(), time_unix_nano=r.time_unix_nano,
                observed_time_unix_nano=r.observed_time_unix_nano, flags=r.flags,
            )
            for req in self.requests("logs") for rl in req.resource_logs
            for sl in rl.scope_logs for r in sl.log_records
        ]

    def spans(self) -> list[ReceivedSpan]:
        return [
            ReceivedSpan(
                resource=attrs(rs.resource.attributes), scope_name=ss.scope.name, scope_version=ss.scope.version,
                name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                parent_span_id=s.parent_span_id.hex(), kind=s.kind, attributes=attrs(s.attributes),
                events=[(e.name, attrs(e.attributes)) for e in s.events],
                links=[(ln.trace_id.hex(), ln.span_id.hex(), attrs(ln.attributes)) for ln in s.links],
                status_code=s.status.code, status_message=s.status.message,
                start_time_unix_nano=s.start_time_unix_nano, end_time_unix_nano=s.end_time_unix_nano,
            )
            for req in self.requests("traces") for rs in req.resource_spans
            for ss in rs.scope_spans for s in ss.spans
        ]

    def metrics(self) -> list[ReceivedPoint]:
        return [
            point
            for req in self.requests("metrics") for rm in req.resource_metrics
            for sm in rm.scope_metrics for m in sm.metrics
            for point in _points(m, attrs(rm.resource.attributes), sm.scope.name)
        ]

    def summary(self) -> str:
        """Human-readable digest of everything received (used in wait_for failures)."""
        with self._lock:
            counts = {s: len(r) for s, r in self._requests.items()}
        logs = [r.event_name or str(r.body)[:40] for r in self.log_records()]
        spans = [s.name for s in self.spans()]
        points = sorted({f"{p.name}({p.type})" for p in self.metrics()})
        return (f"requests={counts}; {len(logs)} logs {logs[:20]}; {len(spans)} spans {spans[:20]}; "
                f"{len(points)} metric names {points[:20]}")

    def wait_for(self, predicate: Callable[[OtlpSink], T | None], timeout: float = 10.0, interval: float = 0.02) -> T:
        """Poll until predicate(sink) is truthy and return it; AssertionError with a summary on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"OtlpSink: condition not met within {timeout}s; received: {self.summary()}")
            time.sleep(interval)
