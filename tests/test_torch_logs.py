"""torch_otel.capture.torch_logs agrees with torch 2.13's TORCH_LOGS parser and leaves torch alone."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
internal = importlib.import_module("torch._logging._internal")

from torch_otel.capture.torch_logs import (  # noqa: E402
    Registry,
    TorchLogsError,
    TorchLogsSettings,
    current_registry,
    live_registry,
    parse_torch_logs,
    snapshot_registry,
)

DEBUG, INFO, ERROR = logging.DEBUG, logging.INFO, logging.ERROR
SNAPSHOT = snapshot_registry()
IS_TORCH_2_13 = torch.__version__.startswith("2.13.")
USER_PKG = "tlogs_userpkg"
USER_MOD = "tlogs_usermod"
BROKEN_PKG = "tlogs_brokenpkg"
PURE_PKG = "tlogs_purepkg"
USER_FILES = {  # on sys.path for the whole module
    f"{USER_PKG}/__init__.py": "",
    f"{USER_PKG}/alpha.py": "",
    f"{USER_PKG}/sub/__init__.py": "",
    f"{USER_PKG}/sub/beta.py": "",
    f"{USER_PKG}/sub/deep/__init__.py": "",
    f"{USER_PKG}/sub/deep/gamma.py": "",
    f"{USER_PKG}/nsdir/delta.py": "",  # no __init__: pkgutil does not list it
    f"{USER_PKG}/notes.txt": "",
    f"{USER_MOD}.py": "",
}
# Only on sys.path inside the tests that use them: a name the property test
# happens to generate must never reach a package built to differ from torch.
ISOLATED_FILES = {
    f"{BROKEN_PKG}/__init__.py": "",
    f"{BROKEN_PKG}/ok.py": "",
    f"{BROKEN_PKG}/bad/__init__.py": "raise ImportError('broken on purpose')",
    f"{BROKEN_PKG}/bad/child.py": "",
    f"{PURE_PKG}/__init__.py": "raise RuntimeError('must not be imported')",
    f"{PURE_PKG}/leaf.py": "",
    f"{PURE_PKG}/inner/__init__.py": "raise RuntimeError('must not be imported')",
    f"{PURE_PKG}/inner/leaf.py": "",
}
USER_PACKAGES = (USER_PKG, USER_MOD, BROKEN_PKG, PURE_PKG)
USER_PKG_MODULES = {
    USER_PKG,
    f"{USER_PKG}.alpha",
    f"{USER_PKG}.sub",
    f"{USER_PKG}.sub.beta",
    f"{USER_PKG}.sub.deep",
    f"{USER_PKG}.sub.deep.gamma",
}
# Packages torch's walk fully imports; each must be importable so both walks agree.
REAL_MODULES = (
    "torch._dynamo",
    "torch._dynamo.backends",
    "torch._dynamo.output_graph",
    "torch._inductor.codecache",
    "torch._logging",
    "os.path",
    "json",
)


# ------------------------------------------------------------------ helpers


def _forget_user_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in USER_PACKAGES:
            del sys.modules[name]


def _write_files(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture(scope="module", autouse=True)
def user_packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = _write_files(tmp_path_factory.mktemp("user_packages"), USER_FILES)
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    for name in REAL_MODULES:  # import once up front so no test sees import side effects
        torch_outcome(name)
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        sys.path_importer_cache.pop(str(root), None)
        _forget_user_modules()
        importlib.invalidate_caches()


@pytest.fixture(scope="module")
def isolated_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_files(tmp_path_factory.mktemp("isolated_packages"), ISOLATED_FILES)


@pytest.fixture
def isolated_packages(isolated_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(isolated_root))
    yield
    _forget_user_modules()
    sys.path_importer_cache.pop(str(isolated_root), None)


def torch_outcome(value: str) -> tuple[str, Any, Any]:
    """Run torch's real parser, bypassing its lru_cache, on a throwaway registry copy."""
    original = internal.log_registry
    internal.log_registry = copy.deepcopy(original)
    try:
        state = internal._parse_log_settings.__wrapped__(value)
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))
    finally:
        internal.log_registry = original
    if isinstance(state, dict):
        return ("ok", dict(state), frozenset())
    return ("ok", dict(state.log_qname_to_level), frozenset(state.artifact_names))


def our_outcome(value: str, registry: Registry | None = None) -> tuple[str, Any, Any]:
    try:
        parsed = parse_torch_logs(value, registry)
    except TorchLogsError as exc:
        return ("error", "TorchLogsError", str(exc))
    return ("ok", parsed.logger_levels, parsed.artifacts)


def assert_agrees(value: str, registry: Registry | None = None) -> None:
    ours, theirs = our_outcome(value, registry), torch_outcome(value)
    if value == "":
        assert theirs == ("ok", {}, frozenset()) and ours[0] == "error"
        return
    assert ours[0] == theirs[0], (value, ours, theirs)
    if ours[0] == "ok":
        assert ours[1:] == theirs[1:], value


def qnames(alias: str, level: int) -> dict[str, int]:
    return {qname: level for qname in SNAPSHOT.aliases[alias]}


def registry_state() -> dict[str, Any]:
    registry = internal.log_registry
    state = {f.name: copy.deepcopy(getattr(registry, f.name)) for f in dataclasses.fields(registry)}
    state["artifact_log_formatters"] = {
        name: formatter._fmt for name, formatter in registry.artifact_log_formatters.items()
    }
    return state


def logging_state() -> dict[str, Any]:
    loggers = dict(logging.Logger.manager.loggerDict, root=logging.getLogger())
    return {
        name: (lg.level, tuple(lg.handlers), lg.propagate, lg.disabled)
        for name, lg in loggers.items()
        if isinstance(lg, logging.Logger)
    }


def torch_log_state() -> tuple[Any, dict[str, Any], set[str]]:
    state = internal.log_state
    return (state, dict(state.log_qname_to_level), set(state.artifact_names))


# ------------------------------------- 1. cases from pytorch test/dynamo/test_logging.py

PORTED_CASES = [
    # test_dynamo_debug / test_dynamo_info / test_dynamo_error (older version: dynamo=ERROR)
    ("+dynamo", qnames("dynamo", DEBUG), set()),
    ("dynamo", qnames("dynamo", INFO), set()),
    ("-dynamo", qnames("dynamo", ERROR), set()),
    # test_aot / test_inductor_debug / test_inductor_info
    ("aot", qnames("aot", INFO), set()),
    ("+inductor", qnames("inductor", DEBUG), set()),
    ("inductor", qnames("inductor", INFO), set()),
    # test_all: all=DEBUG, dynamo=INFO
    ("+all,dynamo", {"torch": DEBUG, **qnames("dynamo", INFO)}, set()),
    ("all", {"torch": INFO}, set()),
    # test_open_registration_with_registered_parent / test_dump_compile_times /
    # test_log_traced_frames: a module under a registered parent
    ("torch._dynamo.output_graph", {"torch._dynamo.output_graph": INFO}, set()),
    ("torch._dynamo.utils", {"torch._dynamo.utils": INFO}, set()),
    ("torch._dynamo.eval_frame", {"torch._dynamo.eval_frame": INFO}, set()),
    # test_guards_recompiles and the per-artifact single record tests
    ("guards,recompiles", {}, {"guards", "recompiles"}),
    ("bytecode", {}, {"bytecode"}),
    ("output_code", {}, {"output_code"}),
    ("aot_graphs", {}, {"aot_graphs"}),
    ("trace_source", {}, {"trace_source"}),
    ("custom_format_test_artifact", {}, {"custom_format_test_artifact"}),
    # test_default_logging: DEFAULT_LOGGING spelled as TORCH_LOGS
    (
        "dynamo,aot,inductor,fsdp,ddp_graphs,graph_breaks,side_effects,guards,recompiles,dynamic",
        {
            **qnames("dynamo", INFO),
            **qnames("aot", INFO),
            **qnames("inductor", INFO),
            **qnames("fsdp", INFO),
            **qnames("dynamic", INFO),
        },
        {"ddp_graphs", "graph_breaks", "side_effects", "guards", "recompiles"},
    ),
    # whitespace after commas; repeated names (the last one wins)
    ("+dynamo, guards,\trecompiles", qnames("dynamo", DEBUG), {"guards", "recompiles"}),
    ("+dynamo,dynamo", qnames("dynamo", INFO), set()),
    ("dynamo,-dynamo,+guards,guards", qnames("dynamo", ERROR), {"guards"}),
    # custom user modules (open registration)
    (USER_MOD, {USER_MOD: INFO}, set()),
    ("+" + USER_PKG, dict.fromkeys(USER_PKG_MODULES, DEBUG), set()),
    (
        f"-{USER_PKG}.sub,recompiles",
        dict.fromkeys({m for m in USER_PKG_MODULES if m.startswith(f"{USER_PKG}.sub")}, ERROR),
        {"recompiles"},
    ),
]

PORTED_ERRORS = [
    "not_an_existing_log_artifact_should_error",  # test_invalid_artifact_flag_error_msg
    "help",  # the error message points at TORCH_LOGS="help"
    "+help",
    "dynamo,not_an_artifact",
    "Dynamo",  # names are case-sensitive
    "dynamo=DEBUG",
    "dynamo ,aot",
    "dynamo,,aot",
]


@pytest.mark.parametrize(("value", "levels", "artifacts"), PORTED_CASES)
def test_ported_case(value: str, levels: dict[str, int], artifacts: set[str]) -> None:
    parsed = parse_torch_logs(value)
    assert parsed.logger_levels == levels
    assert parsed.artifacts == frozenset(artifacts)
    assert_agrees(value)


@pytest.mark.parametrize("value", PORTED_ERRORS)
def test_ported_error(value: str) -> None:
    with pytest.raises(TorchLogsError):
        parse_torch_logs(value)
    assert torch_outcome(value)[0] == "error"


@pytest.mark.parametrize("package", ["torch.utils", "torch._logging"])
def test_directory_based_logging(package: str) -> None:
    """test_open_registration / test_directory_based_logging: a package and its submodules."""
    ours = parse_torch_logs(package).logger_levels
    status, theirs, _ = torch_outcome(package)
    assert status == "ok" and set(ours.values()) == {INFO}
    assert package in ours and any(name.startswith(package + ".") for name in ours)
    assert theirs.items() <= ours.items()
    for extra in set(ours) - set(theirs):
        assert _under_unimportable_subpackage(extra, theirs), extra


def _under_unimportable_subpackage(name: str, walked: dict[str, int]) -> bool:
    # torch's walk imports each subpackage; one that fails to import (e.g.
    # torch.utils.tensorboard without tensorboard) is left out of sys.modules
    # and its children are skipped. Our import-free walk still lists them.
    parts = name.split(".")
    ancestors = (".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1))
    return any(a in walked and a not in sys.modules for a in ancestors)


def test_user_package_named_twice_keeps_torch_alias_semantics() -> None:
    """torch registers a new user package as an alias; a repeat re-levels only the package."""
    value = f"+{USER_PKG},{USER_PKG}"
    parsed = parse_torch_logs(value)
    assert parsed.logger_levels == {**dict.fromkeys(USER_PKG_MODULES, DEBUG), USER_PKG: INFO}
    assert parsed.modules == {USER_PKG: INFO}
    assert_agrees(value)


@pytest.mark.usefixtures("isolated_packages")
def test_broken_subpackage_is_the_documented_walk_divergence() -> None:
    ours = parse_torch_logs(BROKEN_PKG).logger_levels
    _, theirs, _ = torch_outcome(BROKEN_PKG)
    assert set(ours) - set(theirs) == {f"{BROKEN_PKG}.bad.child"}
    assert set(theirs) == {BROKEN_PKG, f"{BROKEN_PKG}.ok", f"{BROKEN_PKG}.bad"}


def test_torch_walk_agrees_before_anything_is_imported() -> None:
    """In a fresh interpreter our import-free walk matches torch's importing walk."""
    script = textwrap.dedent(
        """
        import copy, sys
        import torch._logging._internal as internal
        from torch_otel.capture.torch_logs import parse_torch_logs
        for name in ["torch._dynamo", "torch._functorch", "torch.fx", "email"]:
            ours = parse_torch_logs(name).logger_levels
            original = internal.log_registry
            internal.log_registry = copy.deepcopy(original)
            try:
                theirs = internal._parse_log_settings.__wrapped__(name).log_qname_to_level
            finally:
                internal.log_registry = original
            assert ours == theirs and len(ours) > 3, name
        print("agree")
        """
    )
    result = _run_python(script, {})
    assert result.stdout.strip().endswith("agree"), result.stderr[-2000:]


SELF_ALIAS_PKG = "tlogs_selfalias"
# A package that replaces itself in sys.modules on import, as torch.distributed._shard.checkpoint does.
SELF_ALIAS_FILES = {
    f"{SELF_ALIAS_PKG}/__init__.py": (
        f"import sys, {SELF_ALIAS_PKG}_target\nsys.modules[__name__] = {SELF_ALIAS_PKG}_target\n"
    ),
    f"{SELF_ALIAS_PKG}_target/__init__.py": "",
    f"{SELF_ALIAS_PKG}_target/a.py": "",
    f"{SELF_ALIAS_PKG}_target/sub/__init__.py": "",
    f"{SELF_ALIAS_PKG}_target/sub/b.py": "",
}
# Torch's walk in a fresh interpreter: its levels, the subpackages whose import replaced their sys.modules entry and
# those that failed to import (pkgutil's onerror, as torch passes it), then our walk once torch's has imported them.
TORCH_WALK = """
import copy, json, pkgutil, sys, warnings
warnings.simplefilter("ignore")
import torch._logging._internal as internal
from torch_otel.capture.torch_logs import parse_torch_logs
name = sys.argv[-1]
original, internal.log_registry = internal.log_registry, copy.deepcopy(internal.log_registry)
theirs = dict(internal._parse_log_settings.__wrapped__(name).log_qname_to_level)
internal.log_registry = original  # torch's parse registered new aliases in the copy
failed = []
for _ in pkgutil.walk_packages(sys.modules[name].__path__, name + ".", onerror=failed.append):
    pass
replaced = [n for n in theirs if n in sys.modules and getattr(sys.modules[n], "__name__", n) != n]
print(json.dumps([theirs, replaced, failed, parse_torch_logs(name).logger_levels]))
"""


def _under(name: str, packages: list[str] | set[str]) -> bool:
    return any(name.startswith(package + ".") for package in packages)


@pytest.mark.parametrize("package", ["torch.distributed", "torch.utils", "torch.nn", SELF_ALIAS_PKG])
def test_package_walk_differs_from_torch_only_as_documented(package: str, tmp_path: Path) -> None:
    """parse_torch_logs against torch's own parser, run in a fresh interpreter (its walk imports every subpackage).

    Documented difference: our walk imports nothing, so it lists the submodules of a subpackage that fails to
    import (torch leaves them out), and lists a self-replacing subpackage from its own folder until this process
    has imported it (torch lists the replacement's submodules)."""
    root = _write_files(tmp_path, SELF_ALIAS_FILES)
    script = f"import sys\nsys.path.insert(0, {str(root)!r})\nsys.argv.append({package!r})\n" + TORCH_WALK
    result = _run_python(script, {})
    assert result.returncode == 0, result.stderr[-3000:]
    theirs, replaced, failed, ours_after_torch = json.loads(result.stdout.splitlines()[-1])
    sys.path.insert(0, str(root))
    try:
        ours = parse_torch_logs(package).logger_levels
    finally:
        sys.path.remove(str(root))
        sys.path_importer_cache.pop(str(root), None)
    replaced_here = {name for name in replaced if getattr(sys.modules.get(name), "__name__", name) != name}
    not_replaced_here = set(replaced) - replaced_here

    assert {n: ours[n] for n in set(ours) & set(theirs)} == {n: theirs[n] for n in set(ours) & set(theirs)}
    assert set(theirs) - set(ours) == {n for n in theirs if _under(n, not_replaced_here)}
    assert set(ours) - set(theirs) == {n for n in ours if _under(n, failed)}
    assert set(ours_after_torch) - set(theirs) == {n for n in ours_after_torch if _under(n, failed)}
    assert set(theirs) <= set(ours_after_torch)  # once imported, a replacement is walked as torch walks it
    if package == "torch.distributed" and IS_TORCH_2_13:
        assert sorted(replaced) == [
            "torch.distributed._shard.checkpoint",
            "torch.distributed._sharded_tensor",
            "torch.distributed._sharding_spec",
        ]
        assert (len(theirs), failed, ours_after_torch == theirs) == (430, [], True)
        if not replaced_here:
            assert len(ours) == 362
    if package == SELF_ALIAS_PKG:
        walked = [SELF_ALIAS_PKG, *(f"{SELF_ALIAS_PKG}.{n}" for n in ("a", "sub", "sub.b"))]
        assert theirs == ours_after_torch == dict.fromkeys(walked, INFO) and replaced == [SELF_ALIAS_PKG]
        assert ours == {SELF_ALIAS_PKG: INFO} and SELF_ALIAS_PKG not in sys.modules
    if package == "torch.utils":
        assert failed and set(ours) != set(theirs)  # torch.utils.tensorboard needs tensorboard
    if package == "torch.nn":
        assert ours == theirs and not replaced and not failed


# ------------------------------------------ 2. every alias and artifact, every prefix


@pytest.mark.parametrize("prefix", ["", "+", "-"])
@pytest.mark.parametrize("name", ["all", *sorted(SNAPSHOT.aliases), *sorted(SNAPSHOT.artifacts)])
def test_every_registered_name_agrees_with_torch(name: str, prefix: str) -> None:
    parsed = parse_torch_logs(prefix + name)
    assert_agrees(prefix + name)
    level = {"": INFO, "+": DEBUG, "-": ERROR}[prefix]
    if name in SNAPSHOT.artifacts:
        assert (parsed.artifacts, parsed.logger_levels, parsed.components) == ({name}, {}, {})
    else:
        alias = "torch" if name == "all" else name
        assert parsed.components == {alias: level} and parsed.artifacts == frozenset()
    assert parsed.modules == {}


# ------------------------------------------------------- 3. property test vs torch

_NAMES = st.sampled_from(
    [
        "all",
        "help",
        *sorted(SNAPSHOT.aliases),
        *sorted(SNAPSHOT.artifacts),
        *REAL_MODULES,
        USER_PKG,
        f"{USER_PKG}.sub",
        f"{USER_PKG}.sub.deep.gamma",
        f"{USER_PKG}.nsdir",
        USER_MOD,
        "recompile",
        "Dynamo",
        "foo",
        "x1",
        "_",
        "foo.bar",
        "torch..utils",
        ".foo",
        "..",
        "torch._dynamo.nope",
        "os.path.x",
        "sys.x",
        f"{USER_MOD}.x",
        "é",
    ]
)
# No junk name starts or ends with "." and no plain text holds one, so gluing
# items together can never spell a real dotted package outside _NAMES.
_JUNK_NAMES = st.from_regex(r"[abxyz_09]([abxyz_.09]{0,4}[abxyz_09])?", fullmatch=True)
_TEXT = st.text(alphabet=st.characters(exclude_characters="."), max_size=12)
_GOOD_PREFIXES = st.sampled_from(["", "", "+", "-"])
_GOOD_SEPARATORS = st.sampled_from([",", ", ", ",\t", ",\n  "])
_BAD_PREFIXES = st.sampled_from(["", "", "+", "-", "++", "+-", " ", "="])
_BAD_SEPARATORS = st.sampled_from([",", ", ", ",,", "", " ", " ,", ";", ":", ",\n"])
_PUNCTUATION = st.sampled_from(["", "", "", " ", ",", "=", "!", "/", "+", "-", "\n", '"'])


@st.composite
def torch_logs_values(draw: st.DrawFn, noisy: bool) -> str:
    """Comma lists of real and junk names; noisy ones add stray prefixes and punctuation."""
    names = st.one_of(_NAMES, _NAMES, _JUNK_NAMES) if noisy else _NAMES
    prefixes = _BAD_PREFIXES if noisy else _GOOD_PREFIXES
    separators = _BAD_SEPARATORS if noisy else _GOOD_SEPARATORS
    tail = _PUNCTUATION if noisy else st.just("")
    count = draw(st.integers(min_value=1, max_value=4))
    items = [draw(prefixes) + draw(names) + draw(tail) for _ in range(count)]
    value = items[0]
    for item in items[1:]:
        value += draw(separators) + item
    return draw(tail) + value


@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    value=st.one_of(
        torch_logs_values(False),
        torch_logs_values(False),
        torch_logs_values(True),
        _TEXT,
    )
)
def test_property_agrees_with_torch(value: str) -> None:
    _forget_user_modules()  # so our walk of the user package never relies on an import
    event("torch accepts" if torch_outcome(value)[0] == "ok" else "torch rejects")
    assert_agrees(value)


def test_windows_outer_quotes_are_stripped_like_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    for value in ['"+dynamo,guards"', "'aot'", "\"dynamo'", '"help"', '"dynamo']:
        assert_agrees(value)
    assert torch_outcome("''") == ("ok", {}, frozenset())  # quotes stripped: the empty case
    with pytest.raises(TorchLogsError, match="empty"):
        parse_torch_logs("''")
    assert parse_torch_logs('"+dynamo"').components == {"dynamo": DEBUG}
    monkeypatch.setattr(sys, "platform", "linux")
    assert_agrees('"+dynamo"')


# ---------------------------------------------------------------- 4. snapshot


# The snapshot of each supported release against its live registry: tests/test_versions.py.


def test_live_registry_survives_a_bad_torch_logs_import() -> None:
    script = textwrap.dedent(
        """
        import dataclasses, sys
        from torch_otel.capture.torch_logs import current_registry, live_registry, snapshot_registry
        assert "torch" not in sys.modules
        registry = live_registry()
        assert "torch" not in sys.modules  # the import of torch raised
        assert registry is not None and registry == current_registry()
        snapshot = snapshot_registry()
        assert dataclasses.replace(snapshot, torch_version=registry.torch_version) == registry, "snapshot differs"
        print(len(registry.aliases), len(registry.artifacts), registry.torch_version)
        """
    )
    result = _run_python(script, {"TORCH_LOGS": "not_a_real_torch_logs_name"})
    expected = [str(len(SNAPSHOT.aliases)), str(len(SNAPSHOT.artifacts)), str(torch.__version__)]
    assert result.stdout.split()[-3:] == expected, result.stderr[-2000:]


def test_current_registry_falls_back_to_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch._logging._internal", None)
    assert live_registry() is None
    assert current_registry() == SNAPSHOT


def test_unpopulated_torch_registry_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    half_imported = types.ModuleType("torch._logging._internal")
    half_imported.log_registry = internal.LogRegistry()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch._logging._internal", half_imported)
    assert live_registry() is None


def test_tuple_and_string_alias_values_are_accepted() -> None:
    aliases: dict[str, Any] = {**SNAPSHOT.aliases, "mine": "torch.fx"}
    registry = dataclasses.replace(SNAPSHOT, aliases=aliases)
    assert parse_torch_logs("+mine,cache", registry).logger_levels == {
        "torch.fx": DEBUG,
        "torch._inductor.remote_cache": INFO,
        "torch._inductor.fb.remote_cache": INFO,
    }


def _run_python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run script in a fresh interpreter with torch_otel.capture.torch_logs importable.

    The package __init__ is bypassed so the child imports nothing but torch_logs.
    """
    package_dir = Path(__file__).resolve().parents[1] / "src" / "torch_otel"
    stub = (
        "import sys, types\n"
        "package = types.ModuleType('torch_otel')\n"
        f"package.__path__ = [{str(package_dir)!r}]\n"
        "sys.modules['torch_otel'] = package\n"
    )
    full_env = {k: v for k, v in os.environ.items() if k != "TORCH_LOGS"}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", stub + script],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ------------------------------------------------------------ 5. purity


PURITY_VALUES = [
    "+dynamo,guards",
    "all",
    "torch._dynamo.output_graph",
    "torch._dynamo.backends",
    f"+{USER_PKG},{USER_PKG}",
    f"{USER_PKG}.sub,{USER_MOD}",
    PURE_PKG,
    "recompile",
    "foo.bar",
    "help",
    "",
]


@pytest.mark.usefixtures("isolated_packages")
def test_parsing_never_touches_torch_state() -> None:
    registry_before, logging_before = registry_state(), logging_state()
    log_state_before = torch_log_state()
    for value in PURITY_VALUES:
        try:
            parse_torch_logs(value)
        except TorchLogsError:
            pass
    assert registry_state() == registry_before
    assert torch_log_state() == log_state_before
    assert torch_log_state()[0] is log_state_before[0]
    assert logging_state() == logging_before


@pytest.mark.usefixtures("isolated_packages")
def test_walking_a_package_does_not_import_it() -> None:
    parsed = parse_torch_logs(f"-{PURE_PKG}")
    assert parsed.logger_levels == dict.fromkeys(
        [PURE_PKG, f"{PURE_PKG}.inner", f"{PURE_PKG}.inner.leaf", f"{PURE_PKG}.leaf"], ERROR
    )
    assert parsed.modules == {PURE_PKG: ERROR}
    assert not [name for name in sys.modules if name.startswith(PURE_PKG)]


def test_given_registry_is_not_mutated() -> None:
    registry = copy.deepcopy(SNAPSHOT)
    parse_torch_logs(f"{USER_PKG},{USER_PKG}.sub,+{USER_MOD}", registry)
    assert registry == SNAPSHOT


def test_settings_split_components_modules_and_artifacts() -> None:
    parsed = parse_torch_logs(f"+all, -dynamo,guards,+guards,{USER_MOD},-torch._dynamo.utils")
    assert parsed == TorchLogsSettings(
        logger_levels={
            "torch": DEBUG,
            **qnames("dynamo", ERROR),
            USER_MOD: INFO,
            "torch._dynamo.utils": ERROR,
        },
        artifacts=frozenset({"guards"}),
        components={"torch": DEBUG, "dynamo": ERROR},
        modules={USER_MOD: INFO, "torch._dynamo.utils": ERROR},
    )


# ----------------------------------------------------------- 6. error messages

BAD_VALUES = {
    "recompile": ("recompile", "not a registered component, artifact or importable module"),
    "dynamo,recompile": ("recompile", "not a registered component"),
    "dynamo ,aot": ("dynamo ", "space before a comma is not allowed"),
    "dynamo,,aot": ("", "empty item between commas"),
    "dynamo,": ("", "empty item after the last comma"),
    "+dynamo=debug": ("+dynamo=debug", "character '=' is not allowed"),
    "++dynamo": ("++dynamo", "only one '+' or '-' prefix"),
    "dynamo aot": ("dynamo aot", "whitespace inside an item"),
    " dynamo": (" dynamo", "leading whitespace"),
    "dynamo\n,aot": ("dynamo\n", "space before a comma"),
    "foo.bar": ("foo.bar", "ModuleNotFoundError: No module named 'foo'"),
    ".foo": (".foo", "not an importable module (ImportError"),
    "torch..utils": ("torch..utils", "not an importable module"),
    "torch.": ("torch.", "not a registered component, artifact or importable module"),
    "torch._dynamo.nope": ("torch._dynamo.nope", "not a registered component"),
    "   ": ("   ", "only whitespace"),
}


@pytest.mark.parametrize("value", sorted(BAD_VALUES))
def test_error_message_is_one_short_line_naming_the_item(value: str) -> None:
    item, reason = BAD_VALUES[value]
    with pytest.raises(TorchLogsError) as caught:
        parse_torch_logs(value)
    error, message = caught.value, str(caught.value)
    assert isinstance(error, ValueError)
    assert (error.value, error.item) == (value, item)
    assert message.startswith(f"TORCH_LOGS={value!r}: ")
    assert "\n" not in message and "\r" not in message
    assert repr(item) in message and reason in message
    assert "Valid components: all, aot," in message
    assert f"run `torch-otel doctor --list` for all {len(current_registry().artifacts)} artifacts" in message
    status, _, torch_message = torch_outcome(value)
    assert status == "error"
    if "Invalid log settings" in torch_message:
        assert len(message) < len(torch_message)


@pytest.mark.parametrize(
    ("value", "suggestion"),
    [
        ("recompile", "did you mean 'recompiles'"),
        ("dynamo,graph_break", "did you mean 'graph_breaks'"),
        ("+Dynamo", "'dynamo'"),
        ("inducter", "did you mean 'inductor'"),
        ("dynamo ,aot", "did you mean 'dynamo,aot'?"),
        ("dynamo aot", "did you mean 'dynamo,aot'?"),
        ("dynamo=debug", "did you mean 'dynamo'"),
    ],
)
def test_error_message_suggests_close_names(value: str, suggestion: str) -> None:
    with pytest.raises(TorchLogsError, match="did you mean") as caught:
        parse_torch_logs(value)
    assert suggestion in str(caught.value)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("recompile", ["recompiles"]),  # never async_compile: it only shares "compile"
        ("graph_break", ["graph_breaks"]),
        ("sched", ["schedule"]),  # a name the typed one begins outranks a look-alike (cache)
        ("cudagraph", ["cudagraphs"]),
        ("Dynamo", ["dynamo"]),
        ("nductor", ["inductor"]),  # a dropped first letter is still found when the rest is close
        ("xyz", []),
    ],
)
def test_suggestions_are_ranked_by_prefix_and_closeness(typed: str, expected: list[str]) -> None:
    from torch_otel.capture.torch_logs import _component_names, closest_names

    registry = current_registry()
    assert closest_names(typed, [*_component_names(registry), *sorted(registry.artifacts)]) == expected


def test_recompile_suggestion_names_recompiles_only() -> None:
    with pytest.raises(TorchLogsError) as caught:
        parse_torch_logs("recompile")
    hint = str(caught.value).split(" Valid components:")[0]
    assert "'recompiles'" in hint
    assert "async_compile" not in hint


def test_case_only_mistake_says_names_are_case_sensitive() -> None:
    with pytest.raises(TorchLogsError, match="case-sensitive"):
        parse_torch_logs("Dynamo")


def test_empty_value_is_an_error_although_torch_accepts_it() -> None:
    assert torch_outcome("") == ("ok", {}, frozenset())
    with pytest.raises(TorchLogsError, match=r"^TORCH_LOGS='': the value is empty") as caught:
        parse_torch_logs("")
    assert caught.value.item is None


@pytest.mark.parametrize("value", ["help", "+help"])
def test_help_lists_components_and_artifacts(value: str) -> None:
    with pytest.raises(TorchLogsError) as caught:
        parse_torch_logs(value)
    message = str(caught.value)
    assert message.startswith(f"TORCH_LOGS={value!r}: help requested")
    assert "\n" not in message
    assert all(name in message for name in [*SNAPSHOT.aliases, *SNAPSHOT.artifacts])
