"""Compile spans: one ``torch.compile`` span per frame compile, torch's phases as children, recompile and
graph-break events on them (and on the application span that paid), each mirrored as an OTel event record; and a
``pytorch.compile.start`` record when a compile starts, in the context of the application span that triggered it."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, Span, Status, StatusCode

from torch_otel import catalog
from torch_otel.capture import torch_internals
from torch_otel.capture.torch_hooks import FunctionIdentity, Phase
from torch_otel.signals.ids import PRIVATE_IDS
from torch_otel.signals.log_records import valid_utf8
from torch_otel.signals.redaction import Redactor


def compile_tracer(tracer_provider: trace.TracerProvider, version: str | None) -> trace.Tracer:
    """The tracer compile spans are made with, drawing ids from the private RNG when it is an SDK tracer."""
    tracer = tracer_provider.get_tracer("torch._dynamo", version)
    if isinstance(getattr(tracer, "id_generator", None), RandomIdGenerator):
        tracer.id_generator = PRIVATE_IDS  # type: ignore[attr-defined]  # an SDK Tracer's, not the API's
    return tracer


_FORWARD_SPANS_KEPT = 4096

# CompilationMetrics fields copied onto the compile span as pytorch.compile.<field>.
METRIC_FIELDS = (
    "guard_count",
    "shape_env_guard_count",
    "graph_op_count",
    "graph_node_count",
    "graph_input_count",
    "cache_size",
    "accumulated_cache_size",
    "duration_us",
    "dynamo_cumulative_compile_time_us",
    "aot_autograd_cumulative_compile_time_us",
    "inductor_cumulative_compile_time_us",
    "backward_cumulative_compile_time_us",
    "inductor_fx_local_cache_hit_count",
    "inductor_fx_local_cache_miss_count",
    "inductor_fx_remote_cache_hit_count",
    "inductor_fx_remote_cache_miss_count",
    "aotautograd_local_cache_hit_count",
    "aotautograd_local_cache_miss_count",
    "aotautograd_remote_cache_hit_count",
    "aotautograd_remote_cache_miss_count",
    "is_forward",
    "fail_type",
)


# torch's name for each analysis attempt of a frame compile (convert_frame.compile_frame): attempt 1 and up are
# restarts (a graph break in an inlined call, a speculation that failed), as tlparse counts them.
_ATTEMPT = re.compile(r"compile_attempt_(\d+)")


@dataclass
class _OpenPhase:
    span: Span
    token: Any  # what otel_context.attach returned, or None
    compile_id: str | None
    app_span: Span | None = None
    function: FunctionIdentity | None = None
    restarts: int = 0
    name: str = ""
    end_ns: int | None = field(default=None)  # set on a root whose span waits for its compilation metrics


def _code_attributes(function: FunctionIdentity | None) -> dict[str, Any]:
    if function is None:
        return {}
    return {
        catalog.ATTR_CODE_FUNCTION: function.function,
        catalog.ATTR_CODE_FILE: function.file,
        catalog.ATTR_CODE_LINE: function.line,
    }


def _exportable_value(key: str, value: Any, redact: Redactor | None) -> Any:
    if isinstance(value, str):
        if redact is not None:
            value = redact.path(value) if key == catalog.ATTR_CODE_FILE else redact.text(value)
        return valid_utf8(value)
    if isinstance(value, (list, tuple)):
        return [_exportable_value("", item, redact) for item in value]
    return value


def _mark_interrupted(span: Span) -> None:
    """Give a compile root's span status ERROR if the compile is being left by a KeyboardInterrupt or SystemExit.
    torch ends the root phase in a ``finally`` (``dynamo_timed``), so this runs while such an exception propagates;
    torch's CompilationMetrics record only ``Exception``s, so nothing else says the compile did not complete. Other
    exceptions are left to the metrics: one being handled elsewhere on the stack says nothing about this compile."""
    error = sys.exc_info()[1]
    if error is not None and not isinstance(error, Exception):
        span.set_status(Status(StatusCode.ERROR, f"interrupted: {type(error).__name__}"))


class CompileSpans:
    """A CompileListener that turns torch's compile phases into nested spans, per thread."""

    def __init__(self, tracer: trace.Tracer, event_logger: Any, redactor: Redactor | None = None) -> None:
        self._redactor = redactor or Redactor()
        self._tracer = tracer
        self._event_logger = event_logger
        self._local = threading.local()
        self._forward_spans: OrderedDict[str, trace.SpanContext] = OrderedDict()
        self._lock = threading.Lock()

    def _stack(self) -> list[_OpenPhase]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    # -- phases ----------------------------------------------------------------------------------------
    def phase_started(self, phase: Phase) -> None:
        compile_id = phase.compile_id
        attributes: dict[str, Any] = {catalog.ATTR_PHASE: phase.name}
        if compile_id is not None:
            attributes[catalog.ATTR_COMPILE_ID] = compile_id
        links: list[Link] = []
        app_span = None
        code: dict[str, Any] = {}
        app_context: otel_context.Context | None = None
        if phase.depth == 0:
            self._end_awaiting()
            code = self._exportable(_code_attributes(phase.function))
            attributes.update(code)
            app_span = trace.get_current_span()
            app_context = otel_context.get_current()
            if phase.name == "entire_backward_compile" and compile_id is not None and compile_id in self._forward_spans:
                links.append(Link(self._forward_spans[compile_id], {"pytorch.link": "forward compile"}))
        span = self._tracer.start_span(phase.label, start_time=phase.start_ns, attributes=attributes, links=links)
        if phase.depth == 0 and phase.name == "dynamo" and compile_id is not None:
            self._remember_forward(compile_id, span.get_span_context())
        # A no-op tracer (no SDK configured) yields invalid spans; making one current would cut log records
        # off from the application span, so only valid spans become current.
        token = otel_context.attach(trace.set_span_in_context(span)) if span.get_span_context().is_valid else None
        stack = self._stack()
        attempt = _ATTEMPT.fullmatch(phase.name)
        if attempt and int(attempt[1]) > 0 and stack and stack[0].compile_id == compile_id:
            stack[0].restarts += 1
        stack.append(_OpenPhase(span, token, compile_id, app_span, phase.function, name=phase.name))
        if phase.depth == 0:
            self._start_event(phase, code, app_context)

    def phase_ended(self, phase: Phase, end_ns: int) -> None:
        stack = self._stack()
        # One pop, unless a failed phase_started left this stack out of step with the hooks' one.
        while len(stack) > phase.depth:
            open_phase = stack.pop()
            if open_phase.token is not None:
                otel_context.detach(open_phase.token)
            if stack:
                open_phase.span.end(end_time=end_ns)
                continue
            if open_phase.name == "dynamo":
                open_phase.span.set_attribute(catalog.ATTR_RESTARTS, open_phase.restarts)
            _mark_interrupted(open_phase.span)
            # torch logs a backward compile's CompilationMetrics (its cache counts, its failure) only after this
            # phase has ended: its span ends when they come (or when the next compile starts on this thread).
            if open_phase.name == "entire_backward_compile" and torch_internals.compile_metrics_in_progress():
                open_phase.end_ns = end_ns
                self._local.awaiting = open_phase
            else:
                open_phase.span.end(end_time=end_ns)

    def _start_event(self, phase: Phase, code: dict[str, Any], app_context: otel_context.Context | None) -> None:
        """``pytorch.compile.start``, emitted in the context that was current before the compile span: its trace and
        span ids are those of the application span (the request or step) that triggered the compile."""
        attributes: dict[str, Any] = {catalog.ATTR_PHASE: phase.name, **code, catalog.ATTR_COMPONENT: "dynamo"}
        if phase.compile_id is not None:
            attributes[catalog.ATTR_COMPILE_ID] = phase.compile_id
        rank = torch_internals.distributed_rank()
        if rank is not None:
            attributes[catalog.ATTR_RANK] = rank
        what = code.get(catalog.ATTR_CODE_FUNCTION) or "a frame"
        self._event_logger.emit(
            timestamp=phase.start_ns or time.time_ns(),
            context=app_context,
            severity_number=SeverityNumber(catalog.otel_severity_number(logging.INFO)),
            severity_text=catalog.severity_text(logging.INFO),
            body=f"{phase.label} of {what} started (compile {phase.compile_id or 'unknown'})",
            event_name=catalog.EVENT_COMPILE_START,
            attributes=attributes,
        )

    def _end_awaiting(self) -> None:
        """Ends the root span that waits for its compilation metrics, if any."""
        awaiting: _OpenPhase | None = getattr(self._local, "awaiting", None)
        if awaiting is not None:
            self._local.awaiting = None
            awaiting.span.end(end_time=awaiting.end_ns)

    def _remember_forward(self, compile_id: str, span_context: trace.SpanContext) -> None:
        with self._lock:
            self._forward_spans[compile_id] = span_context
            while len(self._forward_spans) > _FORWARD_SPANS_KEPT:
                self._forward_spans.popitem(last=False)

    def _compile_phase(self) -> _OpenPhase | None:
        stack = self._stack()
        return stack[0] if stack else None

    # -- what torch reports about the compile ----------------------------------------------------------
    def compilation_metrics(self, metrics: Any) -> None:
        compile_phase = self._compile_phase() or getattr(self._local, "awaiting", None)
        if compile_phase is None:
            return
        try:
            self._apply_metrics(compile_phase, metrics)
        finally:
            if compile_phase is getattr(self._local, "awaiting", None):
                self._end_awaiting()

    def _apply_metrics(self, compile_phase: _OpenPhase, metrics: Any) -> None:
        span = compile_phase.span
        attributes: dict[str, Any] = {}
        for name in METRIC_FIELDS:
            value = getattr(metrics, name, None)
            if isinstance(value, (bool, int, float, str)):
                attributes[f"pytorch.compile.{name}"] = value
        if compile_phase.function is None and getattr(metrics, "co_name", None):
            attributes[catalog.ATTR_CODE_FUNCTION] = metrics.co_name
            attributes[catalog.ATTR_CODE_FILE] = str(metrics.co_filename)
            attributes[catalog.ATTR_CODE_LINE] = int(metrics.co_firstlineno or 0)
        if getattr(metrics, "recompile_reason", None):
            attributes[catalog.ATTR_RECOMPILE_REASON] = str(metrics.recompile_reason)
        restart_reasons = getattr(metrics, "restart_reasons", None)
        if restart_reasons:
            attributes[catalog.ATTR_RESTART_REASONS] = sorted(str(r) for r in restart_reasons)
        span.set_attributes(self._exportable(attributes))
        if getattr(metrics, "fail_type", None):
            reason = valid_utf8(self._redactor.text(f"{metrics.fail_type}: {metrics.fail_reason or ''}".strip()))
            span.set_status(Status(StatusCode.ERROR, reason))

    def recompiled(self, reasons: Sequence[str], function: FunctionIdentity | None) -> None:
        compile_phase = self._compile_phase()
        attributes = {catalog.ATTR_RECOMPILE_REASONS: list(reasons) or ["unknown"], **_code_attributes(function)}
        compile_id = self._compile_id(compile_phase)
        if compile_id:
            attributes[catalog.ATTR_COMPILE_ID] = compile_id
        if compile_phase is not None and function is not None and compile_phase.function is None:
            compile_phase.function = function
            compile_phase.span.set_attributes(self._exportable(_code_attributes(function)))
        self._event(
            compile_phase,
            catalog.EVENT_RECOMPILE,
            attributes,
            logging.WARNING,
            "Recompiling " + (function.function if function else "a frame") + ": " + "; ".join(reasons),
            on_app_span=True,
        )

    def graph_break(
        self,
        reason: str,
        filename: str | None,
        lineno: int | None,
        function: str | None = None,
        break_type: str | None = None,
    ) -> None:
        compile_phase = self._compile_phase()
        attributes: dict[str, Any] = {catalog.ATTR_GRAPH_BREAK_REASON: reason}
        if break_type:
            attributes[catalog.ATTR_GRAPH_BREAK_TYPE] = break_type
        if filename:
            attributes[catalog.ATTR_CODE_FILE] = filename
        if lineno is not None:
            attributes[catalog.ATTR_CODE_LINE] = int(lineno)
        compile_id = self._compile_id(compile_phase)
        if compile_id:
            attributes[catalog.ATTR_COMPILE_ID] = compile_id
        location = f" at {filename}:{lineno}" if filename else ""
        self._event(
            compile_phase,
            catalog.EVENT_GRAPH_BREAK,
            attributes,
            logging.INFO,
            f"Graph break{location}: {reason}",
            on_app_span=False,
        )

    def recompile_limit_hit(self, limit_type: str, limit: Any, raises: bool) -> None:
        compile_phase = self._compile_phase()
        numeric = isinstance(limit, int) and not isinstance(limit, bool)
        action = catalog.LIMIT_RAISES if raises else catalog.LIMIT_RUNS_EAGER
        attributes: dict[str, Any] = {
            catalog.ATTR_LIMIT_TYPE: limit_type,
            catalog.ATTR_LIMIT: limit if numeric else str(limit),
            catalog.ATTR_LIMIT_ACTION: action,
        }
        attributes.update(_code_attributes(compile_phase.function if compile_phase else None))
        compile_id = self._compile_id(compile_phase)
        if compile_id:
            attributes[catalog.ATTR_COMPILE_ID] = compile_id
        function = attributes.get(catalog.ATTR_CODE_FUNCTION, "a function")
        self._event(
            compile_phase,
            catalog.EVENT_RECOMPILE_LIMIT,
            attributes,
            logging.ERROR,
            f"torch._dynamo hit config.{limit_type} ({limit}) for {function}; {catalog.LIMIT_OUTCOMES[action]}",
            on_app_span=True,
        )

    @staticmethod
    def _compile_id(compile_phase: _OpenPhase | None) -> str | None:
        return compile_phase.compile_id if compile_phase is not None else None

    def _exportable(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """``attributes`` redacted (when redaction is on) and with every string valid UTF-8: file and function
        names come from the user's code objects, and one lone surrogate (an undecodable file name) would make the
        SDK's encoder drop the attribute with a traceback on stderr."""
        redact = self._redactor if self._redactor.active else None
        return {key: _exportable_value(key, value, redact) for key, value in attributes.items()}

    def _event(
        self,
        compile_phase: _OpenPhase | None,
        name: str,
        attributes: dict[str, Any],
        level: int,
        body: str,
        on_app_span: bool,
    ) -> None:
        attributes = self._exportable(attributes)
        body = valid_utf8(self._redactor.text(body))
        if compile_phase is not None:
            compile_phase.span.add_event(name, attributes)
            app_span = compile_phase.app_span
            if on_app_span and app_span is not None and app_span.is_recording():
                app_span.add_event(name, attributes)
        else:
            trace.get_current_span().add_event(name, attributes)
        self._event_logger.emit(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber(catalog.otel_severity_number(level)),
            severity_text=catalog.severity_text(level),
            body=body,
            event_name=name,
            attributes={**attributes, catalog.ATTR_COMPONENT: "dynamo"},
        )
