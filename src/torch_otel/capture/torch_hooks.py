"""Hooks into torch's private compile machinery, detected by feature, and fans what they see out to listeners
(compile spans, metrics). Where the hooked functions are, how their signatures are checked and how they are
wrapped is ``torch_internals``' business. ``install`` and ``uninstall`` are exact inverses; no hook ever raises into
torch."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from torch_otel import catalog
from torch_otel.capture import torch_internals
from torch_otel.capture.torch_internals import (
    FEATURES,
    SIGNATURES,
    FunctionIdentity,
    call_arguments,
    resolve_attribute,
    supported_features,
)

__all__ = [
    "COMPILE_ROOTS",
    "FEATURES",
    "CompileListener",
    "FunctionIdentity",
    "Phase",
    "TorchHooks",
    "resolve_attribute",
    "supported_features",
]

_log = logging.getLogger("torch_otel")

# The phases a compile starts with (torch's chromium event names), and the names their spans and metrics go by:
# a frame compile (convert_frame._compile), a lazy backward compile (aot_autograd's runtime_wrappers) and the
# capture of a compiled-autograd graph (compiled_autograd.AutogradCompilerInstance.begin_capture/end_capture).
COMPILE_ROOTS = {
    "dynamo": catalog.SPAN_COMPILE,
    "entire_backward_compile": catalog.SPAN_BACKWARD_COMPILE,
    "compiled_autograd": catalog.SPAN_COMPILED_AUTOGRAD,
}


class Phase(NamedTuple):
    """A torch compile phase open on the current thread; depth 0 is the compile root. ``function`` is what a frame
    compile's root compiles (None below the root, and where torch's ``_compile`` could not be hooked)."""

    name: str
    start_ns: int
    compile_id: str | None
    depth: int
    function: FunctionIdentity | None = None

    @property
    def label(self) -> str:
        """Span name and metric label: the compile root's catalog name, or torch's own name below it."""
        return COMPILE_ROOTS[self.name] if self.depth == 0 else self.name


class CompileListener:
    """What the hooks tell each listener; every method does nothing unless a listener overrides it."""

    def phase_started(self, phase: Phase) -> None:
        pass

    def phase_ended(self, phase: Phase, end_ns: int) -> None:
        pass

    def compilation_metrics(self, metrics: Any) -> None:
        pass

    def recompiled(self, reasons: Sequence[str], function: FunctionIdentity | None) -> None:
        pass

    def graph_break(
        self, reason: str, filename: str | None, lineno: int | None, function: str | None, break_type: str | None
    ) -> None:
        pass

    def recompile_limit_hit(self, limit_type: str, limit: Any, raises: bool) -> None:
        pass


DYNAMO = "torch._dynamo"
# The arguments each hook reads, after ``self`` for a method (torch_internals.SIGNATURES checks they are there).
_GRAPH_BREAK_ARGS = SIGNATURES["graph breaks"][1:]


class _FrameCompile(NamedTuple):
    """A call of torch's ``convert_frame._compile`` in progress: what it compiles and whether ``fullgraph=True``."""

    function: FunctionIdentity
    one_graph: bool


class TorchHooks:
    """Patches torch's private functions with thin wrappers that call every listener, then torch."""

    def __init__(self, listeners: Sequence[CompileListener]) -> None:
        self._listeners = list(listeners)
        self._patches: list[torch_internals.Patch] = []
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
        """Wrap every hooked torch function this torch has; returns (and warns once about) the features it lacks."""
        if self._patches:
            return self.missing
        self._patches, self.missing = torch_internals.wrap_features(
            {
                "phase spans": self.record_chromium_event_internal,
                "compilation metrics": self.log_compilation_event,
                "recompile reasons": self.get_and_maybe_log_recompilation_reasons,
                "recompile limit": self.exceeds_recompile_limit,
                "graph breaks": self.log_graph_break,
                "frame compiles": self.compile_frame,
            }
        )
        if self.missing:
            _log.warning(
                "torch-otel: this torch lacks %s; compile spans will carry less",
                ", ".join(map(torch_internals.why_missing, self.missing)),
            )
        return self.missing

    def uninstall(self) -> None:
        self._wanted = False
        for patch in reversed(self._patches):
            torch_internals.unwrap(patch)
        self._patches = []

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

    def _frame_compiles(self) -> list[_FrameCompile | None]:
        frames = getattr(self._local, "frames", None)
        if frames is None:
            frames = self._local.frames = []
        return frames

    def _frame_compile(self) -> _FrameCompile | None:
        """The innermost ``_compile`` call open on this thread, if torch's ``_compile`` is hooked."""
        frames = self._frame_compiles()
        return frames[-1] if frames else None

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
                frame = self._frame_compile() if not stack and name == "dynamo" else None
                phase = Phase(
                    str(name),
                    int(event.get("ts", 0) * 1000),
                    None if compile_id in (None, "None") else str(compile_id),
                    len(stack),
                    frame.function if frame is not None else None,
                )
                stack.append(phase)
                self._notify("phase_started", phase)
            return
        index = next((i for i in range(len(stack) - 1, -1, -1) if stack[i].name == name), None)
        if index is None:
            return
        end_ns = int(event.get("ts", 0) * 1000)
        while len(stack) > index:
            self._notify("phase_ended", stack.pop(), end_ns)

    # -- the wrapt handlers: (wrapped, instance, args, kwargs), each named after the torch function it wraps --------
    def record_chromium_event_internal(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        try:
            self._phase_event(call_arguments(args, kwargs, ("event",))[0])
        except Exception:  # noqa: BLE001 - never raise into torch
            _log.debug("torch-otel phase tracking failed", exc_info=True)
        return wrapped(*args, **kwargs)

    def log_compilation_event(self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        self._notify("compilation_metrics", call_arguments(args, kwargs, ("metrics",))[0])
        return wrapped(*args, **kwargs)

    def get_and_maybe_log_recompilation_reasons(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        reasons = wrapped(*args, **kwargs)
        compiling = self._frame_compile()
        if compiling is not None:
            function: FunctionIdentity | None = compiling.function
        else:
            code = getattr(call_arguments(args, kwargs, SIGNATURES["recompile reasons"])[1], "f_code", None)
            function = torch_internals.code_identity(code) if code is not None else None
        self._notify("recompiled", list(reasons or []), function)
        return reasons

    def exceeds_recompile_limit(self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        result = wrapped(*args, **kwargs)
        try:
            exceeded, limit_type = result
        except (TypeError, ValueError):
            return result
        if exceeded:
            compiling = self._frame_compile()
            self._notify(
                "recompile_limit_hit",
                str(limit_type),
                torch_internals.recompile_limit(str(limit_type)),
                torch_internals.recompile_limit_raises(compiling is not None and compiling.one_graph),
            )
        return result

    def compile_frame(self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        """Remembers, for the phases and events of this ``_compile`` call, what it compiles (the code, or the
        module ``torch.compile(module)`` wrapped) and whether it was called with ``fullgraph=True``."""
        frames = self._frame_compiles()
        try:
            code, _, frame_locals, _, closure, _, one_graph = call_arguments(args, kwargs, SIGNATURES["frame compiles"])
            frames.append(
                _FrameCompile(torch_internals.compiled_function(code, frame_locals, closure), bool(one_graph))
            )
        except Exception:  # noqa: BLE001 - never raise into torch
            _log.debug("torch-otel could not read a frame compile's function", exc_info=True)
            frames.append(None)
        try:
            return wrapped(*args, **kwargs)
        finally:
            frames.pop()

    def log_graph_break(self, wrapped: Callable[..., Any], translator: Any, args: tuple, kwargs: dict) -> Any:
        code_options, reason, exc = call_arguments(args, kwargs, _GRAPH_BREAK_ARGS)
        if not getattr(exc, "logged", False):
            filename, lineno = torch_internals.graph_break_location(exc, code_options)
            function = getattr(getattr(translator, "f_code", None), "co_name", None)
            break_type = getattr(exc, "gb_type", None) or type(exc).__name__
            self._notify("graph_break", str(reason), filename, lineno, function, str(break_type))
        return wrapped(*args, **kwargs)
