"""Every environment variable torch-otel reads besides TORCH_LOGS and the standard OTEL_* ones.

Each ``TORCH_OTEL_*`` setting is declared here once, by ``declare``: its name, the ``Settings`` field it fills, its
type, default, limits and doc. Each constant is the variable's name (a ``str``, usable wherever a name is) carrying
that declaration, and everything else derives from it: ``Settings`` and ``Settings.from_env``
(``torch_otel.config.settings``), the settings section of `torch-otel doctor`, ``ALL``, and the README table (checked
by tests/test_settings_declaration.py).

Numbers are ASCII digits only (no sign, exponent, ``_`` or other scripts' digits), parsed by
``torch_otel.config.settings.parse_number``; an empty value means the default."""

from __future__ import annotations

from typing import Any, Literal, final

Kind = Literal["flag", "bytes", "count", "seconds", "seconds_or_off", "choice", "path"]
"""How a value is read: ``flag`` on/off (also true/false, 1/0, yes/no); ``bytes`` a whole number of bytes with an
optional KiB or MiB suffix; ``count`` a whole number; ``seconds`` a number of seconds, decimals allowed;
``seconds_or_off`` the same, or ``off`` (read as None); ``choice`` one of ``choices``; ``path`` a file path."""


def size_text(size: int, compact: bool = False) -> str:
    """A byte count as torch-otel writes it: ``64 MiB``, ``1 KiB``, ``256 bytes``; ``compact`` as a value is typed
    (``64MiB``, ``256``)."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{'' if compact else ' '}{unit}"
    return str(size) if compact else f"{size} bytes"


@final
class Variable(str):
    """A ``TORCH_OTEL_*`` variable's name, carrying its declaration (made by ``declare``).

    ``field``: the ``Settings`` field it sets (None: read where it is used, e.g. TORCH_OTEL_FILE by the export
    setup); ``kind``: its type (``Kind``); ``default``: the value when unset or empty; ``minimum``/``maximum``:
    inclusive limits of a number (``seconds`` must also be greater than 0); ``choices``: the values of a ``choice``;
    ``doc``: what it does. ``default_text`` and ``limits`` are how README.md and `torch-otel doctor` write them."""

    field: str | None
    kind: Kind
    default: Any
    minimum: float | None
    maximum: float | None
    choices: tuple[str, ...]
    doc: str
    default_text: str

    def __new__(
        cls,
        name: str,
        *,
        field: str | None,
        kind: Kind,
        default: Any,
        doc: str,
        minimum: float | None = None,
        maximum: float | None = None,
        choices: tuple[str, ...] = (),
        default_text: str | None = None,
    ) -> Variable:
        self = super().__new__(cls, name)
        declaration = {
            "field": field,
            "kind": kind,
            "default": default,
            "minimum": minimum,
            "maximum": maximum,
            "choices": choices,
            "doc": " ".join(doc.split()),
        }
        for key, value in declaration.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "default_text", self._value_text(default) if default_text is None else default_text)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{self} is declared once: its {name} cannot be changed")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return str, (str(self),)  # pickled (e.g. to a spawned process) as the plain name

    def _value_text(self, value: Any) -> str:
        if self.kind == "flag":
            return "on" if value else "off"
        if self.kind == "bytes":
            return size_text(value, compact=True)
        if self.kind in ("seconds", "seconds_or_off"):
            return "off" if value is None else f"{value:g}"
        return str(value)

    @property
    def limits(self) -> str:
        """What values are valid, in the words of the settings' error messages."""
        if self.kind == "flag":
            return "on or off"
        if self.kind == "bytes":
            return f"{size_text(int(self.minimum or 0))} to {size_text(int(self.maximum or 0))}"
        if self.kind == "count":
            return f"{int(self.minimum or 0)} to {int(self.maximum or 0)}"
        if self.kind == "seconds":
            return f"greater than 0 and at most {self.maximum:g}"
        if self.kind == "seconds_or_off":
            return f"greater than 0 and at most {self.maximum:g}, or off"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        return "a file path in an existing directory this user can write to"

    def show(self, value: Any) -> str:
        """A parsed value as `torch-otel doctor` shows it."""
        if self.kind == "bytes":
            return f"{value} bytes ({size_text(value)})" if value % 1024 == 0 else f"{value} bytes"
        if self.kind in ("seconds", "seconds_or_off") and value is not None:
            return f"{value:g} s"
        return self._value_text(value)


ALL: tuple[Variable, ...] = ()
"""Every declared variable, in declaration order (the order ``Settings.from_env`` reads and reports them in)."""


def declare(
    name: str,
    *,
    field: str | None,
    kind: Kind,
    default: Any,
    doc: str,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    default_text: str | None = None,
) -> Variable:
    """Declare one variable and add it to ``ALL``."""
    global ALL
    if name in ALL:
        raise ValueError(f"{name} is declared twice")
    variable = Variable(
        name,
        field=field,
        kind=kind,
        default=default,
        doc=doc,
        minimum=minimum,
        maximum=maximum,
        choices=choices,
        default_text=default_text,
    )
    ALL += (variable,)
    return variable


TORCH_OTEL_TORCH_STDERR = declare(
    "TORCH_OTEL_TORCH_STDERR",
    field="torch_stderr",
    kind="flag",
    default=True,
    doc="""``on`` (default) keeps torch's own stderr log output; ``off`` removes torch's stderr handlers while the
    bridge is active, so TORCH_LOGS output goes to OpenTelemetry only.""",
)

TORCH_OTEL_MAX_BODY_BYTES = declare(
    "TORCH_OTEL_MAX_BODY_BYTES",
    field="max_body_bytes",
    kind="bytes",
    default=64 << 10,
    minimum=256,
    maximum=64 << 20,
    doc="""Largest log record body exported, in bytes (suffixes KiB/MiB accepted). Longer bodies are cut and marked
    with ``pytorch.log.truncated`` and ``pytorch.log.original_size``.""",
)

TORCH_OTEL_MAX_BATCH_BYTES = declare(
    "TORCH_OTEL_MAX_BATCH_BYTES",
    field="max_batch_bytes",
    kind="bytes",
    default=3 << 20,
    minimum=64 << 10,
    maximum=256 << 20,
    doc="""Largest estimated size of one log export request, when torch-otel sets up the SDK (suffixes KiB/MiB
    accepted). The default keeps under the 4 MiB gRPC receive limit of collectors.""",
)

TORCH_OTEL_QUEUE_SIZE = declare(
    "TORCH_OTEL_QUEUE_SIZE",
    field="queue_size",
    kind="count",
    default=20_000,
    minimum=1,
    maximum=10_000_000,
    doc="""Records the bridge holds before it drops new ones (and counts them).""",
)

TORCH_OTEL_QUEUE_BYTES = declare(
    "TORCH_OTEL_QUEUE_BYTES",
    field="queue_bytes",
    kind="bytes",
    default=32 << 20,
    minimum=1 << 20,
    maximum=16 << 30,
    doc="""Memory the bridge's queue may hold, in bytes (suffixes KiB/MiB accepted), counting the records being
    exported. A record that would go over it is dropped and counted; bodies and exception texts are cut to
    TORCH_OTEL_MAX_BODY_BYTES when queued, so no record is ever held at full size.""",
)

TORCH_OTEL_SHUTDOWN_TIMEOUT = declare(
    "TORCH_OTEL_SHUTDOWN_TIMEOUT",
    field="shutdown_timeout",
    kind="seconds",
    default=5.0,
    maximum=600.0,
    doc="""Seconds the bridge may spend flushing at exit or on SIGTERM (decimals such as 0.5 accepted).""",
)

TORCH_OTEL_SPANS = declare(
    "TORCH_OTEL_SPANS",
    field="spans",
    kind="flag",
    default=True,
    doc="""``on`` (default): every frame compile becomes a ``torch.compile`` span with torch's phases as children,
    plus recompile and graph-break events. ``off`` exports log records only.""",
)

TORCH_OTEL_STRUCTURED = declare(
    "TORCH_OTEL_STRUCTURED",
    field="structured",
    kind="flag",
    default=False,
    doc="""``on`` forwards torch's structured trace (the TORCH_TRACE stream: graphs, guards, output code, compilation
    metrics) as log records named ``pytorch.trace.<kind>``. Off by default: torch then computes every payload.""",
)

TORCH_OTEL_METRICS = declare(
    "TORCH_OTEL_METRICS",
    field="metrics",
    kind="flag",
    default=True,
    doc="""``on`` (default): compile duration, recompiles, graph breaks, cache lookups and the bridge's health as
    OpenTelemetry metrics. ``off`` records none.""",
)

TORCH_OTEL_FILE = declare(
    "TORCH_OTEL_FILE",
    field=None,
    kind="path",
    default=None,
    default_text="./torch-otel-<date>-<time>-<pid>.jsonl",
    doc="""Where `torch-otel run` writes every signal (OTLP JSON Lines) when no OTLP endpoint or exporter is
    configured. Checked up front: not a directory, in an existing directory this user can write to (the file itself
    is created by the first process with something to export).""",
)

TORCH_OTEL_REDACT_PATHS = declare(
    "TORCH_OTEL_REDACT_PATHS",
    field="redact_paths",
    kind="choice",
    default="off",
    choices=("off", "hash", "remove"),
    doc="""``off`` (default), ``hash`` (a path's directory becomes a short SHA-256 prefix, the file name stays) or
    ``remove`` (only the file name stays). Covers the directories torch-otel knows (working directory, home,
    ``sys.path``, the directories of the files torch compiles or quotes) in absolute, relative and torch's shortened
    forms, and any other absolute path, in ``code.file.path`` and in every body, attribute, reason and stack
    trace.""",
)

TORCH_OTEL_REDACT_CODE = declare(
    "TORCH_OTEL_REDACT_CODE",
    field="redact_code",
    kind="flag",
    default=False,
    doc="""``on`` replaces the bodies of code-carrying artifacts (output_code, graph_code, bytecode, ...) and
    structured graph/code payloads with ``<code redacted: N bytes>``. Default ``off``.""",
)

TORCH_OTEL_FAST_PATH = declare(
    "TORCH_OTEL_FAST_PATH",
    field="fast_path",
    kind="flag",
    default=True,
    doc="""``on`` (default): when `torch-otel run` sets up OTLP log export, torch's records are encoded straight to
    OTLP protobuf in batches and sent by the SDK's OTLP exporter, skipping the SDK's per-record pipeline (about 6x
    less CPU per record). ``off`` routes them through the SDK LoggerProvider, so its processors see them.""",
)

TORCH_OTEL_SLOW_COMPILE = declare(
    "TORCH_OTEL_SLOW_COMPILE",
    field="slow_compile",
    kind="seconds_or_off",
    default=60.0,
    maximum=86_400.0,
    doc="""Seconds a compile may run before a WARNING record ``pytorch.compile.slow`` says so while it still runs
    (with the phase torch is in and the compiling thread's stack), and again at 2x, 4x, ... that time. ``off``:
    no such records, and no watchdog thread.""",
)
