"""The terminal view: a summary line, then the tables of :mod:`.tables` as aligned columns fitted to the width.
Every cell passes through :func:`.formatting.clean`, so nothing from the input reaches the terminal as a control
character.

Nothing that tells one row from another is cut: a source location gives way in the middle of its path (the file
name and ``:LINE`` stay), recompile and graph break reasons wrap onto further lines instead of being cut (up to
MAX_CELL_LINES lines a cell, then a line saying how much more there is), a recompile's reasons go one per line, with
torch's alignment padding squeezed out and its ``# file:line`` pointer kept, and a function's compile ids go on a
line of their own under it. A table wider than the width gives way step by step, as its :class:`_Layout` says: names
(function, application span) and trace ids are cut at their end (a trace id to 8 hex digits), columns move onto a
line of their own under their row, columns that say nothing (all 0) are left out, headers get shorter; what still
does not fit wraps. ``--width 0`` (or a wide ``COLUMNS``) shows every cell whole, on one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch_otel.tools.report.formatting import clean, compact_reason, location, plural, truncate, wrap
from torch_otel.tools.report.model import Report
from torch_otel.tools.report.tables import (
    SEPARATOR,
    Cell,
    Location,
    Reason,
    Reasons,
    Table,
    cache_notes,
    report_tables,
)

DEFAULT_WIDTH = 160  # when stdout is not a terminal
MIN_WRAP_WIDTH = 24  # a column that wraps (a reason) is never narrower than this
LAST_RESORT_WRAP_WIDTH = 10  # ... unless the table does not fit otherwise
MAX_CELL_LINES = 12  # a cell that wraps shows at most this many lines, the last saying how much more there is
NAME_CAP = 40  # function names in the tables
PATH_CAP = 60  # source locations, shortened in the middle of the path
FUNCTIONS_PATH_CAP = 44  # the functions table has many columns: its locations give way sooner
REASON_PATH_CAP = 40  # the file:line pointer inside a recompile reason
TRIVIAL = ("0", "-", "")  # a column of only these says nothing and may be left out


@dataclass(frozen=True)
class _Layout:
    """How the terminal shows one table: its terser words, and how it gives way when it is wider than the width.

    ``steps`` are taken in order, each only while the table is still too wide: ``("cut", column, width)`` cuts a
    column to that width (a name at its end, a location in the middle of its path), ``("below", column)`` moves it
    onto a line of its own under its row, ``("drop0", column)`` leaves out a column of nothing but 0 or -,
    ``("short",)`` switches to the short headers, ``("prefix", column, n)`` keeps the first n characters of each of its
    cells, an abbreviation such as a trace id's first 8 hex digits (which a trace search still finds)."""

    empty: str = "(none)"
    caps: Mapping[int, int] = field(default_factory=dict)  # column: most characters (names: cut at their end)
    wrap: tuple[int, ...] = (-1,)  # the columns that wrap to what the width leaves them, down to min_wrap
    min_wrap: int = MIN_WRAP_WIDTH
    headers: Mapping[int, str] = field(default_factory=dict)  # column: the terminal's own header
    short: Mapping[int, str] = field(default_factory=dict)  # column: its header once ("short",) is taken
    below: tuple[int, ...] = ()  # columns always shown on a line of their own under their row ("compile ids: ...")
    hidden: tuple[int, ...] = ()  # columns the terminal shows its own way (the ranks' slowest)
    steps: tuple[tuple, ...] = ()
    path_cap: int = PATH_CAP


_LAYOUTS = {
    "unfinished": _Layout(
        caps={1: NAME_CAP},
        wrap=(),
        below=(5,),
        steps=(("cut", 2, 40), ("cut", 1, 24), ("below", 2), ("cut", 1, 16)),
    ),
    "functions": _Layout(
        "(no torch.compile spans in the input)",
        caps={0: NAME_CAP},
        wrap=(),
        headers={9: "bwd", 10: "bwd total"},
        short={2: "comp", 3: "recomp", 4: "restart", 6: "limits", 10: "bwd tot"},
        below=(11, 12),
        steps=(
            ("drop0", 4),
            ("drop0", 6),
            ("drop0", 9),
            ("drop0", 10),
            ("drop0", 5),
            ("cut", 1, 32),
            ("cut", 0, 24),
            ("short",),
            ("cut", 1, 24),
            ("below", 1),
            ("cut", 0, 16),
        ),
        path_cap=FUNCTIONS_PATH_CAP,
    ),
    "recompiles": _Layout(
        caps={0: 24, 1: NAME_CAP},
        headers={4: "reason"},
        steps=(("prefix", 3, 8), ("below", 2), ("cut", 1, 24), ("cut", 1, 16)),
    ),
    "graph_breaks": _Layout(
        caps={0: 24, 1: NAME_CAP},
        steps=(("cut", 1, 24), ("cut", 2, 32), ("cut", 1, 16), ("cut", 2, 20), ("below", 2)),
    ),
    "cache": _Layout(
        "(no cache lookups in the input: backends such as eager and aot_eager use no compile cache)",
        wrap=(),
        short={1: "hits/span", 2: "misses/span", 3: "hits/metric", 4: "misses/metric"},
        steps=(("short",),),
    ),
    "artifacts": _Layout(caps={0: 24}),
    "ranks": _Layout(caps={1: NAME_CAP}, wrap=(), hidden=(-1,), min_wrap=12, steps=(("cut", 1, 16), ("wrap",))),
    "rank_only": _Layout(caps={2: NAME_CAP}, steps=(("cut", 2, 16),)),
}


def _cell_lines(cell: Cell, width: int, reason_path_width: int) -> list[str]:
    """A cell as its lines (a recompile's reasons: one each), a location shortened to ``width`` (0: whole)."""
    if isinstance(cell, Location):
        return [location(cell.file, cell.line, width)]
    if isinstance(cell, Reasons):
        return [clean(compact_reason(reason, reason_path_width)) for reason in cell.items] or [""]
    if isinstance(cell, Reason):
        return [clean(cell.summary)]
    return [clean(cell)]


def wrap_cell(lines: Sequence[str], width: int, max_lines: int = MAX_CELL_LINES) -> list[str]:
    """A cell's lines wrapped to ``width`` (at `` · `` first, then between words), at most ``max_lines`` of them:
    past that, the last lines say how many characters are left out and how to see them (0: no limit)."""
    out: list[str] = []
    for line in lines:
        parts = line.split(SEPARATOR)
        current = ""
        for part in parts:
            joined = f"{current}{SEPARATOR}{part}" if current else part
            if current and len(joined) > width:
                out += wrap(current, width)
                current = part
            else:
                current = joined
        out += wrap(current, width)
    if max_lines <= 0 or len(out) <= max_lines:
        return out
    total = sum(len(line) for line in out)
    for keep in range(max_lines - 1, 0, -1):
        hidden = total - sum(len(line) for line in out[:keep])
        marker = wrap(f"… ({hidden} more characters; --width 0 for all)", width)
        if keep + len(marker) <= max_lines:
            return out[:keep] + marker
    return out[:1] + wrap(f"… ({total - len(out[0])} more characters; --width 0 for all)", width)


def _fit(
    table: Table, layout: _Layout, width: int
) -> tuple[list[int], list[int], dict[int, str], dict[int, int], set[int], set[int]]:
    """Which columns show in the table and which under their rows, their headers, their widths, which wrap, which
    show their prefix only."""
    n = len(table.headers)
    hidden = {i % n for i in layout.hidden}
    below = [i for i in layout.below if i not in hidden]
    keep = [i for i in range(n) if i not in below and i not in hidden]
    headers = {i: layout.headers.get(i, table.headers[i]) for i in range(n)}
    wraps = {i % n for i in layout.wrap} if width > 0 else set()
    caps = dict(layout.caps) if width > 0 else {}
    prefixes: dict[int, int] = {}  # column: its first characters only, as an abbreviation (a trace id's 8)
    path = layout.path_cap if width > 0 else 0
    reason_paths = REASON_PATH_CAP if width > 0 else 0

    def natural(i: int) -> int:
        cap = caps.get(i, 0)
        lines = [line for row in table.rows for line in _cell_lines(row[i], path if cap == 0 else cap, reason_paths)]
        if i in prefixes:
            lines = [line[: prefixes[i]] for line in lines]
        longest = max([len(line) for line in lines], default=0)
        return max(len(headers[i]), min(longest, cap) if cap else longest)

    def widths() -> dict[int, int]:
        return {i: natural(i) for i in keep}

    def need(current: dict[int, int]) -> int:
        return sum(min(current[i], min_wrap) if i in wraps else current[i] for i in keep) + 2 * len(keep)

    current = widths()
    min_wrap = layout.min_wrap
    if width > 0:
        for step in layout.steps:
            if need(current) <= width:
                break
            kind, *args = step
            column = args[0] % n if args else -1
            if kind == "cut" and column in keep:
                if isinstance(table.rows[0][column] if table.rows else None, Location):
                    path = min(path, args[1])
                else:
                    caps[column] = min(caps.get(column, args[1]), args[1])
            elif kind == "prefix" and column in keep:
                prefixes[column] = args[1]
            elif kind == "below" and column in keep:
                keep.remove(column)
                below.insert(0, column)
            elif kind == "drop0" and column in keep and all(str(row[column]) in TRIVIAL for row in table.rows):
                keep.remove(column)
            elif kind == "short":
                headers.update(layout.short)
            elif kind == "wrap":
                wraps |= {i for i in keep if i not in caps and i != 0}
            current = widths()
        if need(current) > width:  # every step taken: the wrapping columns go narrower than they like
            min_wrap = max(LAST_RESORT_WRAP_WIDTH, min_wrap - (need(current) - width))
        free = width - sum(current[i] for i in keep if i not in wraps) - 2 * len(keep)
        flexible = sorted((i for i in keep if i in wraps), key=lambda i: current[i])
        for k, i in enumerate(flexible):  # the narrowest first: what one does not need goes to the next
            share = max(min_wrap, len(headers[i]), free // (len(flexible) - k))
            current[i] = min(current[i], share)
            free -= current[i]
    return keep, below, headers, current, wraps, set(prefixes)


def _section(table: Table, report: Report, width: int) -> list[str]:
    if table.key == "limits":  # a sentence each, under the recompiles
        out = []
        for compile_id, function, limit_type, limit, outcome in table.rows:
            sentence = f"recompile limit hit: {clean(function)} ({compile_id}): {clean(limit_type)} = {clean(limit)}"
            lines = wrap(sentence + (f"; {outcome}" if outcome else ""), width - 4 if width > 0 else 0)
            out += [f"  {lines[0]}"] + [f"    {line}" for line in lines[1:]]
        return out
    if table.optional and not table.rows:
        return []
    layout = _LAYOUTS[table.key]
    out = ["", table.title]
    if not table.rows:
        return out + ["  " + line for line in wrap(layout.empty, width - 2 if width > 0 else 0)]
    keep, below, headers, widths, wraps, prefixes = _fit(table, layout, width)
    right = set(table.numeric)
    reason_paths = REASON_PATH_CAP if width > 0 else 0
    sizes = [widths[i] for i in keep]
    out.append(_join([headers[i] for i in keep], sizes, keep, right))
    out.append("  " + "  ".join("-" * w for w in sizes))
    for row in table.rows:
        columns = []
        for i in keep:
            lines = _cell_lines(row[i], widths[i] if width > 0 else 0, reason_paths)
            if width > 0 and i in prefixes:
                lines = [line[: widths[i]] for line in lines]
            elif width > 0:
                lines = wrap_cell(lines, widths[i]) if i in wraps else [truncate(line, widths[i]) for line in lines]
            columns.append(lines)
        for k in range(max(len(lines) for lines in columns)):
            out.append(_join([lines[k] if k < len(lines) else "" for lines in columns], sizes, keep, right))
        for i in below:
            text = "; ".join(_cell_lines(row[i], PATH_CAP if width > 0 else 0, reason_paths))
            if text and text not in TRIVIAL:
                out += _below(headers[i], text, width)
        if table.key == "ranks" and row[-1]:
            out.append(f"    slowest: {clean(row[-1])} (compile id {clean(row[0])})")
    notes = (
        cache_notes(report)
        if table.key == "cache"
        else (table.note,)
        if table.key in ("ranks", "rank_only", "unfinished")
        else ()
    )
    for note in notes:
        out += ["  " + line for line in wrap(note, width - 2 if width > 0 else 0)]
    return out


def _join(cells: Sequence[str], widths: Sequence[int], keep: Sequence[int], right: set[int]) -> str:
    parts = []
    for k, (cell, w) in enumerate(zip(cells, widths, strict=True)):
        last = k == len(cells) - 1
        parts.append(cell.rjust(w) if keep[k] in right else (cell if last else cell.ljust(w)))
    return ("  " + "  ".join(parts)).rstrip()


def _below(label: str, text: str, width: int) -> list[str]:
    """A line under a row, wrapped to the width, its continuation lines indented under its text."""
    indent = " " * (4 + len(label) + 2)
    lines = wrap(clean(text), max(width - len(indent), MIN_WRAP_WIDTH) if width > 0 else 0)
    return [f"    {label}: {lines[0]}"] + [indent + line for line in lines[1:]]


def render_text(report: Report, width: int = DEFAULT_WIDTH) -> str:
    """The terminal summary: aligned columns per table, fitted to ``width`` (0: every cell whole, on one line)."""
    out = wrap(
        f"torch-otel report: {plural(len(report.files), 'file')}, {plural(report.lines, 'line')}: "
        f"{plural(report.span_count, 'span')} ({report.compile_spans} torch.compile, "
        f"{report.backward_spans} backward), {plural(report.log_count, 'log record')}, {plural(report.point_count, 'metric point')}",
        width,
    )
    if report.processes:
        out += wrap(f"processes: {', '.join(clean(p) for p in report.processes)}", width)
    for table in report_tables(report):
        out += _section(table, report, width)
    return "\n".join(out) + "\n"
