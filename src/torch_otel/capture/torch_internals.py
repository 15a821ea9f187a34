"""Every contact torch-otel has with torch's private internals: the logging internals (registered loggers, torch's own
handlers, ``_init_logs``, the TORCH_TRACE logger), the compile id in ``torch._guards``' thread-local, and the compile
functions the hooks wrap. Each is detected by feature (presence and, where it can change, signature), so another
torch costs features, never an error. Nothing here imports torch until it is called."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import wrapt

from torch_otel import catalog

_warn = logging.getLogger("torch_otel").warning

# -- the compile functions the hooks wrap --------------------------------------------------------------------------

# Where each hooked function lives: feature -> (module, attribute path).
FEATURES: dict[str, tuple[str, str]] = {
    "phase spans": ("torch._dynamo.utils", "record_chromium_event_internal"),
    "compilation metrics": ("torch._dynamo.utils", "log_compilation_event"),
    "recompile reasons": ("torch._dynamo.convert_frame", "get_and_maybe_log_recompilation_reasons"),
    "recompile limit": ("torch._dynamo.convert_frame", "exceeds_recompile_limit"),
    "graph breaks": ("torch._dynamo.symbolic_convert", "InstructionTranslatorBase.log_graph_break"),
    "frame compiles": ("torch._dynamo.convert_frame", "_compile"),
}

ANY = "*"  # a parameter the hook passes through without reading: its name may differ between torch versions

# The leading parameters each hook reads, named as in torch 2.13 (torch passes some by keyword). A function whose
# signature does not start with exactly these is treated as missing: the hook would misread its arguments.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "phase spans": ("event",),
    "compilation metrics": ("metrics",),
    "recompile reasons": (ANY, "frame"),  # cache_entry in 2.4-2.12, cache_entries in 2.13
    "recompile limit": ("cache_size", "compile_id"),  # paired with its (exceeded, limit_type) result
    "graph breaks": ("self", "code_options", "reason", "exc"),
    "frame compiles": ("code", ANY, "locals", ANY, "closure", ANY, "one_graph"),
}

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def signature_fits(function: Any, expected: Sequence[str]) -> bool:
    """True if ``function``'s first parameters are positional and named ``expected`` (``ANY`` matches any name)."""
    if not expected:
        return True
    try:
        leading = list(inspect.signature(function).parameters.values())[: len(expected)]
    except (TypeError, ValueError):  # no signature to read: the hook cannot trust its arguments
        return False
    return len(leading) == len(expected) and all(
        parameter.kind in _POSITIONAL and name in (ANY, parameter.name)
        for parameter, name in zip(leading, expected, strict=True)
    )


def _signature_at(module_name: str, path: str) -> tuple[str, ...]:
    for feature, where in FEATURES.items():
        if where == (module_name, path):
            return SIGNATURES.get(feature, ())
    return ()


def resolve_attribute(
    module_name: str, path: str, signature: Sequence[str] | None = None
) -> tuple[Any, str, Any] | None:
    """(owner, attribute, current value) for a dotted attribute path in a module, or None if it is missing or its
    signature does not fit (by default, the one ``SIGNATURES`` gives the feature at that location)."""
    try:
        owner: Any = importlib.import_module(module_name)
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        value = getattr(owner, attribute)
    except Exception:  # noqa: BLE001 - a missing private API just means one feature fewer
        return None
    if not signature_fits(value, _signature_at(module_name, path) if signature is None else signature):
        return None
    return owner, attribute, value


def feature_function(feature: str) -> tuple[Any, str, Any] | None:
    """Where ``feature``'s function is, if this torch has it with the signature the hook reads."""
    resolved = resolve_attribute(*FEATURES[feature], SIGNATURES.get(feature, ()))
    return resolved if resolved is not None and callable(resolved[2]) else None


def supported_features() -> dict[str, bool]:
    return {feature: feature_function(feature) is not None for feature in FEATURES}


def why_missing(feature: str) -> str:
    """``feature``, plus why, for the one warning about what this torch lacks."""
    return f"{feature} (changed signature)" if resolve_attribute(*FEATURES[feature], ()) is not None else feature


def call_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], names: Sequence[str]) -> list[Any]:
    """The leading arguments of a call to a hooked function, whether torch passed them by position or by name."""
    return [args[index] if index < len(args) else kwargs.get(name) for index, name in enumerate(names)]


class Patch(NamedTuple):
    """A wrapped torch function: what its owner held before (``_INHERITED`` if the owner only inherited it)."""

    owner: Any
    attribute: str
    original: Any


_INHERITED = object()
Handler = Callable[[Callable[..., Any], Any, tuple, dict], Any]  # wrapt's (wrapped, instance, args, kwargs)


def wrap(owner: Any, attribute: str, handler: Handler) -> Patch:
    """Replace ``owner.attribute`` with a ``wrapt.FunctionWrapper`` that runs ``handler``; ``unwrap`` undoes it."""
    original = vars(owner).get(attribute, _INHERITED)
    wrapt.wrap_function_wrapper(owner, attribute, handler)
    return Patch(owner, attribute, original)


def unwrap(patch: Patch) -> None:
    """Put back exactly what ``wrap`` replaced (a method it found on a base class is deleted from the subclass)."""
    if patch.original is _INHERITED:
        delattr(patch.owner, patch.attribute)
    else:
        setattr(patch.owner, patch.attribute, patch.original)


def wrap_features(handlers: dict[str, Handler]) -> tuple[list[Patch], list[str]]:
    """Wrap each feature's function with its handler; returns the patches and the features this torch lacks."""
    patches: list[Patch] = []
    missing: list[str] = []
    for feature in FEATURES:
        resolved = feature_function(feature)
        if resolved is None:
            missing.append(feature)
            continue
        owner, attribute, _ = resolved
        try:
            patches.append(wrap(owner, attribute, handlers[feature]))
        except Exception:  # noqa: BLE001 - an attribute that cannot be replaced is a feature fewer
            missing.append(feature)
    return patches, missing


def graph_break_location(exc: Any, code_options: Any) -> tuple[str | None, int | None]:
    """The user's file and line a graph break happened at."""
    try:
        stack = getattr(exc, "real_stack", None)
        if stack is None:
            import torch._guards

            stack = torch._guards.TracingContext.extract_stack()
        if stack:
            return stack[-1].filename, stack[-1].lineno
        return code_options.get("co_filename"), code_options.get("co_firstlineno")
    except Exception:  # noqa: BLE001 - any failure means the feature is missing
        return None, None


class FunctionIdentity(NamedTuple):
    """What a compile compiled, as the user knows it: ``code.function.name``, ``code.file.path``,
    ``code.line.number`` (the line of its ``def``)."""

    function: str
    file: str
    line: int


def code_identity(code: Any) -> FunctionIdentity:
    """A code object's own name, file and first line."""
    return FunctionIdentity(str(code.co_name), str(code.co_filename), int(code.co_firstlineno or 0))


def _module_forward(module: Any, method: str = "forward") -> FunctionIdentity | None:
    """``<Class>.<method>`` at the line of its definition, for an ``nn.Module``; None for anything else."""
    nn_module = getattr(sys.modules.get("torch.nn"), "Module", None)
    if nn_module is None or not isinstance(module, nn_module):
        return None
    code = getattr(getattr(type(module), method, None), "__code__", None)
    name = f"{type(module).__name__}.{method}"
    return code_identity(code)._replace(function=name) if code is not None else None


def compiled_function(code: Any, frame_locals: Any, closure: Any) -> FunctionIdentity:
    """The function a frame compile is for, from ``torch._dynamo.convert_frame._compile``'s arguments.

    ``torch.compile(module)`` of a module torch's trace rules know (``nn.Sequential``, any ``torch.nn`` module)
    compiles the frame of ``torch._dynamo.external_utils.wrap_inline``'s ``inner``, whose closure cell ``fn`` holds
    the module (``OptimizedModule._initialize``): that is named ``<ModuleClass>.forward`` at its ``forward``'s
    definition. Any other module's compiled frame is its own ``forward``, named after the class of its ``self``."""
    try:
        names = code.co_freevars
        if "fn" in names and closure and code.co_filename == _external_utils_file():
            wrapped = closure[names.index("fn")].cell_contents
            identity = _module_forward(wrapped)
            if identity is None and hasattr(wrapped, "__code__"):
                identity = code_identity(wrapped.__code__)
            if identity is not None:
                return identity
        if code.co_argcount and isinstance(frame_locals, dict):
            receiver, name = frame_locals.get(code.co_varnames[0]), code.co_name
            if getattr(getattr(type(receiver), name, None), "__code__", None) is code:
                identity = _module_forward(receiver, name)
                if identity is not None:
                    return identity
    except Exception:  # noqa: BLE001, S110 - another torch's wrapper: the frame's own code names it
        pass
    return code_identity(code)


def _external_utils_file() -> str | None:
    return getattr(sys.modules.get("torch._dynamo.external_utils"), "__file__", None)


def recompile_limit_raises(one_graph: bool) -> bool:
    """Whether torch raises ``FailOnRecompileLimitHit`` to the caller when a frame hits its recompile limit, rather
    than running the frame without compiling: ``config.fail_on_recompile_limit_hit`` or ``fullgraph=True``
    (``one_graph``), as ``torch._dynamo.convert_frame._compile`` decides."""
    try:
        import torch._dynamo.config as dynamo_config

        return bool(one_graph or getattr(dynamo_config, "fail_on_recompile_limit_hit", False))
    except Exception:  # noqa: BLE001 - never raise into torch
        return bool(one_graph)


def compile_metrics_in_progress() -> bool:
    """Whether torch is collecting a compile's CompilationMetrics now (``torch._dynamo.utils.get_metrics_context``)
    and will hand them to the hooked ``log_compilation_event``: a backward compile's metrics are logged only after
    its ``entire_backward_compile`` phase has ended."""
    try:
        get_metrics_context = getattr(sys.modules.get("torch._dynamo.utils"), "get_metrics_context", None)
        if get_metrics_context is None or feature_function("compilation metrics") is None:
            return False
        return bool(get_metrics_context().in_progress())
    except Exception:  # noqa: BLE001 - never raise into torch
        return False


def distributed_rank() -> int | None:
    """This process's rank: ``torch.distributed.get_rank()`` once a process group is initialized, else the RANK
    variable torchrun sets (ASCII digits only), else None. Never imports torch.distributed."""
    distributed = sys.modules.get("torch.distributed")
    try:
        if distributed is not None and distributed.is_available() and distributed.is_initialized():
            return int(distributed.get_rank())
    except Exception:  # noqa: BLE001, S110 - never raise into torch: fall back to the variable
        pass
    raw = os.environ.get("RANK", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() else None


def recompile_limit(limit_type: str) -> Any:
    """The value of the dynamo config limit (``recompile_limit``, ...) a frame hit."""
    try:
        import torch._dynamo.config as dynamo_config

        return getattr(dynamo_config, limit_type, None)
    except Exception:  # noqa: BLE001 - never raise into torch
        return None


# -- logging internals ---------------------------------------------------------------------------------------------


def logging_internal() -> Any:
    import torch._logging._internal as internal

    return internal


def live_log_registry() -> dict[str, Any] | None:
    """What parsing TORCH_LOGS needs from torch's ``log_registry`` (importing torch if needed): ``aliases``,
    ``artifacts``, ``off_by_default``, ``descriptions`` and ``torch_version``; None without a usable torch."""
    internal = sys.modules.get("torch._logging._internal")
    if internal is None:
        try:
            import torch  # noqa: F401 - imported for its registry
        except Exception:  # noqa: BLE001, S110 - a bad TORCH_LOGS raises after the registry is filled
            # A bad TORCH_LOGS makes `import torch` raise only after the registry module has been fully
            # populated, so it is still usable.
            pass
        internal = sys.modules.get("torch._logging._internal")
    registry: Any = getattr(internal, "log_registry", None)
    if (
        "torch._logging._registrations" not in sys.modules
        or not getattr(registry, "log_alias_to_log_qnames", None)
        or not getattr(registry, "artifact_names", None)
    ):
        return None
    version = getattr(sys.modules.get("torch.version"), "__version__", None)
    return {
        "aliases": dict(registry.log_alias_to_log_qnames),
        "artifacts": frozenset(registry.artifact_names),
        "off_by_default": frozenset(registry.off_by_default_artifact_names),
        "descriptions": dict(registry.artifact_descriptions),
        "torch_version": None if version is None else str(version),
    }


def registered_loggers() -> tuple[list[str], dict[str, Any]]:
    """The qualified names of torch's registered loggers, sorted, and torch's alias -> qualified names map."""
    registry = logging_internal().log_registry
    return sorted(registry.get_log_qnames()), dict(registry.log_alias_to_log_qnames)


def structured_trace_logger() -> logging.Logger | None:
    """The TORCH_TRACE logger (``torch.__trace``), if this torch has one."""
    return getattr(logging_internal(), "trace_log", None)


def logger_artifact(logger_name: str) -> str | None:
    """The artifact a torch logger carries (``torch._dynamo.guards.__recompiles`` -> ``recompiles``), if any."""
    artifact = getattr(logging.getLogger(logger_name), "artifact_name", None)
    return artifact if isinstance(artifact, str) else catalog.artifact_of_logger(logger_name)


def is_torch_handler(handler: logging.Handler) -> bool:
    """True for a handler torch installed itself (and removes again on its next re-init)."""
    check = getattr(logging_internal(), "_is_torch_handler", None)
    return bool(check(handler)) if check is not None else False


def is_torch_stderr_handler(handler: logging.Handler) -> bool:
    """True for torch's own console handler (not its TORCH_LOGS_OUT file, not its TORCH_TRACE handler). It is a
    StreamHandler up to torch 2.14 and a plain Handler that follows ``sys.stderr`` (``_StderrHandler``) in 2.15."""
    return (
        is_torch_handler(handler)
        and not isinstance(handler, logging.FileHandler)
        and handler is not getattr(logging_internal(), "LOG_TRACE_HANDLER", None)
    )


def after_init_logs(callback: Callable[[], None]) -> list[Patch]:
    """Call ``callback`` each time torch re-applies its log settings (``set_logs``, a new registration). Returns the
    patches to ``unwrap``; none, with a warning, on a torch without ``_init_logs``."""
    import torch._logging as torch_logging

    internal = logging_internal()
    original = getattr(internal, "_init_logs", None)
    if original is None or not callable(original):
        _warn("torch-otel: this torch has no _init_logs; handlers are not re-attached after torch._logging.set_logs")
        return []

    def _init_logs(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        result = wrapped(*args, **kwargs)
        callback()
        return result

    return [
        wrap(owner, "_init_logs", _init_logs)
        for owner in (internal, torch_logging)
        if getattr(owner, "_init_logs", None) is original
    ]


def trace_id_filter() -> frozenset[str]:
    """The ids torch's own log handlers let through under TORCH_LOGS_TRACE_ID_FILTER, as torch compares them,
    brackets included (``{"[0/1]", "[1/0_1]"}``); empty when no filter is active. Read from torch itself: the set
    torch parsed once, at import, into ``DEFAULT_FORMATTER._trace_id_filter`` (torch/_logging/_internal.py,
    ``_default_formatter``). When TORCH_LOGS_FORMAT is set, DEFAULT_FORMATTER is a plain ``logging.Formatter`` and
    torch applies no filter, so neither does this."""
    internal = logging_internal()
    formatter = getattr(internal, "DEFAULT_FORMATTER", None)
    if not isinstance(formatter, getattr(internal, "TorchLogsFormatter", ())):
        return frozenset()
    ids = getattr(formatter, "_trace_id_filter", None)
    return frozenset(ids) if ids else frozenset()


def trace_id_filter_check(
    current_compile: Callable[[], Any], compile_id_text: Callable[[Any], str]
) -> Callable[[logging.LogRecord], bool] | None:
    """A predicate that is True for the records torch's DEFAULT_FORMATTER prints (non-empty) under the active
    ``trace_id_filter()``, or None when no filter is active. It mirrors ``TorchLogsFormatter.format``
    (torch/_logging/_internal.py): a record of an artifact with its own formatter
    (``log_registry.artifact_log_formatters``) always passes; any other passes only while a compile whose
    ``[trace id]`` is in the set runs on the calling thread, so records with no compile id never pass.
    ``current_compile`` and ``compile_id_text`` are ``compile_readers()``; call the predicate inside ``emit``."""
    ids = trace_id_filter()
    if not ids:
        return None
    registry = logging_internal().log_registry
    get_logger = logging.getLogger

    def passes(record: logging.LogRecord) -> bool:
        key = current_compile()
        if key is not None and f"[{compile_id_text(key)}]" in ids:
            return True
        own_formats = registry.artifact_log_formatters
        if not own_formats:
            return False
        return getattr(get_logger(record.name), "artifact_name", None) in own_formats

    return passes


# -- the compile id ------------------------------------------------------------------------------------------------


def _no_compile() -> None:
    return None


def compile_readers() -> tuple[Callable[[], Any], Callable[[Any], str]]:
    """How the handler reads the compile in progress (a cheap hashable key, on the logging thread) and how the
    export thread turns that key into torch's trace id text ("0/1", "0/1_1"), as tlparse shows it."""
    try:
        from torch._guards import (
            _TLS,
            CompileContext,
            CompileId,
            TraceId,
            compile_context,
        )
    except ImportError:
        _warn("torch-otel: this torch has no CompileContext trace ids; records will carry no pytorch.compile.id")
        return _no_compile, str

    def current_compile() -> Any:
        # CompileContext.try_get() reads the same thread-local, but getattr() with a default raises and catches an
        # AttributeError whenever no compile is running, which is most of the time.
        context = _TLS.__dict__.get("compile_context")
        if context is None or context.compile_id is None:
            return None
        return context.compile_id, context.attempt

    def text(key: Any) -> str:
        return str(TraceId(*key))

    try:
        with compile_context(CompileContext(CompileId(frame_id=0, frame_compile_id=0))):
            agrees = current_compile() == tuple(CompileContext.current_trace_id() or ())
        if agrees and current_compile() is None:
            return current_compile, text
    except Exception:  # noqa: BLE001, S110 - a different torch: use its public-ish reader below
        pass
    return CompileContext.current_trace_id, text
