"""Checks TORCH_LOGS before torch applies it, so a bad value is reported clearly instead of crashing the import."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType

from torch_otel.capture.registry_snapshots import installed_torch_version, release
from torch_otel.capture.torch_logs import (
    TorchLogsError,
    parse_torch_logs,
    snapshot_registry,
)

TORCH_LOGS = "TORCH_LOGS"


def program_search_path(command: Sequence[str]) -> list[str]:
    """The folder Python puts first on the program's ``sys.path``: the script's (``python train.py``), else the
    working directory (``-m``, ``-c``, or a program we cannot read)."""
    script = next((arg for arg in command[1:] if not arg.startswith("-")), None)
    if script is not None and script.endswith(".py") and os.path.isfile(script):
        return [os.path.dirname(os.path.abspath(script))]
    return [os.getcwd()]


def check_torch_logs(raw: str | None, program_path: Sequence[str] = ()) -> None:
    """Raise ``TorchLogsError`` if torch would reject TORCH_LOGS, without importing torch when the value is valid
    for the registry snapshot. Otherwise the installed torch decides (its registry can have names the snapshot
    lacks), at the cost of importing it here, with TORCH_LOGS held back. User modules named in TORCH_LOGS are
    looked for on ``program_path`` too: the folders the program will have on its ``sys.path`` and this process
    lacks (its script's folder)."""
    if raw is None:
        return
    with _searching(program_path):
        try:
            parse_torch_logs(raw, snapshot_registry())
        except TorchLogsError:
            if importlib.util.find_spec("torch") is None:
                raise
            import_torch_with_logs_held()
            parse_torch_logs(raw)


def check_torch_logs_before_import(raw: str | None, program_path: Sequence[str] = ()) -> None:
    """Raise ``TorchLogsError`` only where torch is certain to reject TORCH_LOGS when it is imported, deciding
    without importing torch (the value stays torch's to apply, or to refuse with its own error).

    Certain means: torch is not imported yet, the installed torch (its distribution metadata) has the release of
    a registry snapshot, and parsing against that snapshot fails without needing torch imported. A value that
    names a module under ``torch`` (or a user package that imports torch) before its first bad item, or any value
    for another torch release, passes unchecked. ``program_path`` is as for ``check_torch_logs``."""
    if raw is None or "torch" in sys.modules:
        return
    installed, snapshot = installed_torch_version(), snapshot_registry()
    if installed is None or snapshot.torch_version is None or release(installed) != release(snapshot.torch_version):
        return
    with _searching(program_path), _torch_import_refused():
        try:
            parse_torch_logs(raw, snapshot)
        except TorchLogsError as error:
            if not _needed_torch(error):
                raise


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


@contextmanager
def _searching(program_path: Sequence[str]) -> Iterator[None]:
    saved = list(sys.path)
    sys.path[:0] = [entry for entry in program_path if entry not in sys.path]
    try:
        yield
    finally:
        sys.path[:] = saved


class _TorchRefused(ModuleNotFoundError):
    """Raised for ``import torch`` while TORCH_LOGS is checked before torch's own import."""


class _RefuseTorch(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        # Only the checking thread: another thread's `import torch` proceeds as usual.
        if fullname == "torch" and threading.get_ident() == self.thread:
            raise _TorchRefused("torch is not imported while TORCH_LOGS is checked", name="torch")
        return None


@contextmanager
def _torch_import_refused() -> Iterator[None]:
    # Resolving a module under torch would import torch with TORCH_LOGS applied, which is torch's job, later.
    finder = _RefuseTorch()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def _needed_torch(error: BaseException) -> bool:
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, _TorchRefused):
            return True
        seen.add(id(current))
        pending += [current.__cause__, current.__context__]
    return False
