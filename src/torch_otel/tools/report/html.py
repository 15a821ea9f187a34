"""The HTML view (``torch-otel report --html``): one self-contained page (inline CSS and JS, no external URL).

A timeline with one lane per trace that holds a compile: the application span, its ``torch.compile`` spans and
their phase children as nested bars on a time axis, with a tooltip per bar (``title``) and a details panel on
click; then the tables of :mod:`.tables`. The page is rendered by Jinja2 from ``templates/report.html.j2`` (with
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
from torch_otel.tools.report.formatting import format_us, location
from torch_otel.tools.report.model import Bar, Lane, Report, reason_summary
from torch_otel.tools.report.tables import (
    Cell,
    Location,
    Reason,
    Reasons,
    report_tables,
)

ROW_PX = 18
TITLE_REASON_CHARS = 600
KIND_LABELS = (
    ("app", "application span"),
    ("compile", catalog.SPAN_COMPILE),
    ("recompile", "torch.compile (recompile)"),
    ("failed", "failed compile"),
    ("backward", catalog.SPAN_BACKWARD_COMPILE),
    ("phase", "compile phase"),
)
TEMPLATE = "report.html.j2"


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


def _bar_title(bar: Bar) -> str:
    span = bar.span
    attributes = span.attributes
    lines = [f"{span.name} ({_ms(max(0, span.end_ns - span.start_ns))})"]
    compile_id = attributes.get(catalog.ATTR_COMPILE_ID)
    if compile_id is not None:
        lines.append(f"compile id {compile_id}")
    function = attributes.get(catalog.ATTR_CODE_FUNCTION)
    if function is not None and bar.kind != "app":
        line = attributes.get(catalog.ATTR_CODE_LINE)
        lines.append(f"{function} at {attributes.get(catalog.ATTR_CODE_FILE, '?')}:{line}")
    reason = attributes.get(catalog.ATTR_RECOMPILE_REASON)
    if reason is not None:
        lines.append(f"recompile: {str(reason)[:TITLE_REASON_CHARS]}")
    for event in span.events:
        if event.name == catalog.EVENT_GRAPH_BREAK:
            text = reason_summary(str(event.attributes.get(catalog.ATTR_GRAPH_BREAK_REASON, "")))
            lines.append(f"graph break: {text[:TITLE_REASON_CHARS]}")
        elif event.name == catalog.EVENT_RECOMPILE and bar.kind == "app":
            reasons = event.attributes.get(catalog.ATTR_RECOMPILE_REASONS)
            lines.append(
                f"recompile {event.attributes.get(catalog.ATTR_COMPILE_ID, '')}: {str(reasons)[:TITLE_REASON_CHARS]}"
            )
    if span.status_code == 2:
        lines.append(f"ERROR {span.status_message[:TITLE_REASON_CHARS]}")
    lines.append("click for details")
    return "\n".join(lines)


def _bar_data(bar: Bar, lane: Lane) -> dict[str, Any]:
    span = bar.span
    return {
        "n": span.name,
        "k": bar.kind,
        "t": span.trace_id,
        "s": span.span_id,
        "p": span.parent_span_id,
        "o": _ms(span.start_ns - lane.start_ns),
        "d": _ms(max(0, span.end_ns - span.start_ns)),
        "st": ["unset", "ok", "error"][span.status_code] if 0 <= span.status_code <= 2 else str(span.status_code),
        "sm": span.status_message,
        "a": dict(span.attributes),
        "e": [{"n": e.name, "o": _ms(e.time_ns - lane.start_ns), "a": dict(e.attributes)} for e in span.events],
    }


class _PageCell(NamedTuple):
    text: str
    full: str | None = None  # when set, ``text`` is its summary and the page shows ``full`` under it


def _page_cell(cell: Cell) -> _PageCell:
    if isinstance(cell, Location):
        return _PageCell(location(cell.file, cell.line, 0))
    if isinstance(cell, Reasons):
        return _PageCell("\n".join(cell.items))
    if isinstance(cell, Reason):
        summary = cell.summary
        return _PageCell(cell.text) if summary == cell.text.strip() else _PageCell(summary, cell.text)
    return _PageCell(cell)


def _timeline(report: Report, data: list[dict[str, Any]]) -> dict[str, Any]:
    """What the template draws of the timeline; ``data`` receives each bar's details, in the order of data-i."""
    if not report.lanes:
        return {"lanes": []}
    longest = max(max(1, lane.end_ns - lane.start_ns) for lane in report.lanes)
    step = _nice_step(longest)
    ticks = [(f"{100 * i * step / longest:.4f}", _ms(i * step)) for i in range(int(longest // step) + 1)]
    lanes = []
    for lane in report.lanes:
        duration = max(1, lane.end_ns - lane.start_ns)
        bars = []
        for bar in lane.bars:
            span = bar.span
            compile_id = span.attributes.get(catalog.ATTR_COMPILE_ID)
            label = span.name
            if bar.kind in ("compile", "recompile", "failed", "backward") and compile_id is not None:
                label = f"{span.name} {compile_id}"
            bars.append(
                {
                    "kind": bar.kind,
                    "index": len(data),
                    "label": label,
                    "title": _bar_title(bar),
                    "left": f"{100 * max(0, span.start_ns - lane.start_ns) / duration:.4f}",
                    "width": f"{100 * max(0, span.end_ns - span.start_ns) / duration:.4f}",
                    "top": bar.depth * ROW_PX,
                }
            )
            data.append(_bar_data(bar, lane))
        lanes.append(
            {
                "title": lane.title,
                "trace_id": lane.trace_id,
                "process": lane.process,
                "start": _utc(lane.start_ns),
                "duration": _ms(duration),
                "scale": f"{100 * duration / longest:.4f}",
                "bars": bars,
                "height": (max((bar.depth for bar in lane.bars), default=0) + 1) * ROW_PX + 2,
            }
        )
    notes = []
    if report.lanes_omitted:
        notes.append(
            f"{report.lanes_omitted} more traces with compiles are not drawn (the page keeps to "
            f"{len(data)} spans); the tables below count them all."
        )
    if report.traces_without_compiles:
        n = report.traces_without_compiles
        notes.append(f"{n} trace{'' if n == 1 else 's'} without a compile {'is' if n == 1 else 'are'} not drawn.")
    return {"lanes": lanes, "legend": KIND_LABELS, "ticks": ticks, "notes": notes}


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
