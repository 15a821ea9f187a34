"""How single values are written, in the terminal and on the page alike: text from the input made safe for one
terminal cell, cut to a width, durations, counts, source locations, sizes. Depends on nothing else in the package.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean(text: Any) -> str:
    """Text from the input made safe for one terminal cell: no control characters (so no escape sequences), no
    line breaks, no lone surrogates."""
    text = str(text)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(" ", text).strip()


def truncate(text: str, width: int) -> str:
    if width <= 0 or len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…"


def truncate_left(text: str, width: int) -> str:
    if width <= 0 or len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1 :]


def format_us(us: float) -> str:
    if us >= 10_000_000:
        return f"{us / 1e6:.1f} s"
    if us >= 1_000_000:
        return f"{us / 1e6:.2f} s"
    return f"{us / 1000:.1f} ms"


def format_count(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def location(file: str, line: int | None, width: int = 60) -> str:
    """``file:line`` in at most ``width`` characters (0: never cut). What gives way is the middle of the path: the
    ``:line`` and the file name always stay, then as many of the last directories and of the first as fit
    (``/srv/…/handlers/model_step.py:12``); only a file name longer than ``width`` alone is cut, from its left."""
    if not file:
        return "?"
    file = clean(file)
    suffix = f":{line}" if line is not None else ""
    if width <= 0 or len(file) + len(suffix) <= width:
        return file + suffix
    # the same cut for every line of a file, whatever its number (when there is room for it)
    room = max(width - (max(len(suffix), 6) if width >= 30 else len(suffix)), 2)
    head, sep, base = file.rpartition("/")
    if not sep or len(base) + 2 > room:
        return truncate_left(base or file, room) + suffix
    room -= len(base) + 2  # "…/"
    directories = head.split("/")  # "/srv/a/b" -> ["", "srv", "a", "b"]
    tail: list[str] = []  # the last directories first (they tell files apart), whole ones
    while len(directories) > 1 and len("/".join([directories[-1], *tail])) + 1 <= room - min(room // 3, 12):
        tail.insert(0, directories.pop())
    start = ""  # the first directories, whole, with the rest of the room
    for i in range(1, len(directories) + 1):
        candidate = "/".join(directories[:i]) + "/"
        if len(candidate) + len("/".join(tail)) + bool(tail) > room:
            break
        start = candidate
    if not start and not tail:
        return truncate_left(file, width - len(suffix)) + suffix
    return f"{start}…/{'/'.join([*tail, base])}{suffix}"


_RESUME = re.compile(r"torch_dynamo_resume_in_(.+)_at_([0-9]+)")


def function_label(name: str) -> str:
    """A function name as a person reads it: torch's continuation after a graph break,
    ``torch_dynamo_resume_in_f_at_20``, becomes ``f (resumed after line 20)`` (nested ones too)."""
    match = _RESUME.fullmatch(name)
    if match is None:
        return name
    return f"{function_label(match.group(1))} (resumed after line {match.group(2)})"


_POINTER = re.compile(r"\s+#\s*(?P<code>.*?)\s+#\s*(?P<file>\S+?):(?P<line>[0-9]+)(?P<rest>(?:\s+in\s+\S+)?)\s*$")
_STACK = re.compile(r"\n\s*User stack trace:.*", re.DOTALL)


def compact_reason(reason: str, path_width: int = 48) -> str:
    """A recompile reason (a failed guard) on one line, nothing of it lost that says why: torch's alignment padding
    squeezed out, the user stack trace it appends dropped (its frame is the ``# file:line`` pointer, kept, its path
    shortened in the middle to ``path_width``; 0: whole)."""
    text = _STACK.sub("", str(reason))
    lines = [line for line in text.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    rest = " ".join(line.strip() for line in lines[1:])
    match = _POINTER.search(text)
    if match is not None:
        guard = " ".join(text[: match.start()].split())
        code = " ".join(match.group("code").split())
        where = location(match.group("file"), int(match.group("line")), path_width) + " ".join(
            match.group("rest").split(" ")
        )
        text = f"{guard}  # {code}  # {where.strip()}" if code else f"{guard}  # {where.strip()}"
    else:
        text = " ".join(text.split())
    return clean(f"{text} {rest}" if rest else text)


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken between words (0: one line). A word longer than a
    line is split, after a ``/``, ``.`` or ``,`` where it has one, never inside a number when it can be helped."""
    if width <= 0 or len(text) <= width:
        return [text]
    out: list[str] = []
    line = ""
    for word in text.split(" "):
        while len(word) > width:
            cut = max(word.rfind(mark, 0, width) for mark in "/.,_")
            cut = cut + 1 if cut > 0 else width
            if line:
                out.append(line)
                line = ""
            out.append(word[:cut])
            word = word[cut:]
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= width:
            line += " " + word
        else:
            out.append(line)
            line = word
    if line or not out:
        out.append(line)
    return out


def format_seconds(us: float) -> str:
    """A duration in seconds, for differences that may be small: "0.012 s", "1.25 s", "12.5 s"."""
    seconds = us / 1e6
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds:.3f} s"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def exact_size(n: int) -> str:
    """A byte count as written in the limits: "64 MiB", "4 GiB", "1000 bytes"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return plural(n, "byte")


# Attribute keys that identify a request or step to its owner, looked for in this order (a key matches if it equals
# one of these or ends with "." plus one of them); the rest of an application span's attributes follow.
_IDENTIFYING_KEYS = (
    "request.id", "request_id", "id", "step", "training.step", "epoch", "batch", "batch_size", "seq_len",
    "sequence_length", "http.route", "url.path", "rank",
)  # fmt: skip
_MAX_LABEL_ATTRIBUTES = 3


def _identifying_rank(key: str) -> int:
    for rank, wanted in enumerate(_IDENTIFYING_KEYS):
        if key == wanted or key.endswith("." + wanted) or key.endswith("_" + wanted):
            return rank
    return len(_IDENTIFYING_KEYS)


def request_label(name: str, attributes: dict[str, Any] | None = None, width: int = 60) -> str:
    """What identifies an application span (a request, a training step) to its owner: its name and up to three of
    its attributes, identifying keys (``_IDENTIFYING_KEYS``) first, as ``name key=value key=value``, cut to
    ``width`` characters (0: never). torch-otel's own ``pytorch.*`` and ``code.*`` attributes are left out, and so
    is one whose value the name already says (``http.route`` of ``POST /v1/generate``)."""
    attributes = attributes or {}
    shown = sorted(
        (
            key
            for key in attributes
            if not key.startswith(("pytorch.", "code.", "torch_otel."))
            and not (len(str(attributes[key])) >= 3 and str(attributes[key]) in str(name))  # said by the name
        ),
        key=lambda key: (_identifying_rank(key), key),
    )[:_MAX_LABEL_ATTRIBUTES]
    parts = [clean(name) or "?"]
    parts += [f"{clean(key.rpartition('.')[2])}={truncate(clean(attributes[key]), 24)}" for key in shown if attributes]
    return truncate(" ".join(parts), width)
