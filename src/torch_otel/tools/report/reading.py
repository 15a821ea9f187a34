"""Reading OTLP JSON Lines files (or stdin) through :func:`.parsing.parse_line` into a :class:`.model.ReportBuilder`,
in bounded memory and time: MAX_LINE_BYTES, MAX_FILE_BYTES, a progress line, and errors counted instead of raised.

torch-otel's embedded default (``torch_otel.exporters.file_export``) writes all three signals into one file, as
opentelemetry-exporter-otlp-json-file does; an OpenTelemetry Collector ``file`` exporter writes the same format,
sometimes one signal per file. gzip-compressed files are read as they are.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from torch_otel.tools.report.formatting import (
    clean,
    exact_size,
    human_size,
    plural,
    truncate_left,
)
from torch_otel.tools.report.model import Report, ReportBuilder
from torch_otel.tools.report.parsing import ReportParseError, parse_line

MAX_ERRORS_SHOWN = 5

# Limits on reading, so that a wrong or hostile input (a gzip bomb, /dev/zero, a binary file, an endless pipe) ends
# in a one-paragraph error instead of exhausting memory or time. Read at each call, so tests may monkeypatch them.
# Both count bytes of the input after gzip decompression ("inflated"), the newline not included in a line.
# The command's --max-line-bytes and --max-file-bytes override them.
MAX_LINE_BYTES = 64 * 1024 * 1024  # bytes in one line: 64 MiB. With its default settings torch-otel writes lines of
#   a few MiB (log requests are cut at TORCH_OTEL_MAX_BATCH_BYTES, 3 MiB by default) and a Collector's lines are
#   batches of the same order; memory use is about this much plus what json.loads makes of one line. A longer line
#   stops the reading of its file there.
MAX_FILE_BYTES = 4 * 1024 * 1024 * 1024  # bytes read from one file (or stdin): 4 GiB; reading that file stops there.
READ_CHUNK_BYTES = 1024 * 1024  # bytes asked of the (inflating) stream at a time: 1 MiB


class ReportInputError(Exception):
    """A file that cannot be read at all (missing, a directory, compressed in a way this reader does not know)."""


@dataclass(frozen=True)
class LineError:
    path: str
    line: int
    message: str


@dataclass
class ReadResult:
    report: Report
    errors: list[LineError]  # the first MAX_ERRORS_SHOWN
    error_count: int
    limit_errors: list[str] = field(default_factory=list)  # one paragraph per file that went past a read limit


class Progress:
    """ "reading ... 42%" on a terminal, by bytes read; silent unless enabled, and for the first half second."""

    def __init__(
        self, stream: IO[str] | None, total_bytes: int, enabled: bool, interval: float = 0.25, delay: float = 0.5
    ) -> None:
        self.stream = stream
        self.total = total_bytes
        self.enabled = enabled and stream is not None
        self.interval = interval
        self.delay = delay
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = 0

    def update(self, done_bytes: int, path: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < self.delay or now - self.last < self.interval:
            return
        self.last = now
        percent = f" {100 * done_bytes / self.total:3.0f}%" if self.total else ""
        text = f"torch-otel report: reading {truncate_left(clean(os.path.basename(path)), 40)}{percent} ({human_size(done_bytes)}"
        text += f" of {human_size(self.total)})" if self.total else ")"
        self.stream.write("\r" + text.ljust(self.shown))  # type: ignore[union-attr]  # shown only with a stream
        self.stream.flush()  # type: ignore[union-attr]  # shown only with a stream
        self.shown = len(text)

    def close(self) -> None:
        if self.shown and self.stream is not None:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
            self.shown = 0


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def check_input(path: str) -> None:
    """Raise ReportInputError with a one-line reason if ``path`` cannot be read as an input file."""
    if path == "-":
        return
    if not os.path.exists(path):
        raise ReportInputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ReportInputError(f"{path}: is a directory")
    if not os.path.isfile(path):  # a pipe (<(zcat ...)), /dev/stdin, a device: reading here would consume input
        if not os.access(path, os.R_OK):
            raise ReportInputError(f"{path}: cannot read: permission denied")
        return
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as error:
        raise ReportInputError(f"{path}: cannot read: {error.strerror or error}") from None
    if magic == _ZSTD_MAGIC:
        raise ReportInputError(f"{path}: zstd-compressed; decompress it first (zstd -d {path})")


class _LimitHit(Exception):
    """Reading one file went past MAX_LINE_BYTES (``which == "line"``) or MAX_FILE_BYTES (``"file"``) in ``line``."""

    def __init__(self, which: str, line: int, limit: int, compressed: bool) -> None:
        super().__init__(which)
        self.which, self.line, self.limit, self.compressed = which, line, limit, compressed

    def message(self, path: str) -> str:
        """One paragraph (one line) for stderr."""
        before = f"the {plural(self.line - 1, 'line')} before it are reported"
        inflated = ", counted after gzip decompression" if self.compressed else ""
        if self.which == "line":
            return (
                f"{clean(path)}: line {self.line} is longer than {exact_size(self.limit)}, the limit on one line "
                f"(--max-line-bytes{inflated}); reading of this file stopped there and {before}. With its default "
                f"settings torch-otel writes lines of a few MiB, so this is likely not an OTLP JSON Lines file, or "
                f"a damaged one; if its lines are really that long, pass a larger --max-line-bytes"
            )
        return (
            f"{clean(path)}: the file is longer than {exact_size(self.limit)}, the limit on one file "
            f"(--max-file-bytes{inflated}); reading of this file stopped in line {self.line} and {before}. To "
            f"read all of it, pass a larger --max-file-bytes"
        )


_BLANK = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.strip() removes


def _skip_blank(data: bytes, pos: int, end: int) -> int:
    """The index of the first byte of ``data[pos:end]`` that is not ASCII whitespace, else ``end``. Cheap on a long
    run of blank lines: it strips growing windows in C instead of looking at each byte in Python."""
    if pos < end and data[pos] not in _BLANK:
        return pos
    window = 64
    while pos < end:
        piece = data[pos : min(pos + window, end)]
        rest = piece.lstrip()
        if rest:
            return pos + len(piece) - len(rest)
        pos += len(piece)
        window = min(window * 8, READ_CHUNK_BYTES)
    return end


def _iter_lines(
    path: str, stdin: BinaryIO | None, max_line: int | None = None, max_file: int | None = None
) -> Iterator[tuple[int, bytes | None, int]]:
    """``(line number, line, bytes of the file read so far)`` for each line that is not blank, newline removed, and
    ``(lines so far, None, bytes read so far)`` after each chunk read and at the end, so that progress moves on
    through long runs of blank lines and through long lines; the last number is the file's count of lines.

    Reads READ_CHUNK_BYTES at a time (inflated, for a gzip file) and holds at most one chunk and one line, so memory
    stays bounded: raises :class:`_LimitHit` when a line grows past ``max_line`` or the file past ``max_file`` bytes
    (the lines before it have been yielded). Blank lines cost C-speed scanning only, not a Python step each."""
    max_line = MAX_LINE_BYTES if max_line is None else max_line
    max_file = MAX_FILE_BYTES if max_file is None else max_file
    with contextlib.ExitStack() as stack:
        compressed = seekable = False
        if path == "-":
            stream: Any = stdin if stdin is not None else sys.stdin.buffer
            raw_file = stream
        else:
            raw_file = stack.enter_context(open(path, "rb"))
            compressed = raw_file.peek(2)[:2] == _GZIP_MAGIC  # peek, not seek: a pipe or /dev/fd/N cannot seek
            seekable = compressed and raw_file.seekable()
            stream = stack.enter_context(gzip.GzipFile(fileobj=raw_file)) if compressed else raw_file
        read = getattr(stream, "read1", stream.read)  # read1: what is ready, so a gzip cut short loses little
        lines = total = position = 0
        pending: list[bytes] = []  # the line being read, when a chunk ended inside it
        pending_len = 0
        while True:
            room = max_file - total
            data = read(min(READ_CHUNK_BYTES, room) if room > 0 else 1)
            if not data:
                break
            if room <= 0:
                raise _LimitHit("file", lines + 1, max_file, compressed)
            total += len(data)
            position = raw_file.tell() if seekable else total
            pos, end = 0, len(data)
            while pos < end:
                if pending:
                    newline = data.find(b"\n", pos)
                    stop = end if newline < 0 else newline
                    pending_len += stop - pos
                    if pending_len > max_line:
                        raise _LimitHit("line", lines + 1, max_line, compressed)
                    pending.append(data[pos:stop])
                    if newline < 0:
                        break
                    line = b"".join(pending)
                    pending, pending_len = [], 0
                    lines += 1
                    if _skip_blank(line, 0, len(line)) < len(line):
                        yield lines, line, position
                    pos = newline + 1
                    continue
                start = _skip_blank(data, pos, end)  # the first byte of the next line that is not blank
                last = data.rfind(b"\n", pos, start)
                line_start = last + 1 if last >= 0 else pos
                lines += data.count(b"\n", pos, line_start)
                newline = data.find(b"\n", start) if start < end else -1
                if newline < 0:  # the chunk ends inside this line (or with a newline: nothing is pending)
                    if line_start < end:
                        pending, pending_len = [data[line_start:]], end - line_start
                        if pending_len > max_line:
                            raise _LimitHit("line", lines + 1, max_line, compressed)
                    break
                if newline - line_start > max_line:
                    raise _LimitHit("line", lines + 1, max_line, compressed)
                lines += 1
                yield lines, data[line_start:newline], position
                pos = newline + 1
            yield lines, None, position
        if pending:  # the last line, without a newline
            line = b"".join(pending)
            lines += 1
            if _skip_blank(line, 0, len(line)) < len(line):
                yield lines, line, position
        yield lines, None, position


def read_files(
    paths: Sequence[str],
    progress: Progress | None = None,
    stdin: BinaryIO | None = None,
    max_line_bytes: int | None = None,
    max_file_bytes: int | None = None,
) -> ReadResult:
    """Stream ``paths`` through parse_line and a ReportBuilder. Lines that do not parse are counted (the first
    MAX_ERRORS_SHOWN kept) and skipped; the rest is reported. A file past ``max_line_bytes`` or ``max_file_bytes``
    (default MAX_LINE_BYTES, MAX_FILE_BYTES) is read
    up to the line that went past, that file's reading stops there (with a message in ``limit_errors``), and the
    other files are read."""
    builder = ReportBuilder()
    builder.files = list(paths)
    errors: list[LineError] = []
    limit_errors: list[str] = []
    error_count = 0
    done_before = 0
    for path in paths:
        number = position = 0
        try:
            for number, raw, position in _iter_lines(path, stdin, max_line_bytes, max_file_bytes):
                if raw is not None:
                    try:
                        try:
                            batch = parse_line(raw)
                        except MemoryError:  # a long line of tiny JSON values takes many times its size
                            raise ReportParseError(
                                f"too large to parse in the memory available ({human_size(len(raw))} line)"
                            ) from None
                        builder.add(batch)
                    except ReportParseError as error:
                        error_count += 1
                        if len(errors) < MAX_ERRORS_SHOWN:
                            errors.append(LineError(path, number, str(error)))
                if progress is not None:
                    progress.update(done_before + position, path)
        except _LimitHit as hit:
            number = hit.line - 1
            limit_errors.append(hit.message(path))
        except (OSError, EOFError) as error:  # e.g. a gzip file cut short: what was read is still reported
            error_count += 1
            if len(errors) < MAX_ERRORS_SHOWN:
                errors.append(LineError(path, number + 1, f"cannot read further: {error}"))
        builder.lines += number
        done_before += position
    if progress is not None:
        progress.close()
    return ReadResult(builder.build(), errors, error_count, limit_errors)
