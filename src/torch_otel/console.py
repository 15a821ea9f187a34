"""The one way torch-otel speaks to the user at run time: a line on stderr, or nothing when there is no stderr."""

from __future__ import annotations

import sys

PREFIX = "torch-otel: "


def say(message: str) -> None:
    """One line to stderr, prefixed ``torch-otel: ``; nowhere when stderr is closed or broken (``sys.stderr`` is
    None when the program was started with fd 2 closed). Never onto stdout, and never raises."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(PREFIX + message + "\n")
        stream.flush()
    except (OSError, ValueError):  # closed, a broken pipe, or a full disk
        pass
