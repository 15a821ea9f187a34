"""`torch-otel report FILE... [--html OUT] [--perfetto OUT.json]`: the command: arguments, then reading, the terminal
view on stdout, the HTML view and the Perfetto (Chrome Trace Event Format) file (each imported only when asked for),
and the errors on stderr. An output that cannot be written is one paragraph on stderr and exit code 2; the other
views are still written. An output that is an input file, or both outputs one file, is refused before anything is
read (exit 2). ``-`` as an output writes it to stdout in place of the terminal view."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import IO, Any, BinaryIO

from torch_otel.tools.report import reading
from torch_otel.tools.report.formatting import clean, exact_size, plural
from torch_otel.tools.report.reading import (
    Progress,
    ReportInputError,
    check_input,
    read_files,
)
from torch_otel.tools.report.text import DEFAULT_WIDTH, render_text

EXIT_OK = 0
EXIT_BAD_LINES = 1
EXIT_USAGE = 2


class _ParserExit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that writes to the given streams and returns instead of exiting."""

    def __init__(self, out: IO[str], err: IO[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._out, self._err = out, err

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            (self._err if file is sys.stderr or file is self._err else self._out).write(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            self._err.write(message)
        raise _ParserExit(status)

    def error(self, message: str) -> Any:
        self.print_usage(self._err)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


_SIZE = re.compile(r"\s*([0-9]{1,20})\s*(|b|kib|kb|k|mib|mb|m|gib|gb|g)\s*", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
}


def _size_argument(raw: str) -> int:
    match = _SIZE.fullmatch(raw)
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a size: a whole number of bytes, optionally with KiB, MiB or GiB (e.g. 256MiB)"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def build_parser(out: IO[str], err: IO[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        out,
        err,
        prog="torch-otel report",
        description="Summarise torch.compile telemetry (compiles, recompiles, graph breaks, caches, artifacts) from "
        "OTLP JSON Lines files written by torch-otel's file export or an OpenTelemetry Collector file exporter.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="OTLP JSON Lines file(s); gzip is fine; - for stdin")
    parser.add_argument(
        "--html",
        metavar="OUT",
        help="also write a self-contained HTML report with a timeline to OUT (- for stdout, instead of the terminal "
        "report); never an input file",
    )
    parser.add_argument(
        "--perfetto",
        metavar="OUT.json",
        help="also write the compile timeline, with the application spans around it, as a Chrome Trace Event Format "
        "file for ui.perfetto.dev or chrome://tracing (- for stdout, instead of the terminal report); never an input "
        "file, nor the --html file",
    )
    parser.add_argument("--no-progress", action="store_true", help="never show the progress line on stderr")
    parser.add_argument(
        "--progress", action="store_true", help="show the progress line even when stderr is not a terminal"
    )
    parser.add_argument(
        "--max-line-bytes",
        type=_size_argument,
        default=None,
        metavar="SIZE",
        help=f"longest line read, e.g. 256MiB (default: {exact_size(reading.MAX_LINE_BYTES).replace(' ', '')})",
    )
    parser.add_argument(
        "--max-file-bytes",
        type=_size_argument,
        default=None,
        metavar="SIZE",
        help=f"most bytes read of one file, after gzip decompression, e.g. 16GiB (default: "
        f"{exact_size(reading.MAX_FILE_BYTES).replace(' ', '')})",
    )
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help=(
            f"fit the tables to this many columns (default: COLUMNS, else the terminal's width, else {DEFAULT_WIDTH}). "
            "A table too wide gives way: names are cut at the end, trace ids shown by their first 8 hex digits, "
            "locations keep the file name and :LINE, some columns move onto a line under their row, reasons wrap "
            "(at most 12 lines a cell); 0 prints every cell whole on one line (for piping into grep or a file)"
        ),
    )
    return parser


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _default_width(out: IO[str]) -> int:
    """COLUMNS when it is a whole number over 0 (as shells and shutil.get_terminal_size read it), else the
    terminal's width when stdout is one, else DEFAULT_WIDTH."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and 0 < int(columns) < 100_000:
        return int(columns)
    if _isatty(out) and hasattr(out, "fileno"):
        try:
            return os.get_terminal_size(out.fileno()).columns
        except OSError:
            pass
    return DEFAULT_WIDTH


def main(
    argv: Sequence[str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    stdin: BinaryIO | None = None,
) -> int:
    """``torch-otel report``: 0 when every line parsed, 1 when some did not or a file went past --max-line-bytes or
    --max-file-bytes (the rest is still reported), 2 when a file cannot be read or the arguments are wrong."""
    # A closed stdout or stderr (`>&-`) is None in sys: what would go there goes nowhere, the rest still runs.
    out = out if out is not None else sys.stdout or open(os.devnull, "w")  # noqa: SIM115 - lives as long as main
    err = err if err is not None else sys.stderr or open(os.devnull, "w")  # noqa: SIM115 - lives as long as main
    try:
        args = build_parser(out, err).parse_args(sys.argv[1:] if argv is None else list(argv))
    except _ParserExit as stop:
        return stop.code
    try:
        for path in args.files:
            check_input(path)
        _check_outputs(args.files, args.html, args.perfetto)
    except ReportInputError as error:
        err.write(f"torch-otel report: {error}\n")
        return EXIT_USAGE
    total = sum(os.path.getsize(p) for p in args.files if p != "-")
    progress = Progress(err, total, enabled=not args.no_progress and (args.progress or _isatty(err)))
    result = read_files(args.files, progress, stdin, args.max_line_bytes, args.max_file_bytes)
    width = args.width if args.width is not None else _default_width(out)
    to_stdout = "-" in (args.html, args.perfetto)  # the page or the trace goes to stdout: no terminal report there
    try:
        if not to_stdout:
            out.write(render_text(result.report, width))
            out.flush()
    except BrokenPipeError:  # `torch-otel report big.jsonl | head`
        if out is sys.stdout:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the interpreter's final flush stays quiet
    code = EXIT_OK
    if args.html:
        try:
            from torch_otel.tools.report.html import render_html

            page = render_html(result.report)
        except ImportError as error:  # Jinja2 comes with torch; a bare install of torch-otel may lack it
            err.write(f"torch-otel report: --html needs Jinja2 ({error}); pip install jinja2\n")
            code = EXIT_USAGE
        else:
            code = max(code, _write(args.html, page, "the HTML report", err, out))
    if args.perfetto:
        from torch_otel.tools.report.perfetto import render_perfetto

        trace = render_perfetto(result.report)
        code = max(code, _write(args.perfetto, trace, "the Perfetto trace", err, out))
    for line_error in result.errors:
        err.write(f"torch-otel report: {line_error.path}:{line_error.line}: {clean(line_error.message)}\n")
    if result.error_count:
        shown = f"; the first {len(result.errors)} shown" if result.error_count > len(result.errors) else ""
        err.write(
            f"torch-otel report: {plural(result.error_count, 'malformed line')} skipped of {result.report.lines}"
            f"{shown}; the other lines are reported\n"
        )
    for message in result.limit_errors:
        err.write(f"torch-otel report: {message}\n")
    if code:
        return code
    return EXIT_BAD_LINES if result.error_count or result.limit_errors else EXIT_OK


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


def _check_outputs(inputs: Sequence[str], html: str | None, perfetto: str | None) -> None:
    """Refuses, before anything is read or written, an output that would overwrite an input file or the other
    output: raises ReportInputError naming the path. ``-`` (stdout) may be one output, not both."""
    outputs = [(option, path) for option, path in (("--html", html), ("--perfetto", perfetto)) if path]
    if html == "-" and perfetto == "-":
        raise ReportInputError(
            "--html - and --perfetto - both ask for stdout; give one of them a file name (e.g. --perfetto trace.json)."
        )
    for option, path in outputs:
        if path == "-":
            continue
        for source in inputs:
            if source != "-" and _same_file(path, source):
                raise ReportInputError(
                    f"{option} {path} is the input file {source}: writing it would destroy the data being read. "
                    "Nothing was read or written; give the output another name (e.g. report.html, trace.json)."
                )
    if html and perfetto and html != "-" and perfetto != "-" and _same_file(html, perfetto):
        raise ReportInputError(
            f"--html and --perfetto both name {html}: the second would overwrite the first. Nothing was read or "
            "written; give each its own file name (e.g. --html report.html --perfetto trace.json)."
        )


def _write(path: str, text: str, what: str, err: IO[str], out: IO[str] | None = None) -> int:
    """Writes one output file (``-``: to ``out``, stdout); a failure is one paragraph on stderr and EXIT_USAGE."""
    if path == "-" and out is not None:
        try:
            out.write(text)
            out.flush()
        except BrokenPipeError:
            pass
        return EXIT_OK
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as error:
        reason = error.strerror or str(error)
        if isinstance(error, IsADirectoryError) or os.path.isdir(path):
            reason = "it is a directory; give a file name"
        err.write(
            f"torch-otel report: cannot write {what} to {path}: {reason}. Nothing else is lost: the terminal report "
            f"was printed and any other output was written; run again with a path that can be written.\n"
        )
        return EXIT_USAGE
    err.write(f"torch-otel report: wrote {path}\n")
    return EXIT_OK
