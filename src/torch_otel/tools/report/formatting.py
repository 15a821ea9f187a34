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
    """``file:line``, the file cut from the left to ``width`` characters (0: never)."""
    if not file:
        return "?"
    return truncate_left(clean(file), width) + (f":{line}" if line is not None else "")


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
    ``width`` characters (0: never). torch-otel's own ``pytorch.*`` and ``code.*`` attributes are left out."""
    shown = sorted(
        (key for key in (attributes or {}) if not key.startswith(("pytorch.", "code.", "torch_otel."))),
        key=lambda key: (_identifying_rank(key), key),
    )[:_MAX_LABEL_ATTRIBUTES]
    parts = [clean(name) or "?"]
    parts += [f"{clean(key.rpartition('.')[2])}={truncate(clean(attributes[key]), 24)}" for key in shown if attributes]
    return truncate(" ".join(parts), width)
