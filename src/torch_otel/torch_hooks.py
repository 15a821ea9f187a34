"""Hooks into torch's private compile machinery, detected by feature, and fans what they see out to listeners
(compile spans, metrics). ``install`` and ``uninstall`` are exact inverses; no hook ever raises into torch."""

from __future__ import annotations

import logging
import sys
import threading
from types import CodeType
from typing import Any, Callable, NamedTuple, Protocol, Sequence

from torch_otel import catalog

_log = logging.getLogger("torch_otel")

# The phases a compile starts with, and the names their spans and metrics go by.
COMPILE_ROOTS = {"dynamo": catalog.SPAN_COMPILE, "entire_backward_compile": catalog.SPAN_BACKWARD_COMPILE}


class Phase(NamedTuple):
    """A torch compile phase open on the current thread; depth 0 is the compile root."""

    name: str
    start_ns: int
    compile_id: str | None
    depth: int

    @property
    def label(self) -> str:
        """Span name and metric label: the compile root's catalog name, or torch's own name below it."""
        return COMPILE_ROOTS[self.name] if self.depth == 0 else self.name


class CompileListener(Protocol):
    def phase_started(self, phase: Phase) -> None: ...
    def phase_ended(self, phase: Phase, end_ns: int) -> None: ...
    def compilation_metrics(self, metrics: Any) -> None: ...
    def recompiled(self, reasons: Sequence[str], code: CodeType | None) -> None: ...
    def graph_break(self, reason: str, filename: str | None, lineno: int | None,
                    function: str | None, break_type: str | None) -> None: ...
    def recompile_limit_hit(self, limit_type: str, limit: Any) -> None: ...


DYNAMO = "torch._dynamo"
FEATURES = {
    "phase spans": ("torch._dynamo.utils", "record_chromium_event_internal"),
    "compilation metrics": ("torch._dynamo.utils", "log_compilation_event"),
    "recompile reasons": ("torch._dynamo.convert_frame", "get_and_maybe_log_recompilation_reasons"),
    "recompile limit": ("torch._dynamo.convert_frame", "exceeds_recompile_limit"),
    "graph breaks": ("torch._dynamo.symbolic_convert", "InstructionTranslatorBase.log_graph_break"),
}


def resolve_attribute(module_name: str, path: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute, current value) for a dotted attribute path in a module, or None if it is missing."""
    try:
        import importlib

        owner: Any = importlib.import_module(module_name)
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        value = getattr(owner, attribute)
    except Exception:  # noqa: BLE001 - a missing private API just means one feature fewer
        return None
    return owner, attribute, value


def supported_features() -> dict[str, bool]:
    return {feature: resolve_attribute(*where) is not None for feature, where in FEATURES.items()}


class TorchHooks:
    """Patches torch's private functions with thin wrappers that call every listener, then torch."""

    def __init__(self, listeners: Sequence[CompileListener]) -> None:
        self._listeners = list(listeners)
        self._patches: list[tuple[Any, str, Any]] = []
        self._local = threading.local()
        self._wanted = False
        self.missing: list[str] = []

    def install_with_dynamo(self) -> None:
        """Install now if torch._dynamo is loaded, else once it is (wrapt's post-import hook). A program imports
        it with its first torch.compile; one that never compiles never pays the second or so it takes to load."""
        self._wanted = True
        if DYNAMO in sys.modules:
            self.install()
            return
        import wrapt.importer

        wrapt.importer.register_post_import_hook(self._install_if_wanted, DYNAMO)

    def _install_if_wanted(self, module: Any) -> None:
        if not self._wanted or self._patches:
            return
        try:
            self.install()
        except Exception as error:  # noqa: BLE001 - never raise into the program's import of torch._dynamo
            _log.warning("torch-otel: could not hook into torch._dynamo (%s); no compile spans or metrics", error)

    def install(self) -> list[str]:
        wrappers: dict[str, Callable[[Any], Callable[..., Any]]] = {
            "phase spans": self._wrap_chromium_event,
            "compilation metrics": self._wrap_compilation_event,
            "recompile reasons": self._wrap_recompile_reasons,
            "recompile limit": self._wrap_recompile_limit,
            "graph breaks": self._wrap_graph_break,
        }
        for feature, where in FEATURES.items():
            resolved = resolve_attribute(*where)
            if resolved is None or not callable(resolved[2]):
                self.missing.append(feature)
                continue
            owner, attribute, original = resolved
            wrapper = wrappers[feature](original)
            wrapper.__wrapped__ = original  # type: ignore[attr-defined]
            self._patches.append((owner, attribute, original))
            setattr(owner, attribute, wrapper)
        if self.missing:
            _log.warning("torch-otel: this torch lacks %s; compile spans will carry less", ", ".join(self.missing))
        return self.missing

    def uninstall(self) -> None:
        self._wanted = False
        for owner, attribute, original in reversed(self._patches):
            setattr(owner, attribute, original)
        self._patches.clear()

    def _notify(self, method: str, *args: Any) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, method)(*args)
            except Exception:  # noqa: BLE001 - never raise into torch
                _log.debug("torch-otel listener %s failed", method, exc_info=True)

    def _open_phases(self) -> list[Phase]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _phase_event(self, event: dict[str, Any]) -> None:
        """Tracks this thread's open phases. Only a compile root opens the first one (inductor's C++ builds on
        worker threads are no compile of their own); an end closes, innermost first, every phase above and
        including the innermost one of its name, and is ignored if no open phase has that name."""
        kind = event.get("ph")
        if kind != "B" and kind != "E":
            return
        name = event.get("name")
        stack = self._open_phases()
        if kind == "B":
            if stack or name in COMPILE_ROOTS:
                compile_id = (event.get("args") or {}).get("compile_id")
                phase = Phase(name, int(event.get("ts", 0) * 1000),
                              None if compile_id in (None, "None") else str(compile_id), len(stack))
                stack.append(phase)
                self._notify("phase_started", phase)
            return
        index = next((i for i in range(len(stack) - 1, -1, -1) if stack[i].name == name), None)
        if index is None:
            return
        end_ns = int(event.get("ts", 0) * 1000)
        while len(stack) > index:
            self._notify("phase_ended", stack.pop(), end_ns)

    def _wrap_chromium_event(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def record_chromium_event_internal(event: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            try:
                self._phase_event(event)
            except Exception:  # noqa: BLE001 - never raise into torch
                _log.debug("torch-otel phase tracking failed", exc_info=True)
            return original(event, *args, **kwargs)

        return record_chromium_event_internal

    def _wrap_compilation_event(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def log_compilation_event(metrics: Any, *args: Any, **kwargs: Any) -> Any:
            self._notify("compilation_metrics", metrics)
            return original(metrics, *args, **kwargs)

        return log_compilation_event

    def _wrap_recompile_reasons(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def get_and_maybe_log_recompilation_reasons(cache_entry: Any, frame: Any, *args: Any, **kwargs: Any) -> Any:
            reasons = original(cache_entry, frame, *args, **kwargs)
            self._notify("recompiled", list(reasons or []), getattr(frame, "f_code", None))
            return reasons

        return get_and_maybe_log_recompilation_reasons

    def _wrap_recompile_limit(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def exceeds_recompile_limit(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            try:
                exceeded, limit_type = result
            except (TypeError, ValueError):
                return result
            if exceeded:
                import torch._dynamo.config as dynamo_config

                self._notify("recompile_limit_hit", str(limit_type), getattr(dynamo_config, str(limit_type), None))
            return result

        return exceeds_recompile_limit

    def _wrap_graph_break(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def log_graph_break(translator: Any, code_options: Any, reason: str, exc: Any, *args: Any, **kwargs: Any) -> Any:
            if not getattr(exc, "logged", False):
                filename, lineno = _user_frame(exc, code_options)
                function = getattr(getattr(translator, "f_code", None), "co_name", None)
                break_type = getattr(exc, "gb_type", None) or type(exc).__name__
                self._notify("graph_break", str(reason), filename, lineno, function, str(break_type))
            return original(translator, code_options, reason, exc, *args, **kwargs)

        return log_graph_break


def _user_frame(exc: Any, code_options: Any) -> tuple[str | None, int | None]:
    try:
        stack = getattr(exc, "real_stack", None)
        if stack is None:
            import torch._guards

            stack = torch._guards.TracingContext.extract_stack()
        if stack:
            return stack[-1].filename, stack[-1].lineno
        return code_options.get("co_filename"), code_options.get("co_firstlineno")
    except Exception:  # noqa: BLE001
        return None, None
