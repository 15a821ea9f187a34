"""The ``torch-otel report --html`` page: one self-contained file (inline CSS and JS, no external URL).

A timeline with one lane per trace that holds a compile: the application span, its ``torch.compile`` spans and
their phase children as nested bars on a time axis, with a tooltip per bar (``title``) and a details panel on
click; then the report's tables. Every string from the input is escaped: attribute values come from user code.
"""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from torch_otel import catalog
from torch_otel.report import (
    Bar,
    Lane,
    Report,
    format_count,
    format_us,
    location,
    reason_summary,
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


def esc(value: Any) -> str:
    """Text for HTML content or a quoted attribute: escaped, and without lone surrogates or NULs."""
    text = str(value).encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return html.escape(text, quote=True)


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
            lines.append(f"recompile {event.attributes.get(catalog.ATTR_COMPILE_ID, '')}: {str(reasons)[:TITLE_REASON_CHARS]}")
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


def _timeline(report: Report, data: list[dict[str, Any]]) -> list[str]:
    out = ['<section id="timeline"><h2>Timeline</h2>']
    if not report.lanes:
        out.append('<p class="muted">No trace in the input holds a torch.compile span.</p></section>')
        return out
    longest = max(max(1, lane.end_ns - lane.start_ns) for lane in report.lanes)
    out.append('<div class="controls"><label><input type="checkbox" id="fit"> scale each lane to its own length</label>'
               '<span class="legend">')
    out += [f'<span><i class="k-{kind}"></i>{esc(label)}</span>' for kind, label in KIND_LABELS]
    out.append("</span></div>")
    step = _nice_step(longest)
    ticks = "".join(
        f'<span style="left:{100 * i * step / longest:.4f}%">{esc(_ms(i * step))}</span>'
        for i in range(int(longest // step) + 1)
    )
    out.append(f'<div class="axis" title="time since the start of each trace">{ticks}</div>')
    out.append('<div id="lanes">')
    for lane in report.lanes:
        duration = max(1, lane.end_ns - lane.start_ns)
        depth = max((bar.depth for bar in lane.bars), default=0) + 1
        process = f" · {esc(lane.process)}" if lane.process else ""
        out.append(
            f'<div class="lane"><div class="lane-head"><b>{esc(lane.title)}</b> <span class="muted">trace '
            f'{esc(lane.trace_id)}{process} · {esc(_utc(lane.start_ns))} · {esc(_ms(duration))}</span></div>'
            f'<div class="track" style="height:{depth * ROW_PX + 2}px">'
            f'<div class="scale" style="--w:{100 * duration / longest:.4f}%">'
        )
        for bar in lane.bars:
            span = bar.span
            left = 100 * max(0, span.start_ns - lane.start_ns) / duration
            width = 100 * max(0, span.end_ns - span.start_ns) / duration
            label = span.name
            compile_id = span.attributes.get(catalog.ATTR_COMPILE_ID)
            if bar.kind in ("compile", "recompile", "failed", "backward") and compile_id is not None:
                label = f"{span.name} {compile_id}"
            out.append(
                f'<div class="bar k-{bar.kind}" tabindex="0" data-i="{len(data)}" '
                f'style="left:{left:.4f}%;width:{width:.4f}%;top:{bar.depth * ROW_PX}px" '
                f'title="{esc(_bar_title(bar))}">{esc(label)}</div>'
            )
            data.append(_bar_data(bar, lane))
        out.append("</div></div></div>")
    out.append("</div>")
    notes = []
    if report.lanes_omitted:
        notes.append(f"{report.lanes_omitted} more traces with compiles are not drawn (the page keeps to "
                     f"{len(data)} spans); the tables below count them all.")
    if report.traces_without_compiles:
        n = report.traces_without_compiles
        notes.append(f"{n} trace{'' if n == 1 else 's'} without a compile {'is' if n == 1 else 'are'} not drawn.")
    out += [f'<p class="muted">{esc(note)}</p>' for note in notes]
    out.append("</section>")
    return out


class Markup(str):
    """A table cell that is HTML already (built from escaped parts)."""


def _cell(value: Any) -> str:
    return value if isinstance(value, Markup) else esc(value)


def _reason_cell(reason: str) -> Markup:
    summary = reason_summary(reason)
    if summary == reason.strip():
        return Markup(esc(reason))
    return Markup(f"<details><summary>{esc(summary)}</summary>{esc(reason)}</details>")


def _table(title: str, headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str, numeric: Sequence[int] = (),
           note: str = "") -> list[str]:
    rows = list(rows)
    out = [f"<section><h2>{esc(title)}</h2>"]
    if not rows:
        out.append(f'<p class="muted">{esc(empty)}</p></section>')
        return out
    out.append("<table><thead><tr>" + "".join(
        f'<th{" class=num" if i in numeric else ""}>{esc(h)}</th>' for i, h in enumerate(headers)) + "</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td{" class=num" if i in numeric else ""}>{_cell(cell)}</td>' for i, cell in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    if note:
        out.append(f'<p class="muted">{esc(note)}</p>')
    out.append("</section>")
    return out


def _with_process(process: str, compile_id: str | None) -> str:
    compile_id = compile_id or "-"
    return f"{process} {compile_id}" if process else compile_id


def _tables(report: Report) -> list[str]:
    out = []
    out += _table(
        "Compiles per function",
        ("function", "location", "compiles", "recompiles", "failed", "total", "max", "backward", "backward total",
         "compile ids"),
        [(r.function, location(r.file, r.line, 0), r.compiles, r.recompiles, r.failures, format_us(r.total_us),
          format_us(r.max_us), r.backward_compiles, format_us(r.backward_total_us) if r.backward_compiles else "-",
          ", ".join(r.compile_ids)) for r in report.functions],
        "No torch.compile spans in the input.", numeric=(2, 3, 4, 5, 6, 7, 8),
    )
    out += _table(
        "Recompiles",
        ("compile id", "function", "triggered by", "trace id", "reasons"),
        [(_with_process(r.process, r.compile_id), r.function, "(no app span)" if r.app_span is None else r.app_span,
          r.trace_id or "?", "\n".join(r.reasons)) for r in report.recompiles],
        "No recompiles.",
    )
    if report.limits:
        out += _table(
            "Recompile limits hit", ("compile id", "function", "limit", "value"),
            [(_with_process(r.process, r.compile_id), r.function, r.limit_type, r.limit) for r in report.limits], "",
        )
    out += _table(
        "Graph breaks",
        ("compile id", "function", "user location", "count", "reason"),
        [(_with_process(r.process, r.compile_id), r.function, location(r.file, r.line, 0), r.count, _reason_cell(r.reason))
         for r in report.graph_breaks],
        "No graph breaks.", numeric=(3,),
    )
    out += _table(
        "Cache",
        ("cache", "hits (spans)", "misses (spans)", "hits (metric)", "misses (metric)"),
        [(r.cache, format_count(r.span_hits), format_count(r.span_misses), format_count(r.metric_hits),
          format_count(r.metric_misses)) for r in report.caches
         if any(v is not None for v in (r.span_hits, r.span_misses, r.metric_hits, r.metric_misses))],
        "No cache counts in the input.", numeric=(1, 2, 3, 4),
        note=f"spans: the compile spans' pytorch.compile.*_cache_hit_count / _miss_count, summed; "
             f"metric: {catalog.METRIC_CACHE_LOOKUPS} (latest value of each cumulative stream, delta points summed).",
    )
    prefix = catalog.ARTIFACT_EVENT_PREFIX
    out += _table(
        f"Artifacts per compile id ({prefix}* log records)",
        ("compile id", "records", "by artifact"),
        [(_with_process(r.process, r.compile_id or "(none)"), r.total,
          ", ".join(f"{name[len(prefix):] if name.startswith(prefix) else name} {n}" for name, n in r.counts))
         for r in report.artifacts],
        "No artifact log records.", numeric=(1,),
    )
    return out


CSS = """
:root{--bg:#fff;--fg:#1d2330;--muted:#69707d;--line:#dde1e7;--app:#aeb6c2;--compile:#3b7dd8;--recompile:#e8871e;
--failed:#d93a3a;--backward:#8756c9;--phase:#9cc3ee}
*{box-sizing:border-box}
body{font:13px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0;padding:16px 24px 80px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid var(--line);vertical-align:top}
td{white-space:pre-wrap;word-break:break-word}
summary{cursor:pointer}
th.num,td.num{text-align:right;white-space:nowrap}
.controls{display:flex;gap:24px;align-items:center;flex-wrap:wrap;margin-bottom:6px}
.legend span{margin-right:12px;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px;border-radius:2px}
.axis{position:relative;height:18px;border-bottom:1px solid var(--line);font-size:11px;color:var(--muted)}
.axis span{position:absolute;top:0;padding-left:3px;border-left:1px solid var(--line);white-space:nowrap}
.lane{border-bottom:1px solid var(--line);padding:4px 0}
.lane-head{font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.track{position:relative;margin-top:2px}
.scale{position:absolute;top:0;bottom:0;left:0;width:var(--w)}
.fit .scale{width:100%}
.bar{position:absolute;height:16px;min-width:2px;border-radius:2px;font-size:11px;line-height:16px;padding:0 3px;
overflow:hidden;white-space:nowrap;text-overflow:clip;cursor:pointer;color:#fff}
.bar:hover,.bar:focus,.bar.sel{outline:2px solid #111;z-index:2}
.k-app{background:var(--app);color:#1d2330}.k-compile{background:var(--compile)}.k-recompile{background:var(--recompile)}
.k-failed{background:var(--failed)}.k-backward{background:var(--backward)}.k-phase{background:var(--phase);color:#1d2330}
#details{position:fixed;right:16px;bottom:16px;width:min(560px,calc(100vw - 32px));max-height:60vh;overflow:auto;
background:#fff;border:1px solid #b9c0ca;border-radius:6px;box-shadow:0 6px 24px rgba(0,0,0,.18);padding:10px 12px;display:none}
#details.open{display:block}
#details h3{margin:0 24px 6px 0;font-size:14px;word-break:break-all}
#details table{font-size:11px}#details td{font-family:ui-monospace,Menlo,Consolas,monospace}
#details button{position:absolute;right:8px;top:6px;border:0;background:none;font-size:18px;cursor:pointer}
"""

JS = """
(function(){
var data=JSON.parse(document.getElementById('span-data').textContent);
var panel=document.getElementById('details');
var fit=document.getElementById('fit');
if(fit){fit.addEventListener('change',function(){document.getElementById('lanes').classList.toggle('fit',fit.checked);
  document.querySelector('.axis').style.visibility=fit.checked?'hidden':'';});}
function el(tag,text,cls){var e=document.createElement(tag);if(text!==undefined)e.textContent=text;if(cls)e.className=cls;return e;}
function show(v){return (typeof v==='object'&&v!==null)?JSON.stringify(v,null,1):String(v);}
function rows(table,pairs){pairs.forEach(function(p){var tr=el('tr');tr.appendChild(el('th',p[0]));tr.appendChild(el('td',show(p[1])));table.appendChild(tr);});}
var selected=null;
function open(i){
  var d=data[i];if(!d)return;
  panel.textContent='';
  var close=el('button','\\u00d7');close.title='close';close.onclick=function(){panel.classList.remove('open');};
  panel.appendChild(close);panel.appendChild(el('h3',d.n));
  var t=el('table');
  rows(t,[['kind',d.k],['duration',d.d],['starts at','+'+d.o+' into the trace'],['trace id',d.t],['span id',d.s],
          ['parent span id',d.p||'(root)'],['status',d.st+(d.sm?': '+d.sm:'')]]);
  Object.keys(d.a).forEach(function(k){rows(t,[[k,d.a[k]]]);});
  panel.appendChild(t);
  d.e.forEach(function(e){
    panel.appendChild(el('h3','event '+e.n+' at +'+e.o));
    var et=el('table');Object.keys(e.a).forEach(function(k){rows(et,[[k,e.a[k]]]);});panel.appendChild(et);
  });
  panel.classList.add('open');
}
var lanes=document.getElementById('lanes');
if(lanes){
  lanes.addEventListener('click',function(ev){var b=ev.target.closest('.bar');if(!b)return;
    if(selected)selected.classList.remove('sel');selected=b;b.classList.add('sel');open(+b.getAttribute('data-i'));});
  lanes.addEventListener('keydown',function(ev){if(ev.key==='Enter'&&ev.target.classList.contains('bar')){ev.target.click();}});
}
document.addEventListener('keydown',function(ev){if(ev.key==='Escape')panel.classList.remove('open');});
})();
"""


def render_html(report: Report) -> str:
    data: list[dict[str, Any]] = []
    timeline = _timeline(report, data)
    summary = (
        f"{len(report.files)} file(s), {report.lines} lines: {report.span_count} spans ({report.compile_spans} "
        f"torch.compile, {report.backward_spans} backward), {report.log_count} log records, "
        f"{report.point_count} metric points"
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>torch-otel report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>torch.compile report</h1>",
        f'<p class="muted">{esc(summary)}<br>{esc(", ".join(report.files))}</p>',
    ]
    if report.processes:
        parts.append(f'<p class="muted">processes: {esc(", ".join(report.processes))}</p>')
    parts += timeline
    parts += _tables(report)
    parts.append('<aside id="details" aria-live="polite"></aside>')
    parts.append(f'<script type="application/json" id="span-data">{script_json(data)}</script>')
    parts.append(f"<script>{JS}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
