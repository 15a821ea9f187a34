"""`torch-otel report FILE... [--html OUT]`: what torch.compile did, read back from OTLP JSON Lines files.

The modules, in the order the data flows through them:

* :mod:`.reading`: :func:`read_files` streams files (or stdin, gzip or not) line by line, in bounded memory and time
  (MAX_LINE_BYTES, MAX_FILE_BYTES), with a progress line, through the next two, counting the lines that do not parse.
* :mod:`.parsing`: :func:`parse_line` turns one line of OTLP JSON into a :class:`Batch` of spans, log records and
  metric points; pure, and raises nothing but :class:`ReportParseError`.
* :mod:`.model`: :class:`ReportBuilder` aggregates batches, one at a time, into a :class:`Report` (compiles,
  recompiles, graph breaks, caches, artifacts, the timeline's lanes); pure.
* :mod:`.tables`: the tables both views show, computed once from a Report.
* :mod:`.text`: :func:`render_text`, the terminal view; :mod:`.html`: ``render_html``, the page, from the Jinja2
  templates in ``templates/`` (imported only for --html).
* :mod:`.command`: :func:`main`, the command that runs them. :mod:`.formatting` (how single values are written)
  serves them all.

Imports go one way (formatting <- parsing <- model <- reading, tables <- text, html <- command), so there is no
import cycle, and each layer can be tested (and fuzzed) on its own.
"""

from __future__ import annotations

from torch_otel.tools.report.command import (
    EXIT_BAD_LINES,
    EXIT_OK,
    EXIT_USAGE,
    build_parser,
    main,
)
from torch_otel.tools.report.formatting import (
    clean,
    format_count,
    format_us,
    location,
    truncate,
    truncate_left,
)
from torch_otel.tools.report.model import (
    ATTR_DURATION_US,
    CACHE_RESULTS,
    ArtifactRow,
    Bar,
    CacheRow,
    FunctionRow,
    GraphBreakRow,
    Lane,
    LimitRow,
    RecompileRow,
    Report,
    ReportBuilder,
    SlowCompile,
    UnfinishedCompile,
    bar_kind,
    build_report,
    cache_count_attribute,
    compile_id_sort_key,
    limit_action,
    reason_summary,
    with_process,
)
from torch_otel.tools.report.parsing import (
    PROCESS_KEYS,
    Batch,
    LogRecord,
    MetricPoint,
    ReportParseError,
    Span,
    SpanEvent,
    parse_line,
)
from torch_otel.tools.report.reading import (
    LineError,
    Progress,
    ReadResult,
    ReportInputError,
    check_input,
    read_files,
)
from torch_otel.tools.report.tables import Table, report_tables
from torch_otel.tools.report.text import DEFAULT_WIDTH, render_text

__all__ = [
    "ATTR_DURATION_US",
    "CACHE_RESULTS",
    "DEFAULT_WIDTH",
    "EXIT_BAD_LINES",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROCESS_KEYS",
    "ArtifactRow",
    "Bar",
    "Batch",
    "CacheRow",
    "FunctionRow",
    "GraphBreakRow",
    "Lane",
    "LimitRow",
    "LineError",
    "LogRecord",
    "MetricPoint",
    "Progress",
    "ReadResult",
    "RecompileRow",
    "Report",
    "ReportBuilder",
    "ReportInputError",
    "ReportParseError",
    "SlowCompile",
    "Span",
    "SpanEvent",
    "Table",
    "UnfinishedCompile",
    "bar_kind",
    "build_parser",
    "build_report",
    "cache_count_attribute",
    "check_input",
    "clean",
    "compile_id_sort_key",
    "format_count",
    "format_us",
    "limit_action",
    "location",
    "main",
    "parse_line",
    "read_files",
    "reason_summary",
    "render_text",
    "report_tables",
    "truncate",
    "truncate_left",
    "with_process",
]
