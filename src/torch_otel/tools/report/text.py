"""The terminal view: a summary line, then the tables of :mod:`.tables` as aligned columns fitted to the width.
Every cell passes through :func:`.formatting.clean`, so nothing from the input reaches the terminal as a control
character.

Nothing that tells one row from another is cut: a source location gives way in the middle of its path (the file
name and ``:LINE`` stay), recompile and graph break reasons wrap onto further lines instead of being cut, a
recompile's reasons go one per line, with torch's alignment padding squeezed out and its ``# file:line`` pointer
kept, and a function's compile ids go on a line of their own under it. Only names (function, application span)
past their column's cap are cut, at their end. ``--width 0`` (or a wide ``COLUMNS``) shows every cell whole."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch_otel.tools.report.formatting import clean, compact_reason, location, plural, truncate, wrap
from torch_otel.tools.report.model import Report
from torch_otel.tools.report.tables import (
    Cell,
    Location,
    Reason,
    Reasons,
    Table,
    cache_notes,
    report_tables,
)

DEFAULT_WIDTH = 160  # when stdout is not a terminal
MIN_FLEX_WIDTH = 40
NAME_CAP = 40  # function names in the tables
PATH_CAP = 60  # source locations, shortened in the middle of the path
FUNCTIONS_PATH_CAP = 44  # the functions table has many columns: its locations give way sooner
REASON_PATH_CAP = 40  # the file:line pointer inside a recompile reason


@dataclass(frozen=True)
class _Layout:
    """How the terminal shows one table: its terser words, and which column gives way when it is too wide."""

    empty: str = "(none)"
    caps: Mapping[int, int] = field(default_factory=dict)  # column: most characters (names: cut at their end)
    flex: int = -1  # the column that wraps to fit the width, down to MIN_FLEX_WIDTH
    headers: Mapping[int, str] = field(default_factory=dict)  # column: the terminal's own header
    below: int | None = None  # a column shown on a line of its own under its row ("compile ids: ...")
    path_cap: int = PATH_CAP


_LAYOUTS = {
    "functions": _Layout(
        "(no torch.compile spans in the input)",
        caps={0: NAME_CAP},
        headers={8: "bwd", 9: "bwd total"},
        below=10,
        path_cap=FUNCTIONS_PATH_CAP,
    ),
    "recompiles": _Layout(caps={0: 24, 1: NAME_CAP, 2: 44}, headers={4: "reason"}),
    "graph_breaks": _Layout(caps={0: 24, 1: NAME_CAP}),
    "cache": _Layout("(no cache lookups in the input: backends such as eager and aot_eager use no compile cache)"),
    "artifacts": _Layout(caps={0: 24}),
    "ranks": _Layout(caps={1: NAME_CAP}),
    "rank_only": _Layout(caps={2: NAME_CAP}),
}


def _cell(cell: Cell, path_width: int, reason_path_width: int) -> list[str]:
    """A cell as its lines (a recompile's reasons: one each)."""
    if isinstance(cell, Location):
        return [location(cell.file, cell.line, path_width)]
    if isinstance(cell, Reasons):
        return [compact_reason(reason, reason_path_width) for reason in cell.items] or [""]
    if isinstance(cell, Reason):
        return [cell.summary]
    return [cell]


def _columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[str | Sequence[str]]],
    width: int,
    flex: int = -1,
    right: Sequence[int] = (),
    caps: Mapping[int, int] | None = None,
) -> list[list[str]]:
    """Aligned columns: the header lines, then each row's lines. A cell is a string or a list of lines. Columns in
    ``caps`` are cut to their cap; the ``flex`` column (the reason, usually) wraps to what the width leaves it,
    never under MIN_FLEX_WIDTH, between words, so no number in it is cut. ``width`` 0: nothing is cut or wrapped."""
    cells = [[[clean(line) for line in ([c] if isinstance(c, str) else c)] for c in row] for row in rows]
    widths = [max([len(h)] + [len(line) for row in cells for line in row[i]]) for i, h in enumerate(headers)]
    flex %= len(headers)
    if width > 0:
        for i, cap in (caps or {}).items():
            widths[i] = min(widths[i], max(cap, len(headers[i])))
        others = sum(w for i, w in enumerate(widths) if i != flex) + 2 * len(headers)
        widths[flex] = min(widths[flex], max(width - others, MIN_FLEX_WIDTH, len(headers[flex])))

    def lines_of(row: list[list[str]]) -> list[str]:
        columns = []
        for i, lines in enumerate(row):
            if width > 0 and i == flex:
                lines = [piece for line in lines for piece in wrap(line, widths[i])]
            elif width > 0:
                lines = [truncate(line, widths[i]) for line in lines]
            columns.append(lines)
        out = []
        for n in range(max(len(lines) for lines in columns)):
            parts = []
            for i, lines in enumerate(columns):
                cell = lines[n] if n < len(lines) else ""
                last = i == len(columns) - 1
                parts.append(cell.rjust(widths[i]) if i in right else (cell if last else cell.ljust(widths[i])))
            out.append(("  " + "  ".join(parts)).rstrip())
        return out

    header = lines_of([[h] for h in headers])
    return [header + ["  " + "  ".join("-" * w for w in widths)]] + [lines_of(row) for row in cells]


def _below(label: str, text: str, width: int) -> list[str]:
    """A line under a row, wrapped to the width, its continuation lines indented under its text."""
    indent = " " * (4 + len(label) + 2)
    lines = wrap(clean(text), max(width - len(indent), MIN_FLEX_WIDTH) if width > 0 else 0)
    return [f"    {label}: {lines[0]}"] + [indent + line for line in lines[1:]]


def _section(table: Table, report: Report, width: int, path_width: int) -> list[str]:
    if table.key == "limits":  # a sentence each, under the recompiles
        return [
            f"  recompile limit hit: {clean(function)} ({compile_id}): {clean(limit_type)} = {clean(limit)}"
            + (f"; {outcome}" if outcome else "")
            for compile_id, function, limit_type, limit, outcome in table.rows
        ]
    if table.optional and not table.rows:
        return []
    layout = _LAYOUTS[table.key]
    out = ["", table.title]
    if not table.rows:
        return out + [f"  {layout.empty}"]
    keep = [
        i
        for i in range(len(table.headers))
        if i != layout.below and not (table.key == "ranks" and i == len(table.headers) - 1)
    ]
    headers = [layout.headers.get(i, table.headers[i]) for i in keep]
    paths = min(path_width, layout.path_cap) if path_width else 0
    reason_paths = REASON_PATH_CAP if width > 0 else 0
    rows = [[_cell(row[i], paths, reason_paths) for i in keep] for row in table.rows]
    flex = keep.index(layout.flex % len(table.headers)) if layout.flex % len(table.headers) in keep else -1
    caps = {keep.index(i): cap for i, cap in layout.caps.items() if i in keep}
    right = [keep.index(i) for i in table.numeric if i in keep]
    header, *groups = _columns(headers, rows, width, flex=flex, right=right, caps=caps)
    out += header
    for row, lines in zip(table.rows, groups, strict=True):
        out += lines
        if layout.below is not None and row[layout.below]:
            out += _below(table.headers[layout.below], str(row[layout.below]), width)
        if table.key == "ranks" and row[-1]:
            out.append(f"    slowest: {clean(row[-1])} (compile id {clean(row[0])})")
    notes = (
        cache_notes(report) if table.key == "cache" else (table.note,) if table.key in ("ranks", "rank_only") else ()
    )
    for note in notes:
        out += ["  " + line for line in wrap(note, width - 2 if width > 0 else 0)]
    return out


def render_text(report: Report, width: int = DEFAULT_WIDTH) -> str:
    """The terminal summary: aligned columns per table, fitted to ``width`` (0: every cell whole, on one line)."""
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
        out += _section(table, report, width, path_width)
    return "\n".join(out) + "\n"
