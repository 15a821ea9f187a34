"""The Perfetto view (``torch-otel report --perfetto OUT.json``): the compile timeline, with the application spans
around it, as a Chrome Trace Event Format file, the format PyTorch's profiler and tlparse's compile timeline write
and Perfetto (ui.perfetto.dev) and chrome://tracing open.

The file is one JSON object: ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``. Each span is a
complete event (``"ph": "X"``) with ``ts`` (its start) and ``dur`` (its duration) in microseconds since the Unix
epoch, as torch's own ``ChromiumEventLogger`` writes them (``time_ns / 1000``), ``name``, ``cat`` (``torch.compile``,
``torch.compile.phase``, ``torch.compile.backward``, ``app``), ``pid``, ``tid`` and ``args`` (its attributes, ids,
status and events). Metadata events (``"ph": "M"``) name the processes (``process_name``, ``process_sort_index``)
and threads (``thread_name``, ``thread_sort_index``).

A process is an OpenTelemetry resource: its ``pid`` is its rank (``pytorch.distributed.rank``) when every process
has a distinct one, else its ``process.pid`` when every process has a distinct one, else 1, 2, ... A thread (``tid``)
is one trace that holds a compile (a lane of the HTML view), named by its request or step (``request_label``). The
format nests complete events of one thread by time, so spans of a trace that overlap without nesting (work on two
threads in one trace) go to a second thread of the same trace, named ``... (2)``. The spans are those of the
Report's lanes: traces without a compile are left out, and so are the lanes the Report did not keep (MAX_LANES,
MAX_BARS), as ``otherData`` says. A compile still running when the input ends has no end to draw: it is an instant
event (``"ph": "i"``, scope ``p``: a line across its process) at its start, ``cat`` ``torch.compile.unfinished``, with
its phase and how long it had run in ``args``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from torch_otel import catalog
from torch_otel.tools.report.formatting import clean, request_label
from torch_otel.tools.report.html import app_ancestor, lane_label, span_notes
from torch_otel.tools.report.model import Bar, Lane, Report
from torch_otel.tools.report.parsing import Process
from torch_otel.tools.report.tables import running_for

THREAD_LABEL_CHARS = 100
CATEGORY_UNFINISHED = catalog.SPAN_COMPILE + ".unfinished"


def _category(bar: Bar) -> str:
    if bar.kind == "phase":
        return catalog.SPAN_COMPILE + ".phase"
    if bar.kind == "app":
        return "app"
    return catalog.SPAN_BACKWARD_COMPILE if bar.span.name == catalog.SPAN_BACKWARD_COMPILE else catalog.SPAN_COMPILE


def _value(value: Any, depth: int = 0) -> Any:
    """An attribute value as JSON: non-finite floats and other types as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)) and depth < 32:
        return [_value(item, depth + 1) for item in value]
    if isinstance(value, dict) and depth < 32:
        return {str(k): _value(v, depth + 1) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        return int(value.strip())
    return None


def process_ids(processes: Iterable[Process]) -> dict[Process, int]:
    """pid per process: the rank when every process has a distinct one, else process.pid likewise, else 1, 2, ..."""
    ordered = sorted(set(processes))
    for key in (catalog.RESOURCE_RANK, "process.pid"):
        ids = [_int(dict(process).get(key)) for process in ordered]
        if all(i is not None and i >= 0 for i in ids) and len(set(ids)) == len(ids):
            return dict(zip(ordered, ids, strict=True))  # type: ignore[arg-type]  # none is None, checked above
    return {process: n for n, process in enumerate(ordered, 1)}


def process_name(process: Process) -> str:
    attributes = dict(process)
    parts = []
    if catalog.RESOURCE_RANK in attributes:
        parts.append(f"rank {clean(attributes[catalog.RESOURCE_RANK])}")
    if attributes.get("service.name"):
        parts.append(clean(attributes["service.name"]))
    if "process.pid" in attributes:
        parts.append(f"pid {clean(attributes['process.pid'])}")
    if attributes.get("host.name"):
        parts.append(f"on {clean(attributes['host.name'])}")
    return " · ".join(parts) or "process"


def _tracks(lane: Lane) -> list[list[Bar]]:
    """The lane's spans split into tracks whose spans nest (by start, longest first): what one tid may hold."""
    tracks: list[list[Bar]] = []
    stacks: list[list[tuple[int, int]]] = []  # per track: the (start, end) of the spans still open
    for bar in sorted(lane.bars, key=lambda b: (b.span.start_ns, -(b.span.end_ns - b.span.start_ns), b.depth)):
        start, end = bar.span.start_ns, max(bar.span.start_ns, bar.span.end_ns)
        index = None
        for candidate, stack in enumerate(stacks):
            while stack and stack[-1][1] <= start:
                stack.pop()
            if not stack or end <= stack[-1][1]:
                index = candidate
                break
        if index is None:
            tracks.append([])
            stacks.append([])
            index = len(stacks) - 1
        tracks[index].append(bar)
        stacks[index].append((start, end))
    return tracks


def _args(bar: Bar, spans: dict[str, Any]) -> dict[str, Any]:
    span = bar.span
    args: dict[str, Any] = {}
    notes = [text for _, text in span_notes(span, bar.kind)]
    if notes:
        args["summary"] = notes
    app = app_ancestor(span, spans) if bar.kind != "app" else None
    if app is not None:
        args["in"] = request_label(app.name, dict(app.attributes), 0)
    args.update({str(key): _value(value) for key, value in span.attributes.items()})
    args["trace_id"] = span.trace_id
    args["span_id"] = span.span_id
    if span.parent_span_id:
        args["parent_span_id"] = span.parent_span_id
    if span.status_code:
        args["status"] = {1: "ok", 2: "error"}.get(span.status_code, str(span.status_code))
        if span.status_message:
            args["status_message"] = span.status_message
    if span.events:
        args["events"] = [
            {"name": event.name, "ts": event.time_ns / 1000, **{k: _value(v) for k, v in event.attributes.items()}}
            for event in span.events
        ]
    return args


def trace_events(report: Report) -> dict[str, Any]:
    """The Chrome Trace Event Format object for ``report``'s lanes."""
    processes = {lane.bars[0].span.process for lane in report.lanes if lane.bars}
    pids = process_ids(processes | {u.resource for u in report.unfinished})
    events: list[dict[str, Any]] = []
    for process, pid in sorted(pids.items(), key=lambda item: item[1]):
        events.append(
            {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": process_name(process)}}
        )
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
    next_tid: dict[int, int] = {}
    for lane in report.lanes:
        if not lane.bars:
            continue
        pid = pids[lane.bars[0].span.process]
        spans = {bar.span.span_id: bar.span for bar in lane.bars if bar.span.span_id}
        label = lane_label(lane, THREAD_LABEL_CHARS)
        for n, track in enumerate(_tracks(lane), 1):
            tid = next_tid[pid] = next_tid.get(pid, 0) + 1
            name = f"{label} · trace {lane.trace_id[:8]}" + (f" ({n})" if n > 1 else "")
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
            events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
            for bar in track:
                span = bar.span
                events.append(
                    {
                        "ph": "X",
                        "name": clean(span.name) or "?",
                        "cat": _category(bar),
                        "ts": span.start_ns / 1000,
                        "dur": max(0, span.end_ns - span.start_ns) / 1000,
                        "pid": pid,
                        "tid": tid,
                        "args": _args(bar, spans),
                    }
                )
    for compile in report.unfinished:
        events.append(
            {
                "ph": "i",
                "s": "p",
                "name": f"still compiling {compile.compile_id} ({clean(compile.function)})",
                "cat": CATEGORY_UNFINISHED,
                "ts": compile.start_ns / 1000,
                "pid": pids[compile.resource],
                "tid": 0,
                "args": {
                    "summary": f"still running when the file ends: in {compile.phase}, {running_for(compile)}",
                    catalog.ATTR_COMPILE_ID: compile.compile_id,
                    catalog.ATTR_CODE_FUNCTION: compile.function,
                    catalog.ATTR_CODE_FILE: compile.file,
                    catalog.ATTR_CODE_LINE: compile.line,
                    catalog.ATTR_PHASE: compile.phase,
                    catalog.ATTR_OPEN_PHASES: list(compile.open_phases),
                    catalog.ATTR_ELAPSED: compile.elapsed_s,
                    "trace_id": compile.trace_id,
                },
            }
        )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "producer": "torch-otel report --perfetto",
            "files": list(report.files),
            "traces": len(report.lanes),
            "traces_not_written": report.lanes_omitted,
            "traces_without_compiles": report.traces_without_compiles,
        },
    }


def render_perfetto(report: Report) -> str:
    return json.dumps(trace_events(report), ensure_ascii=True, separators=(",", ":"), allow_nan=False) + "\n"
