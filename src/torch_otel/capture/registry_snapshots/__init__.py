"""Frozen copies of torch's TORCH_LOGS registry (``torch._logging._internal.log_registry``), one per torch release
torch-otel is tested on, for parsing TORCH_LOGS when torch cannot be imported. ``python -m
torch_otel.capture.registry_snapshots`` (``__main__``) writes the running torch's; ``tests/test_torch_logs.py`` checks each against
the live registry of its release."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

_FOLDER = Path(__file__).parent
_PREFIX, _SUFFIX = "torch-", ".json"


def release(version: str) -> tuple[int, ...]:
    """A torch version's release numbers, without its local build tag or pre-release suffix:
    ``"2.13.0+cu130"`` -> ``(2, 13, 0)``. Versions compare by release, never by build."""
    numbers = []
    for part in version.split("+", 1)[0].split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.end() < len(part):  # "0rc1", "0a0": the suffix ends the release
            break
    return tuple(numbers)


def available() -> dict[tuple[int, ...], Path]:
    """Release -> snapshot file, for every snapshot shipped."""
    return {release(path.name[len(_PREFIX) : -len(_SUFFIX)]): path for path in _FOLDER.glob(f"{_PREFIX}*{_SUFFIX}")}


def installed_torch_version() -> str | None:
    """The installed torch's version from its distribution metadata, without importing torch."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def choose(version: str | None) -> Path:
    """The snapshot for ``version``'s major.minor release; failing that the newest one older than it; failing that
    (older than every snapshot) the oldest. With no version, the newest."""
    snapshots = available()
    newest = max(snapshots)
    if version is None:
        return snapshots[newest]
    wanted = release(version)[:2]
    same_minor = [r for r in snapshots if r[:2] == wanted]
    if same_minor:
        return snapshots[max(same_minor)]
    older = [r for r in snapshots if r[:2] < wanted]
    return snapshots[max(older) if older else min(snapshots)]


def load(version: str | None = None) -> dict[str, Any]:
    """The snapshot for ``version`` (default: the installed torch's, read from its metadata): ``aliases`` (alias ->
    qualified logger names), ``artifacts``, ``off_by_default``, ``descriptions`` and ``torch_version`` (the full
    version it was taken from)."""
    data = json.loads(choose(version if version is not None else installed_torch_version()).read_text("utf-8"))
    return {
        "aliases": {alias: tuple(qnames) for alias, qnames in data["aliases"].items()},
        "artifacts": frozenset(data["artifacts"]),
        "off_by_default": frozenset(data["off_by_default"]),
        "descriptions": dict(data["descriptions"]),
        "torch_version": data["torch_version"],
    }


def write_current() -> Path:
    """Write the running torch's registry as ``torch-<release>.json``; run it in a fresh process, so that no module
    named in a TORCH_LOGS has registered itself as an alias."""
    from torch_otel.capture.torch_internals import live_log_registry

    live = live_log_registry()
    if live is None:
        raise SystemExit("torch's log registry is not available in this interpreter")
    version = str(live["torch_version"])
    path = _FOLDER / f"{_PREFIX}{'.'.join(map(str, release(version)))}{_SUFFIX}"
    data = {
        "torch_version": version,
        "aliases": {alias: list(qnames) for alias, qnames in sorted(live["aliases"].items())},
        "artifacts": sorted(live["artifacts"]),
        "off_by_default": sorted(live["off_by_default"]),
        "descriptions": dict(sorted(live["descriptions"].items())),
    }
    path.write_text(json.dumps(data, indent=1) + "\n", "utf-8")
    return path
