"""Test workload: request spans around a compiled function with a graph break; request 2 has a new shape.

Prints one JSON line per request with its trace and span id. `--in-code` configures the OTel SDK itself
(OTLP exporter from OTEL_* variables) and calls torch_otel.instrument(), as a user would without the CLI.
"""

import argparse
import json
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--in-code", action="store_true")
parser.add_argument("--sizes", default="4,4,8")
args = parser.parse_args()

if args.in_code:
    from opentelemetry import _logs, trace
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    _logs.set_logger_provider(logger_provider)

    import torch_otel

    torch_otel.instrument()

import torch
from opentelemetry import trace


def step(x):
    y = x * 2
    torch._dynamo.graph_break()
    return y + 1


tracer = trace.get_tracer("workload")
compiled = torch.compile(step, backend="eager", dynamic=False)
for number, size in enumerate(int(s) for s in args.sizes.split(",")):
    with tracer.start_as_current_span("request") as span:
        compiled(torch.ones(size))
        ctx = span.get_span_context()
        print(json.dumps({"request": number, "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}))
sys.stdout.flush()
