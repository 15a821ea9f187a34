"""The report's tables, computed once from a :class:`.model.Report`: the terminal view (:mod:`.text`) and the page
(:mod:`.html`) render the same rows.

A cell is a string, ready to show, or one of three small values that the two views show each in their own way:
:class:`Location` (the terminal cuts a long file name from the left, the page shows it whole), :class:`Reasons`
(recompile reasons: "; "-joined in the terminal, one per line on the page) and :class:`Reason` (a graph break
reason: its summary line in the terminal; on the page the summary, with the full text under it). What a table is
called, its columns, which of them are numbers and what the page says when it is empty are here too; the terminal's
own terser wording and its column widths are in :mod:`.text`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch_otel import catalog
from torch_otel.tools.report.formatting import (
    format_count,
    format_seconds,
    format_us,
    function_label,
    request_label,
)
from torch_otel.tools.report.model import (
    CacheRow,
    RankCompile,
    RankCompileRow,
    Report,
    SlowCompile,
    UnfinishedCompile,
    reason_summary,
    with_process,
)

REQUEST_LABEL_WIDTH = 60  # "triggered by": the application span's name and identifying attributes
OUTCOMES = {"compile": "compiled", "recompile": "recompiled", "failed": "failed", "limit": "recompile limit hit"}
SEPARATOR = " · "  # between the parts of a cell; the terminal breaks a cell that wraps here first


@dataclass(frozen=True)
class Location:
    """A source location: ``file:line``."""

    file: str
    line: int | None


@dataclass(frozen=True)
class Reasons:
    """A recompile's reasons, in torch's order."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Reason:
    """A graph break reason, in full; :attr:`summary` is the line of it worth showing."""

    text: str

    @property
    def summary(self) -> str:
        return reason_summary(self.text)


Cell = str | Location | Reasons | Reason


@dataclass(frozen=True)
class Table:
    key: str  # what the views know the table by: unfinished | functions | recompiles | limits | graph_breaks | cache
    # | artifacts | ranks | rank_only
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    numeric: tuple[int, ...] = ()  # columns of numbers: aligned right
    empty: str = ""  # what the page says when there are no rows
    note: str = ""  # under the table, on the page, when it has rows
    optional: bool = False  # not shown at all when it has no rows


def _has_counts(row: CacheRow) -> bool:
    """A cache some compile looked up: a row of zeros (a backend without that cache: eager, aot_eager) is left out."""
    return any(value for value in (row.span_hits, row.span_misses, row.metric_hits, row.metric_misses))


def cache_notes(report: Report) -> tuple[str, ...]:
    """What the Cache table's columns mean, in plain words."""
    return (
        f"hits / misses (spans): how often the compiles in these files found their compiled code in each cache "
        f"(hit) or had to compile and store it (miss), as each compile reported it: "
        f"{report.compile_spans} torch.compile and {report.backward_spans} backward compile spans, summed.",
        f"hits / misses (metric): the same lookups, counted by the {catalog.METRIC_CACHE_LOOKUPS} counter "
        f"(its latest total per process); it also counts compiles whose spans these files lack, so it may be higher.",
        "A cache that no compile looked up (a backend without caches, such as eager or aot_eager) is not listed.",
    )


def trigger(app_span: str | None, attributes: tuple = ()) -> str:
    """The "triggered by" cell: the application span that paid for a recompile, with what identifies it."""
    if app_span is None:
        return "(no app span)"
    if app_span == "?":
        return "?"
    return request_label(app_span, dict(attributes), REQUEST_LABEL_WIDTH)


def running_for(compile: UnfinishedCompile) -> str:
    """How long an unfinished compile had run: "4.00 s at slow warning 4", or "7.25 s to the last record" (from its
    start to the latest record of its process, when it sent no slow warning)."""
    seconds = format_seconds(compile.elapsed_s * 1e6)
    return f"{seconds} at slow warning {compile.warnings}" if compile.warned else f"{seconds} to the last record"


def slow_summary(compile: SlowCompile) -> str:
    """ "rank 0 0/0: warned 2×, longest in backend_compile (0.828 s)": a finished compile's slow warnings."""
    where = f"longest in {compile.phase} ({format_seconds(compile.phase_seconds * 1e6)})"
    return f"{with_process(compile.process, compile.compile_id)}: warned {compile.warnings}×, {where}"


def _rank_cell(compile: RankCompile | None, running: UnfinishedCompile | None = None) -> str:
    if running is not None:
        return SEPARATOR.join(("still compiling", running.phase, running_for(running)))
    if compile is None:
        return "-"
    counts = (
        f"{format_count(compile.cache_hits)} hit {format_count(compile.cache_misses)} miss"
        if compile.cache_hits is not None or compile.cache_misses is not None
        else "no cache counts"
    )
    return SEPARATOR.join((format_us(compile.duration_us), counts, OUTCOMES.get(compile.outcome, compile.outcome)))


def slowest(row: RankCompileRow) -> str:
    """ "rank 1, +0.355 s over the median", or "" where no rank took meaningfully longer than the median
    (model.SLOWEST_MIN_FRACTION of it and model.SLOWEST_MIN_US)."""
    if row.slowest is None:
        return ""
    return f"rank {row.slowest}, +{format_seconds(row.over_median_us)} over the median"


MAX_RANK_COLUMNS = 8  # with more ranks, "Compiles across ranks" summarises them in one column
_RANKS_LISTED = 8  # ranks named in one cell before "and N more"


def _ranks(ranks: Sequence[int]) -> str:
    named = ", ".join(f"rank {rank}" for rank in ranks[:_RANKS_LISTED])
    return named + (f" and {len(ranks) - _RANKS_LISTED} more" if len(ranks) > _RANKS_LISTED else "")


def _ranks_summary(row: RankCompileRow, ranks: tuple[int, ...]) -> str:
    """One cell for a compile id over many ranks: "62 of 64 compiled · min 1.20 s, median 1.31 s, max 9.80 s ·
    failed on rank 7 · still compiling on rank 12 · not on rank 40"."""
    parts = [f"{len(row.compiles)} of {len(ranks)} compiled"]
    durations = [c.duration_us for c in row.compiles]
    if durations:
        parts.append(
            f"min {format_us(min(durations))}, median {format_us(statistics.median(durations))}, "
            f"max {format_us(max(durations))}"
        )
    failed = [c.rank for c in row.compiles if c.outcome == "failed"]
    running = sorted(u.rank for u in row.running if u.rank is not None)
    absent = sorted(set(ranks) - {c.rank for c in row.compiles} - set(running))
    lists: tuple[tuple[str, list[int]], ...] = (
        ("failed on", failed),
        ("still compiling on", running),
        ("not on", absent),
    )
    for words, which in lists:
        if which:
            parts.append(f"{words} {_ranks(which)}")
    return SEPARATOR.join(parts)


def _rank_columns(report: Report) -> tuple[tuple[str, ...], Callable[[RankCompileRow], tuple[str, ...]]]:
    """A column per rank, or past MAX_RANK_COLUMNS ranks one summary column."""
    if len(report.ranks) > MAX_RANK_COLUMNS:
        return (f"{len(report.ranks)} ranks",), lambda row: (_ranks_summary(row, report.ranks),)
    return tuple(f"rank {rank}" for rank in report.ranks), lambda row: tuple(
        _rank_cell(
            next((c for c in row.compiles if c.rank == rank), None),
            next((u for u in row.running if u.rank == rank), None),
        )
        for rank in report.ranks
    )


def rank_tables(report: Report) -> tuple[Table, ...]:
    """Compiles across ranks (a row per compile id, a column per rank or one summary column past MAX_RANK_COLUMNS
    ranks, the slowest rank last) and the compiles on some ranks only. Both optional: a run of one process has
    neither."""
    rank_headers, rank_cells = _rank_columns(report)
    return (
        Table(
            "ranks",
            "Compiles across ranks",
            ("compile id", "function", *rank_headers, "slowest"),
            tuple(
                (row.compile_id, function_label(row.function), *rank_cells(row), slowest(row))
                for row in report.rank_compiles
            ),
            note=(
                "each rank: compile time (forward and backward), cache hits and misses, outcome; still compiling: "
                "running when that rank's file ends (see Compiles that did not finish); -: not compiled there. "
                if len(report.ranks) <= MAX_RANK_COLUMNS
                else f"more than {MAX_RANK_COLUMNS} ranks: how many compiled it, their compile times (forward and "
                "backward), and the ranks where it failed, was still compiling when the file ended, or never ran. "
            )
            + "slowest: the rank that took longest, and how much longer than the median of the ranks that compiled it "
            "(shown from 10 % and 0.05 s over it).",
            optional=True,
        ),
        Table(
            "rank_only",
            "Compiles on some ranks only",
            ("compile id", "compiled on", "function", "reason"),
            tuple(
                (row.compile_id, _ranks(row.ranks), function_label(row.function), Reasons(row.reasons))
                for row in report.rank_divergences
            ),
            note="a compile some ranks did and the others did not: their shapes or guards diverged.",
            optional=True,
        ),
    )


def _artifacts(counts: tuple[tuple[str, int], ...]) -> str:
    prefix = catalog.ARTIFACT_EVENT_PREFIX
    return ", ".join(f"{name[len(prefix) :] if name.startswith(prefix) else name} {n}" for name, n in counts)


def unfinished_table(report: Report) -> Table:
    """Compiles that did not finish: a start record and no compile span. Optional: shown only when there are."""
    return Table(
        "unfinished",
        "Compiles that did not finish",
        ("compile id", "function", "location", "phase now", "running for", "open phases"),
        tuple(
            (
                with_process(u.process, u.compile_id),
                function_label(u.function),
                Location(u.file, u.line),
                u.phase,
                running_for(u),
                " > ".join(u.open_phases) or u.root,
            )
            for u in report.unfinished
        ),
        note="still running when the file ends: a pytorch.compile.start record and no compile span. The process was "
        "stuck there when it was killed, or it ended before the compile did. running for: at its last "
        "pytorch.compile.slow warning, else from its start to the last record of its process.",
        optional=True,
    )


def report_tables(report: Report) -> tuple[Table, ...]:
    """The tables, in the order both views show them: the compiles that did not finish (when there are), six, then
    the two of a multi-rank run."""
    return (
        unfinished_table(report),
        Table(
            "functions",
            "Compiles per function",
            (
                "function",
                "location",
                "compiles",
                "recompiles",
                "restarts",
                "failed",
                "limit hits",
                "total",
                "max",
                "backward",
                "backward total",
                "compile ids",
                "slow",
            ),
            tuple(
                (
                    function_label(r.function),
                    Location(r.file, r.line),
                    str(r.compiles),
                    str(r.recompiles),
                    str(r.restarts),
                    str(r.failures),
                    str(r.limit_hits),
                    format_us(r.total_us),
                    format_us(r.max_us),
                    str(r.backward_compiles),
                    format_us(r.backward_total_us) if r.backward_compiles else "-",
                    ", ".join(r.compile_ids),
                    "; ".join(slow_summary(c) for c in r.slow),
                )
                for r in report.functions
            ),
            numeric=(2, 3, 4, 5, 6, 7, 8, 9, 10),
            empty="No torch.compile spans in the input.",
            note="limit hits: attempts torch refused at a recompile limit (not compiles, not failures: see Recompile "
            "limits hit). slow: compiles that ran past TORCH_OTEL_SLOW_COMPILE (pytorch.compile.slow warnings).",
        ),
        Table(
            "recompiles",
            "Recompiles",
            ("compile id", "function", "triggered by", "trace id", "reasons"),
            tuple(
                (
                    with_process(r.process, r.compile_id),
                    function_label(r.function),
                    trigger(r.app_span, r.app_attributes),
                    r.trace_id or "?",
                    Reasons(r.reasons),
                )
                for r in report.recompiles
            ),
            empty="No recompiles.",
        ),
        Table(
            "limits",
            "Recompile limits hit",
            ("compile id", "function", "limit", "value", "what torch did"),
            tuple(
                (
                    with_process(r.process, r.compile_id),
                    function_label(r.function),
                    r.limit_type,
                    r.limit,
                    catalog.LIMIT_OUTCOMES.get(r.action, ""),
                )
                for r in report.limits
            ),
            optional=True,
        ),
        Table(
            "graph_breaks",
            "Graph breaks",
            ("compile id", "function", "user location", "count", "reason"),
            tuple(
                (
                    with_process(r.process, r.compile_id),
                    function_label(r.function),
                    Location(r.file, r.line),
                    str(r.count),
                    Reason(r.reason),
                )
                for r in report.graph_breaks
            ),
            numeric=(3,),
            empty="No graph breaks.",
        ),
        Table(
            "cache",
            "Cache",
            ("cache", "hits (spans)", "misses (spans)", "hits (metric)", "misses (metric)"),
            tuple(
                (
                    r.cache,
                    format_count(r.span_hits),
                    format_count(r.span_misses),
                    format_count(r.metric_hits),
                    format_count(r.metric_misses),
                )
                for r in report.caches
                if _has_counts(r)
            ),
            numeric=(1, 2, 3, 4),
            empty="No cache lookups in the input (backends such as eager and aot_eager use no compile cache).",
            note=" ".join(cache_notes(report)),
        ),
        Table(
            "artifacts",
            f"Artifacts per compile id ({catalog.ARTIFACT_EVENT_PREFIX}* log records)",
            ("compile id", "records", "by artifact"),
            tuple(
                (with_process(r.process, r.compile_id or "(none)"), str(r.total), _artifacts(r.counts))
                for r in report.artifacts
            ),
            numeric=(1,),
            empty="No artifact log records.",
        ),
        *rank_tables(report),
    )
