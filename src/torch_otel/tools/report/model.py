"""The compile model: parsed batches -> a :class:`Report` of compiles, recompiles, graph breaks, caches, artifacts
and the timeline's lanes (the traces that hold a compile, with their application spans).

:class:`ReportBuilder` takes batches one at a time and is pure: spans are kept (the timeline and the parent lookups
need them), log records and metric points are folded into counters as they come, so a file of gigabytes of torch
logs costs little memory. The Report holds data, not text: :mod:`.tables` turns it into the rows both views show.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch_otel import catalog
from torch_otel.tools.report.parsing import Batch, LogRecord, MetricPoint, Process, Span

# "slowest rank" only when it took meaningfully longer than the median of the ranks: at least 10 % of the median and
# at least 50 ms (below either, the difference is noise: scheduling, a cache file read, a GC pause).
SLOWEST_MIN_FRACTION = 0.10
SLOWEST_MIN_US = 50_000.0
MAX_LANES = 2000  # HTML timeline: traces shown
MAX_BARS = 25000  # HTML timeline: spans drawn, in all lanes together
APP_SPAN_MAX_ATTRIBUTES = 32  # attributes kept of an application span (torch's own spans keep all)
APP_SPAN_MAX_VALUE_CHARS = 256

# torch's CompilationMetrics fields become pytorch.compile.<field> span attributes (see spans.METRIC_FIELDS);
# the catalog has no constant per field, so these are derived from the compile id attribute's namespace.
_COMPILE_NS = catalog.ATTR_COMPILE_ID.rpartition(".")[0] + "."
ATTR_DURATION_US = _COMPILE_NS + "duration_us"
CACHE_RESULTS = ("hit", "miss")


def cache_count_attribute(cache: str, result: str) -> str:
    """The compile span attribute holding ``cache``'s ``result`` count, e.g. pytorch.compile.aotautograd_local_cache_hit_count."""
    return f"{_COMPILE_NS}{cache}_cache_{result}_count"


@dataclass(frozen=True)
class FunctionRow:
    function: str
    file: str
    line: int | None
    compiles: int
    recompiles: int
    failures: int
    total_us: float
    max_us: float
    backward_compiles: int
    backward_total_us: float
    compile_ids: tuple[str, ...] = ()  # forward compiles, in compile id order (per process: "rank 1 0/0")
    restarts: int = 0  # analysis restarts over its compiles (pytorch.compile.restarts, summed)
    limit_hits: int = 0  # attempts that hit a recompile limit (never compiled: counted here, not as compiles)
    slow: tuple[SlowCompile, ...] = ()  # its finished compiles that passed TORCH_OTEL_SLOW_COMPILE


@dataclass(frozen=True)
class SlowCompile:
    """A finished compile that ran past TORCH_OTEL_SLOW_COMPILE: its ``pytorch.compile.slow`` warnings (log records,
    or the compile span's events when the input has no logs), summed up."""

    process: str
    compile_id: str
    warnings: int
    phase: str  # the phase it had spent longest in when a warning came (pytorch.compile.phase)
    phase_seconds: float  # how long, at that warning


@dataclass(frozen=True)
class UnfinishedCompile:
    """A compile with a ``pytorch.compile.start`` record and no compile span: still running when the input ends
    (the process was stuck, killed, or its last spans were never exported)."""

    process: str  # label; "" when the input holds one process
    rank: int | None
    compile_id: str  # "?" when the start record has none
    function: str
    file: str
    line: int | None
    root: str  # the start record's pytorch.compile.phase: dynamo, entire_backward_compile, compiled_autograd
    phase: str  # the innermost phase open at its last slow warning; the root when it had none
    open_phases: tuple[str, ...]  # every phase open at its last slow warning, outermost first
    elapsed_s: float  # at its last slow warning (pytorch.compile.elapsed_seconds), else start -> last record seen
    warned: bool  # elapsed_s comes from a slow warning
    warnings: int
    start_ns: int
    trace_id: str  # of the application span that triggered it
    resource: Process = ()  # its process's identifying resource attributes (parsing.PROCESS_KEYS)


@dataclass(frozen=True)
class RecompileRow:
    process: str  # a label when the input holds several processes, else ""
    compile_id: str
    function: str
    reasons: tuple[str, ...]
    app_span: str | None  # the application span that paid for it; None: the compile was a root span
    trace_id: str
    time_ns: int
    # that application span's attributes (request id, step, sequence length, ...), as the input has them, bounded
    # (APP_SPAN_MAX_ATTRIBUTES); formatting.request_label makes the label both views show
    app_attributes: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class GraphBreakRow:
    process: str
    compile_id: str
    function: str
    reason: str  # in full; reason_summary() gives the line to show
    file: str
    line: int | None
    count: int


@dataclass(frozen=True)
class LimitRow:
    process: str
    compile_id: str
    function: str
    limit_type: str
    limit: str
    action: str = ""  # what torch did (one of catalog.LIMIT_ACTIONS); "" when the input does not say


@dataclass(frozen=True)
class CacheRow:
    cache: str
    span_hits: int | None  # None: no compile span carried this cache's counts
    span_misses: int | None
    metric_hits: float | None  # None: no pytorch.compile.cache.lookups points for this cache
    metric_misses: float | None


@dataclass(frozen=True)
class ArtifactRow:
    process: str
    compile_id: str | None
    counts: tuple[tuple[str, int], ...]  # (event name, records), most first

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


@dataclass(frozen=True)
class RankCompile:
    """One rank's compile of one compile id: a cell of "Compiles across ranks", and (start_ns, end_ns, on the
    ranks' common wall clock) what a timeline lane per rank draws."""

    rank: int
    start_ns: int
    end_ns: int
    duration_us: float  # the forward compile and its backward compiles together
    backward_us: float  # of which backward (0 when none)
    cache_hits: int | None  # over every cache, forward and backward compile spans; None: no span carried counts
    cache_misses: int | None
    outcome: str  # compile | recompile | failed | limit (bar_kind's words)
    reasons: tuple[str, ...] = ()  # why it recompiled, in torch's order, when it did


@dataclass(frozen=True)
class RankCompileRow:
    """One compile id across the ranks of a multi-rank run (compile ids are per process, and ranks that trace the
    same code in the same order give the same ids to the same compiles)."""

    compile_id: str
    function: str
    compiles: tuple[RankCompile, ...]  # one per rank that compiled it, by rank
    missing: tuple[int, ...]  # the run's ranks that did not compile it (a shape or guard divergence)
    slowest: int | None  # the rank that took longest, when two or more compiled it and it took meaningfully longer
    over_median_us: float  # how much longer than the median of the ranks that compiled it
    running: tuple[UnfinishedCompile, ...] = ()  # ranks still compiling it when their files end, by rank

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(c.rank for c in self.compiles)

    @property
    def running_ranks(self) -> tuple[int, ...]:
        return tuple(u.rank for u in self.running if u.rank is not None)

    @property
    def reasons(self) -> tuple[str, ...]:
        """The recompile reasons the ranks gave for it, each once, in rank order."""
        return tuple(dict.fromkeys(reason for c in self.compiles for reason in c.reasons))


@dataclass(frozen=True)
class Bar:
    """One span on the HTML timeline."""

    span: Span
    kind: str  # app | compile | recompile | failed | backward | phase
    depth: int


@dataclass(frozen=True)
class Lane:
    """One trace that holds a compile, with every span of it that the input has."""

    trace_id: str
    process: str
    start_ns: int
    end_ns: int
    bars: tuple[Bar, ...]

    @property
    def title(self) -> str:
        roots = [bar.span.name for bar in self.bars if bar.depth == 0]
        return roots[0] if roots else "(empty)"


@dataclass(frozen=True)
class Report:
    files: tuple[str, ...] = ()
    lines: int = 0
    span_count: int = 0
    log_count: int = 0
    point_count: int = 0
    compile_spans: int = 0
    backward_spans: int = 0
    processes: tuple[str, ...] = ()
    functions: tuple[FunctionRow, ...] = ()
    recompiles: tuple[RecompileRow, ...] = ()
    limits: tuple[LimitRow, ...] = ()
    graph_breaks: tuple[GraphBreakRow, ...] = ()
    caches: tuple[CacheRow, ...] = ()
    artifacts: tuple[ArtifactRow, ...] = ()
    lanes: tuple[Lane, ...] = ()
    lanes_omitted: int = 0
    traces_without_compiles: int = 0
    ranks: tuple[int, ...] = ()  # the ranks of a multi-rank run (resource pytorch.distributed.rank); () for one
    rank_compiles: tuple[RankCompileRow, ...] = ()  # every compile id of a multi-rank run, rank by rank
    unfinished: tuple[UnfinishedCompile, ...] = ()  # compiles still running when the input ends

    @property
    def rank_divergences(self) -> tuple[RankCompileRow, ...]:
        """The compiles that happened on some ranks but not on others."""
        return tuple(row for row in self.rank_compiles if row.missing)


def compile_id_sort_key(compile_id: str | None) -> tuple:
    """torch's compile ids in their natural order: 0/1 < 0/10 < 1/0; compiled-autograd ids (``!0/0/1``) last."""
    text = compile_id or ""
    return (text.startswith("!"), tuple(int(part[:18]) for part in re.findall(r"[0-9]+", text)), text)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _int_value(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", text := value.strip()):
        return int(text)  # int() itself rejects some of what str.strip() removes, such as "\x1f"
    return None


def _seconds(value: Any) -> float:
    """A number of seconds from an attribute; 0 for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    try:
        number = float(value) if isinstance(value, str) and len(value) < 40 else 0.0
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def _reasons(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (tuple, list)):
        return tuple(str(item) for item in value if item is not None)
    return (str(value),)


def reason_summary(reason: str) -> str:
    """The line of a (graph break) reason worth showing: its first line, unless that is torch's generic preamble
    ("Encountered graph break when attempting to trace ...:"), then the one that names the break."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    if not lines:
        return ""
    if len(lines) > 1 and lines[0].startswith("Encountered graph break when attempting to trace"):
        return lines[1]
    return lines[0]


def _is_torch_span(span: Span) -> bool:
    return span.name in (catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE) or catalog.ATTR_PHASE in span.attributes


def _is_recompile(span: Span) -> bool:
    return catalog.ATTR_RECOMPILE_REASON in span.attributes or any(
        event.name == catalog.EVENT_RECOMPILE for event in span.events
    )


def limit_action(span: Span) -> str | None:
    """What torch did when this compile attempt hit a recompile limit (one of catalog.LIMIT_ACTIONS, "" when the
    input does not say), from its ``pytorch.recompile_limit`` event; None when it hit no limit."""
    for event in span.events:
        if event.name == catalog.EVENT_RECOMPILE_LIMIT:
            action = _text(event.attributes.get(catalog.ATTR_LIMIT_ACTION))
            return action if action in catalog.LIMIT_ACTIONS else ""
    return None


def bar_kind(span: Span) -> str:
    """app | compile | recompile | failed | limit (an attempt that hit a recompile limit) | backward | phase."""
    if span.name == catalog.SPAN_COMPILE:
        if limit_action(span) is not None:
            return "limit"
        if span.status_code == 2:
            return "failed"
        return "recompile" if _is_recompile(span) else "compile"
    if span.name == catalog.SPAN_BACKWARD_COMPILE:
        return "failed" if span.status_code == 2 else "backward"
    return "phase" if catalog.ATTR_PHASE in span.attributes else "app"


def _trim_app_span(span: Span) -> Span:
    """Application spans keep a bounded share of their attributes and only torch's events."""
    attributes = {}
    for key, value in list(span.attributes.items())[:APP_SPAN_MAX_ATTRIBUTES]:
        if isinstance(value, str) and len(value) > APP_SPAN_MAX_VALUE_CHARS:
            value = value[:APP_SPAN_MAX_VALUE_CHARS] + "…"
        elif not isinstance(value, (str, int, float, bool)) and value is not None:
            value = _text(value)[:APP_SPAN_MAX_VALUE_CHARS]  # type: ignore[index]  # _text of a non-None value is a str
        attributes[key] = value
    events = tuple(event for event in span.events if event.name.startswith("pytorch."))
    return dataclasses.replace(span, attributes=attributes, events=events)


def _hashable(attributes: Mapping[str, Any]) -> str:
    return json.dumps(sorted((str(k), repr(v)) for k, v in attributes.items()))


class ReportBuilder:
    """Aggregates parsed batches into a Report. Spans are kept (the timeline and the parent lookups need them);
    log records and metric points are folded into counters as they come."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.lines = 0
        self._spans: dict[tuple[str, str], Span] = {}
        self._anonymous_spans = 0
        self._span_count = 0
        self._log_count = 0
        self._point_count = 0
        self._processes: set[Process] = set()
        self._artifacts: dict[tuple[Process, str | None], Counter[str]] = defaultdict(Counter)
        self._recompile_logs: dict[tuple[Process, str], LogRecord] = {}
        self._graph_break_logs: Counter[tuple] = Counter()
        self._limit_logs: list[LogRecord] = []
        self._cache_latest: dict[tuple, tuple[int, float]] = {}  # cumulative streams: (time, value) of the latest
        self._cache_delta: defaultdict[tuple[str, str], float] = defaultdict(float)
        self._starts: dict[tuple[Process, int], LogRecord] = {}  # (process, start time): pytorch.compile.start
        self._slow_logs: dict[tuple[Process, str], list[Mapping[str, Any]]] = defaultdict(list)
        self._last_ns: dict[Process, int] = defaultdict(int)  # the latest time each process's records carry
        self._has_spans: set[Process] = set()

    # -- input ------------------------------------------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        for span in batch.spans:
            self._add_span(span)
        for record in batch.logs:
            self._add_log(record)
        for point in batch.points:
            self._add_point(point)

    def _add_span(self, span: Span) -> None:
        self._span_count += 1
        self._processes.add(span.process)
        self._has_spans.add(span.process)
        self._last_ns[span.process] = max(self._last_ns[span.process], span.end_ns, span.start_ns)
        if not _is_torch_span(span):
            span = _trim_app_span(span)
        key = (span.trace_id, span.span_id)
        if not span.span_id or key in self._spans and self._spans[key] != span:
            self._anonymous_spans += 1
            key = (span.trace_id, f"#{self._anonymous_spans}")  # no id, or an id reused for another span
        self._spans[key] = span

    def _add_log(self, record: LogRecord) -> None:
        self._log_count += 1
        self._processes.add(record.process)
        self._last_ns[record.process] = max(self._last_ns[record.process], record.time_ns)
        attributes = record.attributes
        event_name = record.event_name
        if not event_name and isinstance(attributes.get(catalog.ATTR_ARTIFACT), str):
            event_name = catalog.artifact_event_name(attributes[catalog.ATTR_ARTIFACT])  # a reader without eventName
        compile_id = _text(attributes.get(catalog.ATTR_COMPILE_ID))
        if event_name.startswith(catalog.ARTIFACT_EVENT_PREFIX):
            self._artifacts[(record.process, compile_id)][event_name] += 1
        elif event_name == catalog.EVENT_RECOMPILE and compile_id is not None:
            self._recompile_logs.setdefault((record.process, compile_id), record)
        elif event_name == catalog.EVENT_GRAPH_BREAK:
            key = (record.process, compile_id or "", *self._graph_break_fields(attributes))
            self._graph_break_logs[key] += 1
        elif event_name == catalog.EVENT_RECOMPILE_LIMIT:
            self._limit_logs.append(record)
        elif event_name == catalog.EVENT_COMPILE_START:
            self._starts.setdefault((record.process, record.time_ns), record)
        elif (
            event_name == catalog.EVENT_COMPILE_SLOW and len(self._slow_logs[(record.process, compile_id or "?")]) < 64
        ):
            self._slow_logs[(record.process, compile_id or "?")].append(attributes)

    def _add_point(self, point: MetricPoint) -> None:
        self._point_count += 1
        self._processes.add(point.process)
        self._last_ns[point.process] = max(self._last_ns[point.process], point.time_ns)
        if point.name != catalog.METRIC_CACHE_LOOKUPS:
            return
        cache = _text(point.attributes.get(catalog.LABEL_CACHE)) or "?"
        result = _text(point.attributes.get(catalog.LABEL_CACHE_RESULT)) or "?"
        value = point.value if math.isfinite(point.value) else 0.0
        if point.temporality == 1:  # delta: every point counts
            self._cache_delta[(cache, result)] += value
            return
        # cumulative (and unspecified): each export repeats the running total, so only a stream's latest counts
        stream = (point.process, point.scope, cache, result, _hashable(point.attributes))
        if stream not in self._cache_latest or point.time_ns >= self._cache_latest[stream][0]:
            self._cache_latest[stream] = (point.time_ns, value)

    @staticmethod
    def _graph_break_fields(attributes: Mapping[str, Any]) -> tuple[str, str, int | None]:
        return (
            _text(attributes.get(catalog.ATTR_GRAPH_BREAK_REASON)) or "",
            _text(attributes.get(catalog.ATTR_CODE_FILE)) or "",
            _int_value(attributes.get(catalog.ATTR_CODE_LINE)),
        )

    # -- output -----------------------------------------------------------------------------------------------
    def build(self) -> Report:
        labels = _process_labels(self._processes)
        spans = list(self._spans.values())
        compiles = [s for s in spans if s.name == catalog.SPAN_COMPILE]
        backwards = [s for s in spans if s.name == catalog.SPAN_BACKWARD_COMPILE]
        compiles.sort(key=lambda s: (s.start_ns, compile_id_sort_key(_text(s.attributes.get(catalog.ATTR_COMPILE_ID)))))
        by_compile_id: dict[tuple[Process, str], Span] = {}
        for span in compiles:
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID))
            if compile_id is not None:
                by_compile_id.setdefault((span.process, compile_id), span)
        by_span_id = {(s.trace_id, s.span_id): s for s in compiles}
        slow = self._slow(compiles, labels)
        unfinished = self._unfinished(spans, labels)
        functions = self._functions(compiles, backwards, by_compile_id, by_span_id, labels, slow)
        recompiles = self._recompiles(compiles, spans, labels)
        graph_breaks = self._graph_breaks(spans, by_compile_id, labels)
        limits = self._limits(spans, by_compile_id, labels)
        lanes, omitted, without = self._lanes(spans, labels)
        artifacts = tuple(
            ArtifactRow(labels[process], compile_id, tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))
            for (process, compile_id), counts in sorted(
                self._artifacts.items(),
                key=lambda kv: (labels[kv[0][0]], kv[0][1] is None, compile_id_sort_key(kv[0][1])),
            )
        )
        return Report(
            files=tuple(self.files),
            lines=self.lines,
            span_count=self._span_count,
            log_count=self._log_count,
            point_count=self._point_count,
            compile_spans=len(compiles),
            backward_spans=len(backwards),
            processes=tuple(sorted(label for label in labels.values() if label)),
            functions=functions,
            recompiles=recompiles,
            limits=limits,
            graph_breaks=graph_breaks,
            caches=self._caches(compiles + backwards),
            artifacts=artifacts,
            lanes=lanes,
            lanes_omitted=omitted,
            traces_without_compiles=without,
            unfinished=unfinished,
            **self._ranks(compiles, backwards, recompiles, labels, unfinished),
        )

    def _slow(self, compiles: list[Span], labels: dict) -> dict[tuple[Process, str], SlowCompile]:
        """The slow warnings of the finished compiles: the log records, or the compile span's events when the input
        has no log record for it."""
        found: dict[tuple[Process, str], SlowCompile] = {}
        for span in compiles:
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID)) or "?"
            key = (span.process, compile_id)
            warnings = self._slow_logs.get(key) or [
                e.attributes for e in span.events if e.name == catalog.EVENT_COMPILE_SLOW
            ]
            if warnings and key not in found:
                longest = max(warnings, key=lambda a: _seconds(a.get(catalog.ATTR_PHASE_ELAPSED)))
                found[key] = SlowCompile(
                    labels[span.process],
                    compile_id,
                    len(warnings),
                    _text(longest.get(catalog.ATTR_PHASE)) or "?",
                    _seconds(longest.get(catalog.ATTR_PHASE_ELAPSED)),
                )
        return found

    def _unfinished(self, spans: list[Span], labels: dict) -> tuple[UnfinishedCompile, ...]:
        """The compiles with a start record and no compile span. A compile span matches the start record that has
        its start time (both carry the root phase's start), or failing that one of its process with the same compile
        id that started no earlier (a forward and its backward share a compile id, the backward starts later). A
        process with no span at all in the input (a file of logs only) tells nothing, so its compiles are not
        listed."""
        roots = (catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE, catalog.SPAN_COMPILED_AUTOGRAD)
        started: set[tuple[Process, int]] = set()
        by_id: dict[tuple[Process, str], list[int]] = defaultdict(list)
        for span in spans:
            if span.name in roots:
                started.add((span.process, span.start_ns))
                if (compile_id := _text(span.attributes.get(catalog.ATTR_COMPILE_ID))) is not None:
                    by_id[(span.process, compile_id)].append(span.start_ns)
        rows = []
        for (process, start_ns), record in self._starts.items():
            attributes = record.attributes
            compile_id = _text(attributes.get(catalog.ATTR_COMPILE_ID))
            if process not in self._has_spans or (process, start_ns) in started:
                continue
            if compile_id is not None and any(t >= start_ns - 1_000_000 for t in by_id.get((process, compile_id), ())):
                continue
            root = _text(attributes.get(catalog.ATTR_PHASE)) or "?"
            warnings = self._slow_logs.get((process, compile_id or "?"), [])
            last = max(warnings, key=lambda a: _seconds(a.get(catalog.ATTR_ELAPSED)), default=None)
            rank = _int_value(dict(process).get(catalog.RESOURCE_RANK))
            if rank is None:
                rank = _int_value(attributes.get(catalog.ATTR_RANK))
            rows.append(
                UnfinishedCompile(
                    labels[process],
                    rank,
                    compile_id or "?",
                    _text(attributes.get(catalog.ATTR_CODE_FUNCTION)) or "?",
                    _text(attributes.get(catalog.ATTR_CODE_FILE)) or "",
                    _int_value(attributes.get(catalog.ATTR_CODE_LINE)),
                    root,
                    (_text(last.get(catalog.ATTR_PHASE)) or root) if last is not None else root,
                    tuple(str(p) for p in _reasons(last.get(catalog.ATTR_OPEN_PHASES))) if last is not None else (),
                    _seconds(last.get(catalog.ATTR_ELAPSED))
                    if last is not None
                    else max(0, self._last_ns[process] - start_ns) / 1e9,
                    last is not None,
                    len(warnings),
                    start_ns,
                    record.trace_id,
                    process,
                )
            )
        rows.sort(key=lambda u: (u.process, compile_id_sort_key(u.compile_id), u.start_ns))
        return tuple(rows)

    def _ranks(
        self,
        compiles: list[Span],
        backwards: list[Span],
        recompiles: tuple[RecompileRow, ...],
        labels: dict,
        unfinished: tuple[UnfinishedCompile, ...] = (),
    ) -> dict[str, Any]:
        """ranks and rank_compiles: each compile id of a run of two or more ranks, per rank."""
        rank_of = {
            process: rank
            for process in self._processes
            if (rank := _int_value(dict(process).get(catalog.RESOURCE_RANK))) is not None
        }
        ranks = tuple(sorted(set(rank_of.values())))
        if len(ranks) < 2:
            return {}
        reasons = {(r.process, r.compile_id): r.reasons for r in recompiles}
        backward_of: dict[tuple[Process, str], list[Span]] = defaultdict(list)
        for span in backwards:
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID))
            if compile_id is not None:
                backward_of[(span.process, compile_id)].append(span)
        found: dict[str, dict[int, RankCompile]] = defaultdict(dict)
        functions: dict[str, str] = {}
        for span in compiles:  # by start time: a rank that compiled an id twice (two runs) keeps its first
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID))
            rank = rank_of.get(span.process)
            if compile_id is None or rank is None or rank in found[compile_id]:
                continue
            functions.setdefault(compile_id, self._function_of(span)[0])
            spans = [span, *backward_of.get((span.process, compile_id), ())]
            counts = {
                result: [
                    count
                    for s in spans
                    for cache in catalog.CACHES
                    if (count := _int_value(s.attributes.get(cache_count_attribute(cache, result)))) is not None
                ]
                for result in CACHE_RESULTS
            }
            backward_us = sum(self._duration_us(s) for s in spans[1:])
            found[compile_id][rank] = RankCompile(
                rank,
                span.start_ns,
                max(s.end_ns for s in spans),
                self._duration_us(span) + backward_us,
                backward_us,
                sum(counts["hit"]) if counts["hit"] else None,
                sum(counts["miss"]) if counts["miss"] else None,
                bar_kind(span) if bar_kind(span) == "limit" or not any(s.status_code == 2 for s in spans) else "failed",
                reasons.get((labels[span.process], compile_id), ()) if _is_recompile(span) else (),
            )
        running: dict[str, dict[int, UnfinishedCompile]] = defaultdict(dict)
        for compile in unfinished:
            if compile.rank is not None and compile.root == "dynamo":  # a forward compile, as the rows are
                running[compile.compile_id].setdefault(compile.rank, compile)
                functions.setdefault(compile.compile_id, compile.function)
        rows = []
        for compile_id in set(found) | set(running):
            by_rank = found.get(compile_id, {})
            done = tuple(by_rank[rank] for rank in sorted(by_rank))
            still = tuple(running[compile_id][rank] for rank in sorted(running[compile_id]) if rank not in by_rank)
            slowest, over = None, 0.0
            if len(done) >= 2:
                median = statistics.median(c.duration_us for c in done)
                top = max(done, key=lambda c: (c.duration_us, -c.rank))
                if top.duration_us - median >= max(SLOWEST_MIN_US, SLOWEST_MIN_FRACTION * median):
                    slowest, over = top.rank, top.duration_us - median
            busy = {c.rank for c in still}
            missing = tuple(rank for rank in ranks if rank not in by_rank and rank not in busy)
            rows.append(RankCompileRow(compile_id, functions[compile_id], done, missing, slowest, over, still))
        rows.sort(key=lambda row: compile_id_sort_key(row.compile_id))
        return {"ranks": ranks, "rank_compiles": tuple(rows)}

    @staticmethod
    def _function_of(span: Span) -> tuple[str, str, int | None]:
        attributes = span.attributes
        return (
            _text(attributes.get(catalog.ATTR_CODE_FUNCTION)) or "?",
            _text(attributes.get(catalog.ATTR_CODE_FILE)) or "",
            _int_value(attributes.get(catalog.ATTR_CODE_LINE)),
        )

    @staticmethod
    def _duration_us(span: Span) -> float:
        value = span.attributes.get(ATTR_DURATION_US)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            return float(value)
        return max(0, span.end_ns - span.start_ns) / 1000.0

    def _functions(
        self,
        compiles: list[Span],
        backwards: list[Span],
        by_compile_id: dict,
        by_span_id: dict,
        labels: dict,
        slow: dict[tuple[Process, str], SlowCompile],
    ) -> tuple[FunctionRow, ...]:
        stats: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        compile_ids: dict[tuple, set[tuple[str, str]]] = defaultdict(set)
        slow_of: dict[tuple, list[SlowCompile]] = defaultdict(list)
        for span in compiles:
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID))
            row = stats[self._function_of(span)]
            duration = self._duration_us(span)
            row["total_us"] += duration
            row["max_us"] = max(row["max_us"], duration)
            if limit_action(span) is not None:  # an attempt torch refused: no compile, no failure of the code
                row["limit_hits"] += 1
                continue
            if compile_id is not None:
                compile_ids[self._function_of(span)].add((labels[span.process], compile_id))
            if (span.process, compile_id or "?") in slow:
                slow_of[self._function_of(span)].append(slow[(span.process, compile_id or "?")])
            row["compiles"] += 1
            row["recompiles"] += _is_recompile(span)
            row["failures"] += span.status_code == 2
            row["restarts"] += _int_value(span.attributes.get(catalog.ATTR_RESTARTS)) or 0
        for span in backwards:
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID))
            forward = by_compile_id.get((span.process, compile_id)) or next(
                (by_span_id[link] for link in span.links if link in by_span_id), None
            )
            key = self._function_of(forward) if forward is not None else self._function_of(span)
            row = stats[key]
            row["backward_compiles"] += 1
            row["backward_total_us"] += self._duration_us(span)
            row["failures"] += span.status_code == 2
        rows = [
            FunctionRow(
                function,
                file,
                line,
                int(s["compiles"]),
                int(s["recompiles"]),
                int(s["failures"]),
                s["total_us"],
                s["max_us"],
                int(s["backward_compiles"]),
                s["backward_total_us"],
                tuple(
                    with_process(process, compile_id)
                    for process, compile_id in sorted(
                        compile_ids[(function, file, line)], key=lambda pc: (pc[0], compile_id_sort_key(pc[1]))
                    )
                ),
                int(s["restarts"]),
                int(s["limit_hits"]),
                tuple(
                    sorted(
                        slow_of[(function, file, line)], key=lambda c: (c.process, compile_id_sort_key(c.compile_id))
                    )
                ),
            )
            for (function, file, line), s in stats.items()
        ]
        rows.sort(key=lambda r: (-(r.total_us + r.backward_total_us), r.function, r.file, r.line or 0))
        return tuple(rows)

    def _app_span_of(self, span: Span) -> tuple[bool, Span | None]:
        """(known, span) of the application span a compile span ran in: its nearest non-torch ancestor."""
        current = span
        for _ in range(64):
            if not current.parent_span_id:
                return True, None
            parent = self._spans.get((current.trace_id, current.parent_span_id))
            if parent is None:
                return False, None
            if not _is_torch_span(parent):
                return True, parent
            current = parent
        return False, None

    def _recompiles(self, compiles: list[Span], spans: list[Span], labels: dict) -> tuple[RecompileRow, ...]:
        found: dict[tuple[Process, str], dict[str, Any]] = {}

        def merge(key: tuple[Process, str], **values: Any) -> None:
            entry = found.setdefault(key, {})
            for name, value in values.items():
                if value not in (None, "", ()) and entry.get(name) in (None, "", ()):
                    entry[name] = value

        for span in compiles:  # the compile span: its attributes, its event, its parent
            if not _is_recompile(span):
                continue
            compile_id = _text(span.attributes.get(catalog.ATTR_COMPILE_ID)) or f"?{span.span_id}"
            event = next((e for e in span.events if e.name == catalog.EVENT_RECOMPILE), None)
            known, app = self._app_span_of(span)
            merge(
                (span.process, compile_id),
                reasons=_reasons(event.attributes.get(catalog.ATTR_RECOMPILE_REASONS)) if event else (),
                function=_text(span.attributes.get(catalog.ATTR_CODE_FUNCTION)),
                time=span.start_ns,
                trace=span.trace_id,
            )
            merge((span.process, compile_id), reasons=_reasons(span.attributes.get(catalog.ATTR_RECOMPILE_REASON)))
            if known:
                found[(span.process, compile_id)].setdefault("app", app.name if app is not None else None)
                if app is not None:
                    found[(span.process, compile_id)].setdefault("attributes", tuple(app.attributes.items()))
        for span in spans:  # the same event on the application span that paid for the recompile
            if span.name == catalog.SPAN_COMPILE:
                continue
            for event in span.events:
                if event.name != catalog.EVENT_RECOMPILE:
                    continue
                event_compile_id = _text(event.attributes.get(catalog.ATTR_COMPILE_ID))
                if event_compile_id is None:
                    continue
                compile_id = event_compile_id
                key = (span.process, compile_id)
                merge(
                    key,
                    reasons=_reasons(event.attributes.get(catalog.ATTR_RECOMPILE_REASONS)),
                    function=_text(event.attributes.get(catalog.ATTR_CODE_FUNCTION)),
                    time=event.time_ns,
                    trace=span.trace_id,
                )
                if not _is_torch_span(span):
                    found[key].setdefault("app", span.name)
                    found[key].setdefault("attributes", tuple(span.attributes.items()))
        for key, record in self._recompile_logs.items():  # the log record, for files that hold logs only
            merge(
                key,
                reasons=_reasons(record.attributes.get(catalog.ATTR_RECOMPILE_REASONS)),
                function=_text(record.attributes.get(catalog.ATTR_CODE_FUNCTION)),
                time=record.time_ns,
                trace=record.trace_id,
            )
        rows = [
            RecompileRow(
                labels[process],
                compile_id,
                entry.get("function") or "?",
                entry.get("reasons") or ("?",),
                entry.get("app", "?"),
                entry.get("trace") or "",
                entry.get("time") or 0,
                entry.get("attributes", ()),
            )
            for (process, compile_id), entry in found.items()
        ]
        rows.sort(key=lambda r: (r.process, compile_id_sort_key(r.compile_id), r.time_ns))
        return tuple(rows)

    def _graph_breaks(self, spans: list[Span], by_compile_id: dict, labels: dict) -> tuple[GraphBreakRow, ...]:
        from_spans: Counter[tuple] = Counter()
        function_of: dict[tuple, str] = {}
        for span in spans:
            for event in span.events:
                if event.name != catalog.EVENT_GRAPH_BREAK:
                    continue
                compile_id = (
                    _text(event.attributes.get(catalog.ATTR_COMPILE_ID))
                    or _text(span.attributes.get(catalog.ATTR_COMPILE_ID))
                    or ""
                )
                key = (span.process, compile_id, *self._graph_break_fields(event.attributes))
                from_spans[key] += 1
                if span.name == catalog.SPAN_COMPILE:
                    function_of[key] = self._function_of(span)[0]
        rows = []
        for key in set(from_spans) | set(self._graph_break_logs):
            process, compile_id, reason, file, line = key
            function = function_of.get(key)
            if function is None:
                compile_span = by_compile_id.get((process, compile_id))
                function = self._function_of(compile_span)[0] if compile_span is not None else "?"
            count = max(from_spans[key], self._graph_break_logs[key])  # the span event and its log record twin
            rows.append(GraphBreakRow(labels[process], compile_id, function, reason, file, line, count))
        rows.sort(key=lambda r: (r.process, compile_id_sort_key(r.compile_id), r.file, r.line or 0, r.reason))
        return tuple(rows)

    def _limits(self, spans: list[Span], by_compile_id: dict, labels: dict) -> tuple[LimitRow, ...]:
        seen: dict[tuple, LimitRow] = {}
        sources = [
            (s.process, e.attributes) for s in spans for e in s.events if e.name == catalog.EVENT_RECOMPILE_LIMIT
        ]
        sources += [(r.process, r.attributes) for r in self._limit_logs]
        for process, attributes in sources:
            compile_id = _text(attributes.get(catalog.ATTR_COMPILE_ID)) or ""
            function = _text(attributes.get(catalog.ATTR_CODE_FUNCTION))
            if function is None:
                compile_span = by_compile_id.get((process, compile_id))
                function = self._function_of(compile_span)[0] if compile_span is not None else "?"
            row = LimitRow(
                labels[process],
                compile_id,
                function,
                _text(attributes.get(catalog.ATTR_LIMIT_TYPE)) or "?",
                _text(attributes.get(catalog.ATTR_LIMIT)) or "?",
                action if (action := _text(attributes.get(catalog.ATTR_LIMIT_ACTION))) in catalog.LIMIT_ACTIONS else "",
            )
            seen.setdefault((process, compile_id, row.function, row.limit_type), row)
        return tuple(sorted(seen.values(), key=lambda r: (r.process, compile_id_sort_key(r.compile_id))))

    def _caches(self, compile_spans: list[Span]) -> tuple[CacheRow, ...]:
        from_spans: dict[tuple[str, str], int] = {}
        for span in compile_spans:
            for cache in catalog.CACHES:
                for result in CACHE_RESULTS:
                    count = _int_value(span.attributes.get(cache_count_attribute(cache, result)))
                    if count is not None:
                        from_spans[(cache, result)] = from_spans.get((cache, result), 0) + count
        from_metric: dict[tuple[str, str], float] = dict(self._cache_delta)
        for (_, _, cache, result, _), (_, value) in self._cache_latest.items():
            from_metric[(cache, result)] = from_metric.get((cache, result), 0.0) + value
        names = list(catalog.CACHES) + sorted({cache for cache, _ in from_metric} - set(catalog.CACHES))
        return tuple(
            CacheRow(
                cache,
                from_spans.get((cache, "hit")),
                from_spans.get((cache, "miss")),
                from_metric.get((cache, "hit")),
                from_metric.get((cache, "miss")),
            )
            for cache in names
        )

    def _lanes(self, spans: list[Span], labels: dict) -> tuple[tuple[Lane, ...], int, int]:
        traces: dict[str, list[Span]] = defaultdict(list)
        for span in spans:
            traces[span.trace_id].append(span)
        with_compiles = [
            trace_spans
            for trace_spans in traces.values()
            if any(s.name in (catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE) for s in trace_spans)
        ]
        with_compiles.sort(key=lambda trace_spans: min(s.start_ns for s in trace_spans))
        lanes: list[Lane] = []
        bars_used = 0
        for trace_spans in with_compiles:
            if len(lanes) >= MAX_LANES or bars_used + len(trace_spans) > MAX_BARS:
                break
            ids = {s.span_id: s for s in trace_spans if s.span_id}
            bars = []
            for span in trace_spans:
                depth, current = 0, span
                while current.parent_span_id in ids and depth < 64:
                    current = ids[current.parent_span_id]
                    depth += 1
                bars.append(Bar(span, bar_kind(span), depth))
            bars.sort(key=lambda bar: (bar.depth, bar.span.start_ns))
            bars_used += len(bars)
            first = trace_spans[0]
            lanes.append(
                Lane(
                    first.trace_id,
                    labels[first.process],
                    min(s.start_ns for s in trace_spans),
                    max(max(s.end_ns, s.start_ns) for s in trace_spans),
                    tuple(bars),
                )
            )
        return tuple(lanes), len(with_compiles) - len(lanes), len(traces) - len(with_compiles)


_UNKNOWN_SERVICE = "unknown_service:"  # the SDK's service.name when none is set: unknown_service:python
PROCESS_NAME_CAP = 12


def _process_labels(processes: Iterable[Process]) -> dict[Process, str]:
    """ "" for every process when the input holds one; otherwise short distinct labels, short enough that a compile
    id after them stays readable in every table: ``rank 1`` where the resource has pytorch.distributed.rank, else the
    service name (without the SDK's ``unknown_service:``) and the process id, or the shortest prefix of
    service.instance.id that tells the processes apart: ``python[4121]``, ``python[7d0b]``."""
    processes = sorted(set(processes))
    if len(processes) <= 1:
        return {process: "" for process in processes}
    attributes_of = {process: dict(process) for process in processes}
    instances = [
        re.sub(r"[^0-9a-zA-Z]", "", str(a.get("service.instance.id", "")))
        for a in attributes_of.values()
        if catalog.RESOURCE_RANK not in a and "process.pid" not in a
    ]
    prefix = 4
    while prefix < 32 and len({i[:prefix] for i in instances}) < len(set(instances)):
        prefix += 2
    labels: dict[Process, str] = {}
    used: Counter[str] = Counter()
    for process in processes:
        attributes = attributes_of[process]
        if catalog.RESOURCE_RANK in attributes:
            base = f"rank {attributes[catalog.RESOURCE_RANK]}"
        else:
            service = str(attributes.get("service.name") or "")
            service = service[len(_UNKNOWN_SERVICE) :] if service.startswith(_UNKNOWN_SERVICE) else service
            service = re.sub(r"\s+", "_", service.strip())[:PROCESS_NAME_CAP] or "process"
            instance = re.sub(r"[^0-9a-zA-Z]", "", str(attributes.get("service.instance.id", "")))[:prefix]
            if "process.pid" in attributes:
                base = f"{service}[{attributes['process.pid']}]"
            elif instance:
                base = f"{service}[{instance}]"
            else:
                base = service
        used[base] += 1
        labels[process] = base if used[base] == 1 else f"{base}#{used[base]}"
    return labels


def build_report(batches: Iterable[Batch]) -> Report:
    builder = ReportBuilder()
    for batch in batches:
        builder.add(batch)
    return builder.build()


def with_process(process: str, compile_id: str | None) -> str:
    """A compile id as the tables show it: prefixed with its process's label when the input holds several."""
    compile_id = compile_id if compile_id else "-"
    return f"{process} {compile_id}" if process else compile_id
