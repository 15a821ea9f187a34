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

from dataclasses import dataclass

from torch_otel import catalog
from torch_otel.tools.report.formatting import format_count, format_us
from torch_otel.tools.report.model import CacheRow, Report, reason_summary, with_process


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
    key: str  # what the views know the table by: functions | recompiles | limits | graph_breaks | cache | artifacts
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    numeric: tuple[int, ...] = ()  # columns of numbers: aligned right
    empty: str = ""  # what the page says when there are no rows
    note: str = ""  # under the table, on the page, when it has rows
    optional: bool = False  # not shown at all when it has no rows


def _has_counts(row: CacheRow) -> bool:
    return any(value is not None for value in (row.span_hits, row.span_misses, row.metric_hits, row.metric_misses))


def _artifacts(counts: tuple[tuple[str, int], ...]) -> str:
    prefix = catalog.ARTIFACT_EVENT_PREFIX
    return ", ".join(f"{name[len(prefix) :] if name.startswith(prefix) else name} {n}" for name, n in counts)


def report_tables(report: Report) -> tuple[Table, ...]:
    """The six tables, in the order both views show them."""
    return (
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
                "total",
                "max",
                "backward",
                "backward total",
                "compile ids",
            ),
            tuple(
                (
                    r.function,
                    Location(r.file, r.line),
                    str(r.compiles),
                    str(r.recompiles),
                    str(r.restarts),
                    str(r.failures),
                    format_us(r.total_us),
                    format_us(r.max_us),
                    str(r.backward_compiles),
                    format_us(r.backward_total_us) if r.backward_compiles else "-",
                    ", ".join(r.compile_ids),
                )
                for r in report.functions
            ),
            numeric=(2, 3, 4, 5, 6, 7, 8, 9),
            empty="No torch.compile spans in the input.",
        ),
        Table(
            "recompiles",
            "Recompiles",
            ("compile id", "function", "triggered by", "trace id", "reasons"),
            tuple(
                (
                    with_process(r.process, r.compile_id),
                    r.function,
                    "(no app span)" if r.app_span is None else r.app_span,
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
                    r.function,
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
                    r.function,
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
            empty="No cache counts in the input.",
            note=f"spans: the compile spans' pytorch.compile.*_cache_hit_count / _miss_count, summed; "
            f"metric: {catalog.METRIC_CACHE_LOOKUPS} (latest value of each cumulative stream, delta points summed).",
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
    )
