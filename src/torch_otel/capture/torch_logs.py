"""Parse TORCH_LOGS values as torch 2.13 does, without touching torch's log registry or importing named packages."""

from __future__ import annotations

import difflib
import importlib.util
import logging
import pkgutil
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec

from . import registry_snapshots

__all__ = [
    "Registry",
    "TorchLogsError",
    "TorchLogsSettings",
    "current_registry",
    "live_registry",
    "parse_torch_logs",
    "snapshot_registry",
]

_PREFIX_LEVELS = {"+": logging.DEBUG, "-": logging.ERROR}
_PIECE = re.compile(r"(\s*)([+-]?)([\w.]+)")
_LEADING_SPACE = re.compile(r"\s*")
_PREFIX_RUN = re.compile(r"[+-]*")
_WHITESPACE = re.compile(r"\s")
_NAME_CHAR = re.compile(r"[\w.]")
_NAME_RUN = re.compile(r"[\w.]+")
_HELP_VALUES = ("help", "+help")
_DOCTOR_HINT = "run `torch-otel doctor --list` for all {count} artifacts"


class TorchLogsError(ValueError):
    """A TORCH_LOGS value that torch would reject (or mishandle)."""

    def __init__(self, message: str, value: str, item: str | None) -> None:
        super().__init__(message)
        self.value = value
        self.item = item


@dataclass(frozen=True)
class TorchLogsSettings:
    """What a TORCH_LOGS value enables; levels are ``logging`` ints."""

    logger_levels: dict[str, int]
    artifacts: frozenset[str]
    components: dict[str, int]
    modules: dict[str, int]


@dataclass(frozen=True)
class Registry:
    """The parts of torch's ``LogRegistry`` that parsing needs."""

    aliases: dict[str, tuple[str, ...]]
    artifacts: frozenset[str]
    off_by_default: frozenset[str]
    descriptions: dict[str, str]
    torch_version: str | None


@dataclass(frozen=True)
class _Item:
    raw: str
    name: str
    level: int


# ---------------------------------------------------------------- registries


def live_registry() -> Registry | None:
    """torch's own registry (importing torch if needed), or None if torch is unavailable."""
    from torch_otel.capture.torch_internals import live_log_registry

    contents = live_log_registry()
    if contents is None:
        return None
    return Registry(
        aliases={alias: _as_tuple(qnames) for alias, qnames in contents["aliases"].items()},
        **{key: value for key, value in contents.items() if key != "aliases"},
    )


def snapshot_registry(torch_version: str | None = None) -> Registry:
    """The frozen registry of ``torch_version``'s release (default: the installed torch's, from its package
    metadata), or of the nearest older release shipped (``registry_snapshots``)."""
    return Registry(**registry_snapshots.load(torch_version))


def current_registry() -> Registry:
    """The live registry if torch is available, else the snapshot."""
    return live_registry() or snapshot_registry()


def _as_tuple(qnames: str | Iterable[str]) -> tuple[str, ...]:
    return (qnames,) if isinstance(qnames, str) else tuple(qnames)


# ------------------------------------------------------------------- parsing


def parse_torch_logs(value: str, registry: Registry | None = None) -> TorchLogsSettings:
    """Parse value as torch's ``_parse_log_settings`` (torch/_logging/_internal.py) does, without touching torch's
    registry, log state or loggers, and without importing the packages the value names.

    Returns ``logger_levels`` (logger name to ``logging`` level: torch's ``LogState.log_qname_to_level``),
    ``artifacts`` (torch's ``LogState.artifact_names``), and the items that named a registered ``components`` alias
    or a ``modules`` name, each with its level. Names come from ``registry``: by default torch's live registry
    (importing torch if needed), else the snapshot of the installed torch's release. Raises ``TorchLogsError`` (a
    ``ValueError`` naming the value and the bad item) wherever torch raises, and for the empty value, which torch
    accepts and then fails on inside ``import torch``.

    ``logger_levels`` equals torch's, except under a package named in the value. Torch imports each of its
    subpackages and walks what the imported module's ``__path__`` holds; this function reads a package (the named
    one or a subpackage) that this process has not imported from its folder on disk, and one it has imported from
    its ``__path__``. The two differ for a subpackage whose import fails (torch leaves out its submodules, which are
    listed here), and for one whose import replaces its ``sys.modules`` entry or changes its ``__path__`` (torch
    lists the replacement's submodules under the subpackage's name; here they appear only once the subpackage is
    imported). In torch 2.13, ``torch.distributed._shard.checkpoint``, ``torch.distributed._sharded_tensor`` and
    ``torch.distributed._sharding_spec`` replace themselves, so before they are imported ``torch.distributed`` gives
    362 names here and 430 from torch; ``torch.utils`` lists 8 names under ``torch.utils.tensorboard`` that torch
    leaves out when tensorboard is not installed."""
    registry = registry if registry is not None else current_registry()
    items = _split_items(value, registry)
    state = _ParseState(registry)
    for item in items:
        state.apply(item, value)
    return state.settings()


def _split_items(value: str, registry: Registry) -> list[_Item]:
    settings = _strip_windows_quotes(value)
    if settings in _HELP_VALUES:
        raise _help_error(value, registry)
    if settings == "":
        raise _empty_error(value, registry)
    pieces = settings.split(",")
    items = []
    for index, piece in enumerate(pieces):
        match = _PIECE.fullmatch(piece)
        if match is None or (index == 0 and match.group(1)):
            problem = _piece_problem(piece, index, len(pieces))
            raise _syntax_error(value, settings, piece, problem, registry)
        prefix, name = match.group(2), match.group(3)
        items.append(_Item(piece, name, _PREFIX_LEVELS.get(prefix, logging.INFO)))
    return items


def _strip_windows_quotes(value: str) -> str:
    if sys.platform != "win32" or len(value) < 2:
        return value
    if value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


class _ParseState:
    """Mirrors the LogState torch builds, plus the aliases torch registers on the way."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        # torch registers modules without a registered ancestor as new aliases
        # mid-parse; a later repeat of that name then resolves as an alias.
        self.new_aliases: dict[str, tuple[str, ...]] = {}
        self.qnames = _all_qnames(registry.aliases)
        self.levels: dict[str, int] = {}
        self.artifacts: set[str] = set()
        self.components: dict[str, int] = {}
        self.modules: dict[str, int] = {}

    def apply(self, item: _Item, value: str) -> None:
        name = "torch" if item.name == "all" else item.name
        if name in self.new_aliases:
            self._enable(self.new_aliases[name], item.level)
            self.modules[name] = item.level
        elif name in self.registry.aliases:
            self._enable(_as_tuple(self.registry.aliases[name]), item.level)
            self.components[name] = item.level
        elif name in self.registry.artifacts:
            self.artifacts.add(name)
        else:
            found = _module_and_submodules(item, value, self.registry)
            self._register(found)
            self._enable(found, item.level)
            self.modules[name] = item.level

    def settings(self) -> TorchLogsSettings:
        return TorchLogsSettings(
            logger_levels=dict(self.levels),
            artifacts=frozenset(self.artifacts),
            components=dict(self.components),
            modules=dict(self.modules),
        )

    def _enable(self, qnames: Iterable[str], level: int) -> None:
        for qname in qnames:
            self.levels[qname] = level

    def _register(self, module_names: Iterable[str]) -> None:
        for module_name in module_names:
            if not _has_registered_ancestor(module_name, self.qnames):
                self.new_aliases[module_name] = (module_name,)
                self.qnames = _all_qnames({**self.registry.aliases, **self.new_aliases})


def _all_qnames(aliases: dict[str, tuple[str, ...]]) -> set[str]:
    return {qname for qnames in aliases.values() for qname in _as_tuple(qnames)}


def _has_registered_ancestor(qname: str, registered: set[str]) -> bool:
    parts = qname.split(".")
    return any(".".join(parts[:end]) in registered for end in range(len(parts), 0, -1))


# ------------------------------------------------------ module discovery


def _module_and_submodules(item: _Item, value: str, registry: Registry) -> list[str]:
    try:
        spec = importlib.util.find_spec(item.name)
        found = None if spec is None else [item.name, *_submodules(item.name, spec)]
    except Exception as exc:
        # find_spec imports parent packages, so any error a user package raises can surface.
        raise _unknown_name_error(value, item, registry, cause=exc) from exc
    if found is None:
        raise _unknown_name_error(value, item, registry)
    return found


def _submodules(name: str, spec: ModuleSpec) -> list[str]:
    if spec.submodule_search_locations is None:
        return []
    if name in sys.modules:
        path = getattr(sys.modules[name], "__path__", None)
        if path is None:
            return []
    else:
        path = spec.submodule_search_locations
    return list(_walk(list(path), name + "."))


def _walk(path: Sequence[str], prefix: str) -> Iterator[str]:
    """Like pkgutil.walk_packages, but reads subpackage paths without importing them."""
    seen: set[str] = set()
    for info in pkgutil.iter_modules(path, prefix):
        yield info.name
        if not info.ispkg:
            continue
        fresh = []
        for entry in _subpackage_path(info):
            if entry not in seen:
                seen.add(entry)
                fresh.append(entry)
        yield from _walk(fresh, info.name + ".")


def _subpackage_path(info: pkgutil.ModuleInfo) -> list[str]:
    if info.name in sys.modules:
        module = sys.modules[info.name]
        return list(getattr(module, "__path__", None) or [])
    find_spec = getattr(info.module_finder, "find_spec", None)
    spec = find_spec(info.name) if find_spec is not None else None
    if spec is None or spec.submodule_search_locations is None:
        return []
    return list(spec.submodule_search_locations)


# ------------------------------------------------------ syntax diagnosis


def _piece_problem(piece: str, index: int, count: int) -> str:
    lead = _match_length(_LEADING_SPACE, piece)
    body = piece[lead:]
    prefix_len = _match_length(_PREFIX_RUN, body)
    name = body[prefix_len:]
    if not body:
        return _empty_item_problem(index, count)
    if lead and index == 0:
        return "leading whitespace is not allowed (whitespace may only follow a comma)"
    if _WHITESPACE.match(body[-1]):
        if index < count - 1:
            return "space before a comma is not allowed"
        return "trailing whitespace is not allowed"
    if _WHITESPACE.search(body):
        return "whitespace inside an item is not allowed; separate items with commas"
    if prefix_len > 1:
        return "only one '+' or '-' prefix is allowed"
    if not name:
        return f"prefix {body!r} is not followed by a name"
    bad = next((char for char in name if not _NAME_CHAR.fullmatch(char)), None)
    if bad is None:
        return "it does not match the TORCH_LOGS grammar"
    if bad in "+-":
        return f"{bad!r} is only allowed as a prefix at the start of an item"
    return f"character {bad!r} is not allowed"


def _match_length(pattern: re.Pattern[str], text: str) -> int:
    match = pattern.match(text)
    return match.end() if match else 0


def _empty_item_problem(index: int, count: int) -> str:
    if count == 1:
        return "the value is only whitespace"
    if index == 0:
        return "empty item before the first comma"
    if index == count - 1:
        return "empty item after the last comma"
    return "empty item between commas"


# ------------------------------------------------------------------ errors


def _syntax_error(value: str, settings: str, piece: str, problem: str, registry: Registry) -> TorchLogsError:
    hint = _suggestion(_repaired_value(settings), _name_guess(piece), registry)
    return _error(value, piece, f"item {piece!r} is invalid: {problem}", hint, registry)


def _unknown_name_error(value: str, item: _Item, registry: Registry, cause: Exception | None = None) -> TorchLogsError:
    if cause is None:
        reason = "is not a registered component, artifact or importable module"
    else:
        detail = " ".join(str(cause).split())
        reason = f"is not an importable module ({type(cause).__name__}: {detail})"
    hint = _suggestion(None, item.name, registry)
    return _error(value, item.name, f"item {item.name!r} {reason}", hint, registry)


def _empty_error(value: str, registry: Registry) -> TorchLogsError:
    reason = "the value is empty; torch accepts it but then fails inside `import torch`, so unset TORCH_LOGS instead"
    return _error(value, None, reason, "", registry)


def _help_error(value: str, registry: Registry) -> TorchLogsError:
    message = (
        f"TORCH_LOGS={value!r}: help requested, nothing enabled. Items are comma-separated; "
        "prefix '+' sets DEBUG and '-' sets ERROR (default INFO); a dotted module name "
        "such as torch._dynamo sets that module and its submodules. "
        f"Components: {', '.join(_component_names(registry))}. "
        f"Artifacts: {', '.join(sorted(registry.artifacts))}."
    )
    return TorchLogsError(message, value, None)


def _error(value: str, item: str | None, reason: str, hint: str, registry: Registry) -> TorchLogsError:
    # repr() escapes every newline-like character, so the message stays one line.
    lead = f"TORCH_LOGS={value!r}: {reason}" + (f"; {hint}" if hint else ".")
    components = ", ".join(_component_names(registry))
    doctor = _DOCTOR_HINT.format(count=len(registry.artifacts))
    message = f"{lead} Valid components: {components}; {doctor}."
    return TorchLogsError(message, value, item)


def _component_names(registry: Registry) -> list[str]:
    return ["all", *sorted(registry.aliases)]


def _suggestion(repaired: str | None, name: str | None, registry: Registry) -> str:
    if repaired is not None:
        return f"did you mean {repaired!r}?"
    if not name:
        return ""
    candidates = [*_component_names(registry), *sorted(registry.artifacts)]
    matches = closest_names(name, candidates)
    if not matches:
        return ""
    quoted = [repr(match) for match in matches]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    case_only = name not in candidates and name.lower() in candidates
    return f"did you mean {listed}?" + (" Names are case-sensitive." if case_only else "")


_PREFIX_BONUS = 0.2  # a name the typed one begins (``recompile`` -> ``recompiles``) ranks above a mere look-alike
_WITHIN_BEST = 0.2  # suggestions scoring this far below the best one are left out
_STRONG = 0.8  # a look-alike that does not share the first letter is suggested only from this similarity up


def closest_names(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` of ``candidates`` that ``name`` was probably meant to be, best first (case ignored).

    A candidate that begins with ``name`` (at least 3 characters) ranks above one that merely looks alike; a
    look-alike must be at least 60 % similar (``difflib``'s ratio), and one that does not share ``name``'s first
    letter at least 80 %; anything scoring far below the best candidate is dropped. So ``recompile`` suggests
    ``recompiles``, not ``async_compile``."""
    typed = name.lower()
    scored = []
    for candidate in dict.fromkeys(candidates):
        lowered = candidate.lower()
        ratio = difflib.SequenceMatcher(None, typed, lowered).ratio()
        prefix = len(typed) >= 3 and lowered.startswith(typed)
        if not prefix and (ratio < 0.6 or (lowered[:1] != typed[:1] and ratio < _STRONG)):
            continue
        scored.append((ratio + (_PREFIX_BONUS if prefix else 0.0), candidate))
    if not scored:
        return []
    scored.sort(key=lambda item: (-item[0], item[1]))
    best = scored[0][0]
    return [candidate for score, candidate in scored if score >= best - _WITHIN_BEST][:limit]


def _repaired_value(value: str) -> str | None:
    """The value with whitespace turned into commas and empty items dropped, if that fixes it."""
    tokens = [token for piece in value.split(",") for token in piece.split()]
    repaired = ",".join(tokens)
    if repaired and repaired != value and all(map(_PIECE.fullmatch, tokens)):
        return repaired
    return None


def _name_guess(piece: str) -> str | None:
    runs = _NAME_RUN.findall(piece)
    return max(runs, key=len) if runs else None
