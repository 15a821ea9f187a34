"""Imports torch with TORCH_LOGS checked first, so a bad value is reported clearly instead of crashing the import."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from torch_otel.capture.torch_logs import (
    TorchLogsError,
    parse_torch_logs,
    snapshot_registry,
)

TORCH_LOGS = "TORCH_LOGS"


def import_torch_checked() -> None:
    """Import torch; if TORCH_LOGS is set, validate it with ``parse_torch_logs`` before torch applies it.

    Raises ``TorchLogsError`` for a bad value. If torch was already imported, TORCH_LOGS was already accepted.
    """
    if "torch" in sys.modules:
        return
    raw = os.environ.get(TORCH_LOGS)
    import_torch_with_logs_held()
    if raw is None:
        return
    parse_torch_logs(raw)
    from torch_otel.capture.torch_internals import init_logs

    init_logs()


def check_torch_logs(raw: str | None, program_path: Sequence[str] = ()) -> None:
    """Raise ``TorchLogsError`` if torch would reject TORCH_LOGS, without importing torch when the value is valid
    for the registry snapshot. Otherwise the installed torch decides (its registry can have names the snapshot
    lacks), at the cost of importing it here, with TORCH_LOGS held back. User modules named in TORCH_LOGS are
    looked for on ``program_path`` too: the folders the program will have on its ``sys.path`` and this process
    lacks (its script's folder)."""
    if raw is None:
        return
    saved = list(sys.path)
    sys.path[:0] = [entry for entry in program_path if entry not in sys.path]
    try:
        try:
            parse_torch_logs(raw, snapshot_registry())
        except TorchLogsError:
            if importlib.util.find_spec("torch") is None:
                raise
            import_torch_with_logs_held()
            parse_torch_logs(raw)
    finally:
        sys.path[:] = saved


def import_torch_with_logs_held() -> ModuleType:
    """Import torch with TORCH_LOGS hidden from it, so torch neither applies nor chokes on the value."""
    raw = os.environ.pop(TORCH_LOGS, None)
    try:
        import torch
    finally:
        if raw is not None:
            os.environ[TORCH_LOGS] = raw
    return torch


def torch_version() -> str | None:
    try:
        import torch

        return str(torch.__version__)
    except Exception:  # noqa: BLE001 - no torch: scopes carry no version
        return None
