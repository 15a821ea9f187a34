"""The HTML view (``torch-otel report --html``): one self-contained page (inline CSS and JS, no external URL).

A timeline with one lane per trace that holds a compile, labelled with its request or step (``request_label``):
the application span, its ``torch.compile`` spans and their phase children as nested bars on a time axis, with a
tooltip per bar (``title``), a bar that widens to its whole label on hover, and a details panel on click that starts
with what matters (the reason). What a compile says without a click (a recompile's reason, a failure and its type,
restarts, graph breaks, the request that paid for it) is written in notes under its lane. When the input holds
several processes (ranks), each gets one lane, all on one time axis since the earliest span, the traces of a rank
packed into rows where they overlap. Then the tables of :mod:`.tables`. The page is rendered by Jinja2 from ``templates/report.html.j2`` (with
``report.css`` and ``timeline.js``), with autoescaping on: every value from the input is escaped by the template
engine, none by hand (attribute values come from user code). The span data for the details panel is JSON in a
``<script type="application/json">`` element, made safe to sit there by :func:`script_json`.

Jinja2 (a dependency of torch) is imported when a page is rendered, so ``torch-otel report`` without --html does not
load it.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import datetime, timezone
from typing import Any, NamedTuple

from torch_otel import catalog
from torch_otel.tools.report.formatting import clean, format_us, location, request_label, truncate
from torch_otel.tools.report.model import Bar, Lane, Report, UnfinishedCompile, limit_action, reason_summary
from torch_otel.tools.report.parsing import Span
from torch_otel.tools.report.tables import (
    SEPARATOR,
    Cell,
    Location,
    Reason,
    Reasons,
    report_tables,
    running_for,
)

ROW_PX = 18
TITLE_REASON_CHARS = 600
NOTE_CHARS = 400  # a note under a lane: its text is cut here (the details panel has it all)
LABEL_CHARS = 80  # request_label on a lane's head
NOWRAP_CELL_CHARS = 40  # table cells this short (ids, counts, names) never wrap
ATTR_FAIL_TYPE = catalog.ATTR_COMPILE_ID.rpartition(".")[0] + ".fail_type"  # CompilationMetrics.fail_type
KIND_LABELS = (
    ("app", "application span"),
    ("compile", catalog.SPAN_COMPILE),
    ("recompile", "torch.compile (recompile)"),
    ("failed", "failed compile"),
    ("limit", "recompile limit hit"),
    ("running", "still compiling when the file ends"),
    ("backward", catalog.SPAN_BACKWARD_COMPILE),
    ("phase", "compile phase"),
)
TEMPLATE = "report.html.j2"
LIMIT_WORDS = {catalog.LIMIT_RUNS_EAGER: "torch ran it eagerly", catalog.LIMIT_RAISES: "raised FailOnRecompileLimitHit"}
COMPILE_KINDS = ("compile", "recompile", "failed", "limit", "backward")


def limit_note(span: Span) -> str | None:
    """ "recompile limit hit (torch ran it eagerly)" for an attempt torch refused at a recompile limit (torch's own
    long message stays in the details panel); None for any other span."""
    action = limit_action(span)
    if action is None:
        return None
    return f"recompile limit hit ({LIMIT_WORDS[action]})" if action in LIMIT_WORDS else "recompile limit hit"


def _jsonable(value: Any, depth: int = 0) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (tuple, list)) and depth < 40:
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict) and depth < 40:
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def script_json(data: Any) -> str:
    """JSON that can sit inside <script>: ASCII only, and no <, > or & that could end the element."""
    text = json.dumps(_jsonable(data), ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _ms(ns: float) -> str:
    return format_us(ns / 1000.0)


def _utc(ns: int) -> str:
    try:
        return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    except (OverflowError, OSError, ValueError):
        return ""


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover


def _compile_id(span: Span) -> str:
    value = span.attributes.get(catalog.ATTR_COMPILE_ID)
    return "" if value is None else clean(value)


def _int_attribute(span: Span, key: str) -> int:
    value = span.attributes.get(key)
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:
        return int(value.strip())
    return 0


def _reason_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [clean(item) for item in items if item is not None and clean(item)]


def recompile_reasons(span: Span) -> list[str]:
    """A recompile's reasons as text, one per failed guard: from its ``pytorch.recompile`` event, else from the
    span's ``pytorch.compile.recompile_reason`` (never a Python list's repr)."""
    for event in span.events:
        if event.name == catalog.EVENT_RECOMPILE:
            reasons = _reason_list(event.attributes.get(catalog.ATTR_RECOMPILE_REASONS))
            if reasons:
                return reasons
    return _reason_list(span.attributes.get(catalog.ATTR_RECOMPILE_REASON))


def failure(span: Span) -> str | None:
    """A failed compile's ``FailType: message`` (status message, with pytorch.compile.fail_type in front when the
    message lacks it); None when the span did not fail."""
    if span.status_code != 2:
        return None
    message = clean(span.status_message)
    fail_type = clean(span.attributes.get(ATTR_FAIL_TYPE, "") or "")
    if fail_type and not message.startswith(fail_type):
        message = f"{fail_type}: {message}" if message else fail_type
    return message or "error (no message)"


def app_ancestor(span: Span, spans: dict[str, Span]) -> Span | None:
    """The nearest application (non-torch) span above ``span`` in its trace: the request or step that paid."""
    current = span
    for _ in range(64):
        parent = spans.get(current.parent_span_id) if current.parent_span_id else None
        if parent is None:
            return None
        if parent.name not in (catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE) and (
            catalog.ATTR_PHASE not in parent.attributes
        ):
            return parent
        current = parent
    return None


def span_notes(span: Span, kind: str) -> list[tuple[str, str]]:
    """What a torch.compile span says that a reader should see without a click, as (kind, text), most important
    first: its failure (with its type), its recompile reasons, its restarts, its graph breaks."""
    if kind not in COMPILE_KINDS:
        return []
    compile_id = _compile_id(span)
    name = f"{span.name} {compile_id}".strip() if span.name != catalog.SPAN_COMPILE else f"compile {compile_id}".strip()
    notes: list[tuple[str, str]] = []
    failed = failure(span)
    limit = limit_note(span)
    if limit is not None:
        notes.append(("limit", f"{compile_id or '?'} {limit}"))
    elif failed is not None:
        notes.append(("failed", f"failed {name.removeprefix('compile ')}: {failed}"))
    reasons = recompile_reasons(span)
    if reasons:
        notes.append(("recompile", f"recompile {compile_id or '?'}: {'; '.join(reasons)}"))
    restarts = _int_attribute(span, catalog.ATTR_RESTARTS)
    if restarts > 0:
        why = [
            reason_summary(reason).partition(" Explanation:")[0]  # torch's own line, without its long explanation
            for reason in _reason_list(span.attributes.get(catalog.ATTR_RESTART_REASONS))
        ]
        text = f"{compile_id or '?'} restarted {restarts}×"
        notes.append(("restart", text + (f": {'; '.join(why)}" if why else "")))
    for event in span.events:
        if event.name == catalog.EVENT_GRAPH_BREAK:
            reason = reason_summary(str(event.attributes.get(catalog.ATTR_GRAPH_BREAK_REASON, "")))
            notes.append(("graph-break", f"graph break in {compile_id or '?'}: {clean(reason) or '?'}"))
    return notes


def _bar_label(bar: Bar) -> str:
    span = bar.span
    if bar.kind == "app":
        return request_label(span.name, dict(span.attributes), 0)
    compile_id = _compile_id(span)
    label = clean(span.name)
    if bar.kind in COMPILE_KINDS and compile_id:
        label = f"{label} {compile_id}"
    if bar.kind == "limit":
        label += " · " + (limit_note(span) or "recompile limit hit")
    elif bar.kind == "recompile" and (reasons := recompile_reasons(span)):
        label += " · " + reasons[0]
    elif bar.kind == "failed" and (failed := failure(span)):
        label += " · " + failed
    return label


def _bar_title(bar: Bar, app: Span | None) -> str:
    span = bar.span
    attributes = span.attributes
    lines = [f"{span.name} ({_ms(max(0, span.end_ns - span.start_ns))})"]
    lines += [text[:TITLE_REASON_CHARS] for _, text in span_notes(span, bar.kind)]
    compile_id = attributes.get(catalog.ATTR_COMPILE_ID)
    if compile_id is not None and bar.kind not in COMPILE_KINDS:
        lines.append(f"compile id {compile_id}")
    function = attributes.get(catalog.ATTR_CODE_FUNCTION)
    if function is not None and bar.kind != "app":
        line = attributes.get(catalog.ATTR_CODE_LINE)
        lines.append(f"{function} at {attributes.get(catalog.ATTR_CODE_FILE, '?')}:{line}")
    if app is not None:
        lines.append(f"in {request_label(app.name, dict(app.attributes), 0)}")
    if bar.kind == "app":
        for event in span.events:
            if event.name == catalog.EVENT_RECOMPILE:
                reasons = "; ".join(_reason_list(event.attributes.get(catalog.ATTR_RECOMPILE_REASONS)))
                compile_id = clean(event.attributes.get(catalog.ATTR_COMPILE_ID, "?"))
                lines.append(f"recompile {compile_id}: {reasons[:TITLE_REASON_CHARS]}")
        if span.status_code == 2:
            lines.append(f"ERROR {clean(span.status_message)[:TITLE_REASON_CHARS]}")
    lines.append("click for details")
    return "\n".join(lines)


def _bar_data(bar: Bar, origin_ns: int, app: Span | None) -> dict[str, Any]:
    span = bar.span
    return {
        "n": span.name,
        "k": bar.kind,
        "h": [text for _, text in span_notes(span, bar.kind)],
        "r": None
        if app is None
        else {"n": request_label(app.name, dict(app.attributes), 0), "a": dict(app.attributes)},
        "t": span.trace_id,
        "s": span.span_id,
        "p": span.parent_span_id,
        "o": _ms(span.start_ns - origin_ns),
        "d": _ms(max(0, span.end_ns - span.start_ns)),
        "st": ["unset", "ok", "error"][span.status_code] if 0 <= span.status_code <= 2 else str(span.status_code),
        "sm": span.status_message,
        "a": dict(span.attributes),
        "e": [{"n": e.name, "o": _ms(e.time_ns - origin_ns), "a": dict(e.attributes)} for e in span.events],
    }


class _PageCell(NamedTuple):
    text: str
    full: str | None = None  # when set, ``text`` is its summary and the page shows ``full`` under it
    nowrap: bool = False  # an id, a count, a name: kept on one line


def _page_cell(cell: Cell) -> _PageCell:
    if isinstance(cell, Location):
        return _PageCell(location(cell.file, cell.line, 0))
    if isinstance(cell, Reasons):
        return _PageCell("\n".join(cell.items))
    if isinstance(cell, Reason):
        summary = cell.summary
        return _PageCell(cell.text) if summary == cell.text.strip() else _PageCell(summary, cell.text)
    text = str(cell)
    return _PageCell(text, None, len(text) <= NOWRAP_CELL_CHARS and "\n" not in text)


def _root(lane: Lane) -> Span | None:
    roots = [bar.span for bar in lane.bars if bar.depth == 0]
    return min(roots, key=lambda span: span.start_ns) if roots else None


def lane_label(lane: Lane, width: int = LABEL_CHARS) -> str:
    """A lane's request or step: its root span's name and identifying attributes (request_label)."""
    root = _root(lane)
    if root is None:
        return "(empty)"
    if root.name in (catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE):
        return truncate(f"{root.name} {_compile_id(root)} (outside any application span)", width)
    return request_label(root.name, dict(root.attributes), width)


def _process_key(lane: Lane) -> tuple:
    rank = next(
        (value for key, value in (lane.bars[0].span.process if lane.bars else ()) if key == catalog.RESOURCE_RANK), None
    )
    text = str(rank) if rank is not None else ""
    return (rank is None, int(text) if text.isdigit() else 0, lane.process)


def _pack(lanes: list[Lane]) -> list[int]:
    """Row offsets (in rows of ROW_PX) that put the traces of one process in one lane: each trace in the first
    slot whose traces have all ended before it starts; a slot is as tall as its tallest trace."""
    slot_ends: list[int] = []
    slot_heights: list[int] = []
    slots = []
    for lane in lanes:
        height = max((bar.depth for bar in lane.bars), default=0) + 1
        slot = next((i for i, end in enumerate(slot_ends) if end <= lane.start_ns), len(slot_ends))
        if slot == len(slot_ends):
            slot_ends.append(lane.end_ns)
            slot_heights.append(height)
        else:
            slot_ends[slot] = lane.end_ns
            slot_heights[slot] = max(slot_heights[slot], height)
        slots.append(slot)
    offsets = [sum(slot_heights[:i]) for i in range(len(slot_heights))]
    return [offsets[slot] for slot in slots]


def _draw(
    members: list[tuple[Lane, int]], origin_ns: int, extent_ns: int, data: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The bars and notes of (trace, row offset) pairs drawn on one track from ``origin_ns`` over ``extent_ns``."""
    bars: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    rows = 0
    for lane, offset in members:
        spans = {bar.span.span_id: bar.span for bar in lane.bars if bar.span.span_id}
        for bar in lane.bars:
            span = bar.span
            app = app_ancestor(span, spans) if bar.kind != "app" else None
            index = len(data)
            bars.append(
                {
                    "kind": bar.kind,
                    "index": index,
                    "label": _bar_label(bar),
                    "title": _bar_title(bar, app),
                    "left": f"{100 * max(0, span.start_ns - origin_ns) / extent_ns:.4f}",
                    "width": f"{100 * max(0, span.end_ns - span.start_ns) / extent_ns:.4f}",
                    "top": (offset + bar.depth) * ROW_PX,
                }
            )
            for note_kind, text in span_notes(span, bar.kind):
                notes.append(
                    {
                        "kind": note_kind,
                        "index": index,
                        "head": text.partition(":")[0],
                        "text": truncate(text.partition(":")[2].strip(), NOTE_CHARS),
                        "at": _ms(span.start_ns - origin_ns),
                        "where": "" if app is None else request_label(app.name, dict(app.attributes), 0),
                    }
                )
            data.append(_bar_data(bar, origin_ns, app))
            rows = max(rows, offset + bar.depth + 1)
    return bars, notes, rows


def _ticks(extent_ns: int) -> list[tuple[str, str]]:
    step = _nice_step(extent_ns)
    return [(f"{100 * i * step / extent_ns:.4f}", _ms(i * step)) for i in range(int(extent_ns // step) + 1)]


def _end_ns(compile: UnfinishedCompile) -> int:
    return compile.start_ns + int(compile.elapsed_s * 1e9)


def _running(
    compile: UnfinishedCompile, origin_ns: int, extent_ns: int, top: int, data: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The open-ended bar (to its last slow warning, or the last record) and the note of a compile still running
    when the input ends; its details go to ``data``."""
    compile_id = compile.compile_id
    head = f"still compiling {compile_id} ({compile.function})"
    text = SEPARATOR.join((compile.phase, running_for(compile)))
    index = len(data)
    data.append(
        {
            "n": f"{catalog.SPAN_COMPILE} {compile_id} (did not finish)",
            "k": "running",
            "h": [f"{head}: {text}", "open phases: " + (" > ".join(compile.open_phases) or compile.root)],
            "r": None,
            "t": compile.trace_id,
            "s": "",
            "p": "",
            "o": _ms(compile.start_ns - origin_ns),
            "d": f"≥ {_ms(_end_ns(compile) - compile.start_ns)}",
            "st": "still running when the file ends",
            "sm": "",
            "a": {
                catalog.ATTR_COMPILE_ID: compile_id,
                catalog.ATTR_CODE_FUNCTION: compile.function,
                catalog.ATTR_CODE_FILE: compile.file,
                catalog.ATTR_CODE_LINE: compile.line,
                catalog.ATTR_PHASE: compile.phase,
                "slow warnings": compile.warnings,
            },
            "e": [],
        }
    )
    bar = {
        "kind": "running",
        "index": index,
        "label": f"{head} · {text} →",
        "title": f"{head}\n{text}\nstill running when the file ends: no end time, the bar stops at what is known",
        "left": f"{100 * max(0, compile.start_ns - origin_ns) / extent_ns:.4f}",
        "width": f"{100 * max(0, _end_ns(compile) - compile.start_ns) / extent_ns:.4f}",
        "top": top,
    }
    note = {
        "kind": "running",
        "index": index,
        "head": head,
        "text": text,
        "at": _ms(compile.start_ns - origin_ns),
        "where": "",
    }
    return bar, note


def _timeline(report: Report, data: list[dict[str, Any]]) -> dict[str, Any]:
    """What the template draws of the timeline; ``data`` receives each bar's details, in the order of data-i. A
    compile still running when the input ends is an open-ended bar on its process's lane (its own lane when the
    input holds one process)."""
    if not report.lanes and not report.unfinished:
        return {"lanes": []}
    lanes = []
    by_process = len({lane.process for lane in report.lanes} | {u.process for u in report.unfinished}) > 1
    if by_process:
        # One lane per process (rank), every lane on one axis: time since the earliest span in the input.
        origin = min([lane.start_ns for lane in report.lanes] + [u.start_ns for u in report.unfinished])
        extent = max(1, max([lane.end_ns for lane in report.lanes] + [_end_ns(u) for u in report.unfinished]) - origin)
        groups: dict[str, list[Lane]] = {}
        for lane in sorted(report.lanes, key=_process_key):
            groups.setdefault(lane.process, []).append(lane)
        for compile in report.unfinished:
            groups.setdefault(compile.process, [])
        for process, members in groups.items():
            bars, notes, rows = _draw(list(zip(members, _pack(members), strict=True)), origin, extent, data)
            for compile in (u for u in report.unfinished if u.process == process):
                bar, note = _running(compile, origin, extent, rows * ROW_PX, data)
                bars.append(bar)
                notes.append(note)
                rows += 1
            compiles = sum(1 for lane in members for bar in lane.bars if bar.span.name == catalog.SPAN_COMPILE)
            starts = [lane.start_ns for lane in members] + [
                u.start_ns for u in report.unfinished if u.process == process
            ]
            lanes.append(
                {
                    "title": process or "(unnamed process)",
                    "ids": [],
                    "meta": [
                        f"{len(members)} trace{'' if len(members) == 1 else 's'}",
                        f"{compiles} torch.compile",
                        f"{_utc(min(starts))}",
                    ],
                    "scale": "100",
                    "bars": bars,
                    "notes": notes,
                    "height": rows * ROW_PX + 2,
                }
            )
        axis = "time since the earliest span in the input, for every process"
    else:
        extent = max(
            [max(1, lane.end_ns - lane.start_ns) for lane in report.lanes]
            + [max(1, _end_ns(u) - u.start_ns) for u in report.unfinished]
        )
        for lane in report.lanes:
            duration = max(1, lane.end_ns - lane.start_ns)
            bars, notes, rows = _draw([(lane, 0)], lane.start_ns, duration, data)
            lanes.append(
                {
                    "title": lane_label(lane),
                    "ids": [f"trace {lane.trace_id}"],
                    "meta": [part for part in (lane.process, _utc(lane.start_ns), _ms(duration)) if part],
                    "scale": f"{100 * duration / extent:.4f}",
                    "bars": bars,
                    "notes": notes,
                    "height": rows * ROW_PX + 2,
                }
            )
        for compile in report.unfinished:
            duration = max(1, _end_ns(compile) - compile.start_ns)
            bar, note = _running(compile, compile.start_ns, duration, 0, data)
            lanes.insert(
                0,
                {
                    "title": f"still compiling: {compile.function} {compile.compile_id}",
                    "ids": [f"trace {compile.trace_id}"] if compile.trace_id else [],
                    "meta": [part for part in (compile.process, _utc(compile.start_ns)) if part],
                    "scale": f"{100 * duration / extent:.4f}",
                    "bars": [bar],
                    "notes": [note],
                    "height": ROW_PX + 2,
                },
            )
        axis = "time since the start of each trace"
    messages = []
    if report.lanes_omitted:
        messages.append(
            f"{report.lanes_omitted} more traces with compiles are not drawn (the page keeps to "
            f"{len(data)} spans); the tables below count them all."
        )
    if report.traces_without_compiles:
        n = report.traces_without_compiles
        messages.append(f"{n} trace{'' if n == 1 else 's'} without a compile {'is' if n == 1 else 'are'} not drawn.")
    return {
        "lanes": lanes,
        "legend": KIND_LABELS,
        "ticks": _ticks(extent),
        "axis": axis,
        "fit": not by_process,
        "notes": messages,
    }


def _printable(value: Any) -> Any:
    """What the template engine writes, before escaping it: text without lone surrogates (they cannot be written
    as UTF-8) or NULs."""
    if type(value) is str:  # not Markup: what the template marked safe stays as it is
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return value


@functools.cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("torch_otel.tools.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        finalize=_printable,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(report: Report) -> str:
    data: list[dict[str, Any]] = []
    timeline = _timeline(report, data)
    tables = [
        {
            "title": table.title,
            "headers": table.headers,
            "numeric": table.numeric,
            "empty": table.empty,
            "note": table.note,
            "rows": [[_page_cell(cell) for cell in row] for row in table.rows],
        }
        for table in report_tables(report)
        if table.rows or not table.optional
    ]
    summary = (
        f"{len(report.files)} file(s), {report.lines} lines: {report.span_count} spans ({report.compile_spans} "
        f"torch.compile, {report.backward_spans} backward), {report.log_count} log records, "
        f"{report.point_count} metric points"
    )
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            summary=summary,
            files=", ".join(report.files),
            processes=", ".join(report.processes),
            timeline=timeline,
            tables=tables,
            span_data=script_json(data),
        )
    )
