"""The terminal view: a summary line, then the tables of :mod:`.tables` as aligned columns, long cells cut to fit
the width. Every cell passes through :func:`.formatting.clean`, so nothing from the input reaches the terminal as a
control character."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch_otel import catalog
from torch_otel.tools.report.formatting import clean, location, plural, truncate
from torch_otel.tools.report.model import Report
from torch_otel.tools.report.tables import (
    Cell,
    Location,
    Reason,
    Reasons,
    Table,
    report_tables,
)

DEFAULT_WIDTH = 160  # when stdout is not a terminal
MIN_FLEX_WIDTH = 40
NAME_CAP = 40  # function names in the tables
PATH_CAP = 60  # file names, cut from the left


@dataclass(frozen=True)
class _Layout:
    """How the terminal shows one table: its terser words, and which columns give way when it is too wide."""

    empty: str = "(none)"
    caps: Mapping[int, int] = field(default_factory=dict)  # column: most characters
    flex: int = -1  # the column cut to fit the width, down to MIN_FLEX_WIDTH
    headers: Mapping[int, str] = field(default_factory=dict)  # column: the terminal's own header
    notes: tuple[str, ...] = ()


_LAYOUTS = {
    "functions": _Layout("(no torch.compile spans in the input)", caps={0: NAME_CAP}),
    "recompiles": _Layout(caps={0: 24, 1: NAME_CAP, 2: 32}, headers={4: "reason"}),
    "graph_breaks": _Layout(caps={0: 24, 1: NAME_CAP, 2: PATH_CAP}),
    "cache": _Layout(
        "(no cache counts in the input)",
        flex=0,
        notes=(
            "spans: the compile spans' pytorch.compile.<cache>_cache_hit_count / _miss_count, summed",
            f"metric: {catalog.METRIC_CACHE_LOOKUPS}, latest value of each cumulative stream (delta points summed)",
        ),
    ),
    "artifacts": _Layout(caps={0: 24}),
}


def _cell(cell: Cell, path_width: int) -> str:
    if isinstance(cell, Location):
        return location(cell.file, cell.line, path_width)
    if isinstance(cell, Reasons):
        return "; ".join(clean(reason) for reason in cell.items)
    if isinstance(cell, Reason):
        return cell.summary
    return cell


def _columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    flex: int = -1,
    right: Sequence[int] = (),
    caps: Mapping[int, int] | None = None,
) -> list[str]:
    """Aligned columns. Columns in ``caps`` are cut to their cap; when the table is still wider than ``width`` the
    ``flex`` column (the reason, usually) is cut too, down to MIN_FLEX_WIDTH. ``width`` 0: nothing is cut."""
    cells = [[clean(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    flex %= len(headers)
    if width > 0:
        for i, cap in (caps or {}).items():
            widths[i] = min(widths[i], max(cap, len(headers[i])))
        others = sum(w for i, w in enumerate(widths) if i != flex) + 2 * len(headers)
        widths[flex] = min(widths[flex], max(width - others, MIN_FLEX_WIDTH, len(headers[flex])))
    lines = []
    for row in [list(headers)] + cells:
        parts = []
        for i, cell in enumerate(row):
            cell = truncate(cell, widths[i]) if width > 0 else cell
            last = i == len(row) - 1
            parts.append(cell.rjust(widths[i]) if i in right else (cell if last else cell.ljust(widths[i])))
        lines.append(("  " + "  ".join(parts)).rstrip())
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return lines


def _section(table: Table, width: int, path_width: int) -> list[str]:
    if table.key == "limits":  # a sentence each, under the recompiles
        return [
            f"  recompile limit hit: {clean(function)} ({compile_id}): {clean(limit_type)} = {clean(limit)}"
            + (f"; {outcome}" if outcome else "")
            for compile_id, function, limit_type, limit, outcome in table.rows
        ]
    layout = _LAYOUTS[table.key]
    out = ["", table.title]
    if not table.rows:
        return out + [f"  {layout.empty}"]
    headers = [layout.headers.get(i, header) for i, header in enumerate(table.headers)]
    rows = [[_cell(cell, path_width) for cell in row] for row in table.rows]
    out += _columns(headers, rows, width, flex=layout.flex, right=table.numeric, caps=layout.caps)
    return out + [f"  {note}" for note in layout.notes]


def render_text(report: Report, width: int = DEFAULT_WIDTH) -> str:
    """The terminal summary: aligned columns per table; long cells are cut to fit ``width`` (0: never)."""
    path_width = PATH_CAP if width > 0 else 0
    out: list[str] = []
    out.append(
        f"torch-otel report: {plural(len(report.files), 'file')}, {plural(report.lines, 'line')}: "
        f"{plural(report.span_count, 'span')} ({report.compile_spans} torch.compile, {report.backward_spans} backward), "
        f"{plural(report.log_count, 'log record')}, {plural(report.point_count, 'metric point')}"
    )
    if report.processes:
        out.append(f"processes: {', '.join(clean(p) for p in report.processes)}")
    for table in report_tables(report):
        out += _section(table, width, path_width)
    return "\n".join(out) + "\n"
