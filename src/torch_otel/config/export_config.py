"""Reads and checks the standard OTEL_* exporter variables (and TORCH_OTEL_FILE) into an ``ExportPlan``: which
exporters (a list per signal, named as the SDK names them), protocol, endpoint and headers each signal gets. For
the built-in names (otlp, otlp_proto_grpc, otlp_proto_http, console, none, prometheus) it imports nothing of the
OpenTelemetry SDK, so `torch-otel run` and `doctor` check a setup in milliseconds, exactly as the exporters will
read it; any other name is looked up (and loaded, to check it) among the installed exporter entry points."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from torch_otel import environment_variables as env
from torch_otel.config.settings import (
    SettingsError,
    check_endpoint,
    parse_bool,
    parse_file_path,
    parse_number,
    parse_seconds,
)


def _writable_folder() -> str:
    """Where the embedded default goes when TORCH_OTEL_FILE is not set: the working directory, or the temporary
    folder where the working directory is read-only (a container's), so a default never stops a program."""
    return "." if os.access(".", os.W_OK) else tempfile.gettempdir()


def default_path(directory: str | os.PathLike[str] = ".") -> Path:
    """The embedded default's file for a run started now by this process: ``torch-otel-<date>-<time>-<pid>.jsonl``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(directory) / f"torch-otel-{stamp}-{os.getpid()}.jsonl"


SIGNALS = ("traces", "logs", "metrics")
PROTOCOLS = ("grpc", "http/protobuf")
EXPORTERS = ("otlp", "console", "none")
METRIC_EXPORTERS = EXPORTERS + ("prometheus",)
# The SDK's names (opentelemetry.sdk._configuration): "otlp" takes its protocol from
# OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL (grpc when unset), the other two fix it.
OTLP_ENTRY_POINTS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
OTLP_PROTOCOL_OF = {name: protocol for protocol, name in OTLP_ENTRY_POINTS.items()}
ENTRY_POINT_GROUPS = {signal: f"opentelemetry_{signal}_exporter" for signal in SIGNALS}


@dataclass(frozen=True)
class PlannedExporter:
    """One exporter of a signal: ``name`` as OTEL_<SIGNAL>_EXPORTER writes it, ``entry_point`` the SDK's name for
    what it builds (otlp_proto_grpc, otlp_proto_http, console, prometheus, any other installed exporter entry
    point, or "file" for torch-otel run's embedded default) and, for OTLP, the ``protocol``."""

    name: str
    entry_point: str
    protocol: str | None = None

    @property
    def kind(self) -> str:
        """otlp, console, prometheus, file, or entry_point (another installed exporter, built by entry point)."""
        if self.entry_point in OTLP_PROTOCOL_OF:
            return "otlp"
        return self.entry_point if self.entry_point in ("console", "prometheus", "file") else "entry_point"


@dataclass(frozen=True)
class ExportPlan:
    """What each signal is exported with, decided from the environment before anything is built: per signal, the
    exporters in the order named (none: an empty tuple) and the protocol OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL
    chooses for "otlp"."""

    exporters: dict[str, tuple[PlannedExporter, ...]]
    protocols: dict[str, str]
    file_path: Path | None = None

    def kinds(self, signal: str) -> tuple[str, ...]:
        return tuple(exporter.kind for exporter in self.exporters[signal])

    def otlp(self, signal: str) -> tuple[PlannedExporter, ...]:
        return tuple(exporter for exporter in self.exporters[signal] if exporter.kind == "otlp")


def nothing_configured(environ: Mapping[str, str]) -> bool:
    """No OTLP endpoint and no exporter chosen for any signal: torch-otel run's embedded default applies."""
    variables = ["OTEL_EXPORTER_OTLP_ENDPOINT"] + [
        name
        for signal in SIGNALS
        for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", f"OTEL_{signal.upper()}_EXPORTER")
    ]
    return not any(environ.get(name) for name in variables)


def sdk_disabled(environ: Mapping[str, str] | None = None) -> bool:
    raw = (os.environ if environ is None else environ).get("OTEL_SDK_DISABLED", "")
    return raw != "" and parse_bool("OTEL_SDK_DISABLED", raw)


# The header syntax of opentelemetry.util.re.parse_env_headers(liberal=True), which the OTLP exporters use: what it
# rejects it logs, whole header and secret included, and drops.
_OWS = r"[ \t]*"
_HEADER_KEY = r"[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+"
_STRICT_HEADER = re.compile(rf"{_OWS}{_HEADER_KEY}{_OWS}={_OWS}[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*{_OWS}")
_LIBERAL_HEADER = re.compile(rf"{_OWS}{_HEADER_KEY}{_OWS}={_OWS}[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*{_OWS}")
_HEADER_DELIMITER = re.compile(r"[ \t]*,[ \t]*")
_SAFE_KEY = re.compile(_HEADER_KEY)
_GRPC_KEY = re.compile(r"[0-9a-z_.-]+")  # gRPC metadata keys; values must be printable ASCII (both transports here)
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_HEADERS_VALID = (
    "comma-separated key=value pairs, e.g. api-key=SECRET,team=ml, with URL-encoded values: a value may hold "
    'printable ASCII and spaces except the characters " ; \\ and comma, written %22 %3B %5C %2C; decoded, a value '
    "must be printable ASCII for grpc (Latin-1 for http/protobuf), and a grpc key only lower-case letters, digits, "
    "- _ and ."
)
_HTTP_VALUE = re.compile(r"[\x20-\x7e\xa0-\xff]*")  # what http.client can send as a header value


def parse_headers(variable: str, raw: str, grpc: bool = False) -> dict[str, str]:
    """Parse ``raw`` exactly as the OTLP exporters do, raising ``SettingsError`` for anything they would drop (with a
    warning that prints the header) or their transport would refuse. The message shows header keys, never a value."""
    headers: dict[str, str] = {}
    shown: list[str] = []
    problem = None
    for index, item in enumerate(_HEADER_DELIMITER.split(raw), 1):
        if not item:
            continue
        stripped = item.strip()
        name = stripped.partition("=")[0].strip()
        label = f"{name.lower()}=***" if "=" in stripped and _SAFE_KEY.fullmatch(name) else f"<item {index} hidden>"
        shown.append(label)
        if problem is not None:
            continue
        if _STRICT_HEADER.fullmatch(stripped):
            key, value = (unquote(part).strip() for part in stripped.split("=", 1))
            key = key.lower()
        elif _LIBERAL_HEADER.fullmatch(stripped):
            key, value = (part.strip() for part in stripped.split("=", 1))
            key = key.lower()
        elif "=" not in stripped:
            problem = f"item {index} is not key=value"
            continue
        elif not _SAFE_KEY.fullmatch(name):
            problem = f"the key of item {index} has a character a header name cannot have"
            continue
        else:
            problem = f"the value of header {name.lower()!r} has a character that must be URL-encoded"
            continue
        if not key or (grpc and not _GRPC_KEY.fullmatch(key)) or not _SAFE_KEY.fullmatch(key):
            problem = f"the key of item {index} is not a valid {'gRPC metadata' if grpc else 'header'} name"
        elif not (_PRINTABLE_ASCII if grpc else _HTTP_VALUE).fullmatch(value):
            problem = (
                f"the value of header {key!r} decodes to a character the {'grpc' if grpc else 'http'} "
                "exporter cannot send"
            )
        else:
            headers[key] = value
    if problem is not None:
        raise SettingsError(variable, ",".join(shown), _HEADERS_VALID, problem)
    return headers


# Numeric OTEL_* variables the SDK reads (the BSP/BLRP/metric ones in milliseconds): (minimum, maximum, unit).
OTEL_NUMBERS = {
    "OTEL_BSP_SCHEDULE_DELAY": (1, 3_600_000, "milliseconds"),
    "OTEL_BSP_EXPORT_TIMEOUT": (1, 600_000, "milliseconds"),
    "OTEL_BSP_MAX_QUEUE_SIZE": (1, 10_000_000, "spans"),
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": (1, 10_000_000, "spans"),
    "OTEL_BLRP_SCHEDULE_DELAY": (1, 3_600_000, "milliseconds"),
    "OTEL_BLRP_EXPORT_TIMEOUT": (1, 600_000, "milliseconds"),
    "OTEL_BLRP_MAX_QUEUE_SIZE": (1, 10_000_000, "log records"),
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": (1, 10_000_000, "log records"),
    "OTEL_METRIC_EXPORT_INTERVAL": (1, 3_600_000, "milliseconds"),
    "OTEL_METRIC_EXPORT_TIMEOUT": (1, 600_000, "milliseconds"),
    "OTEL_EXPORTER_PROMETHEUS_PORT": (1, 65_535, "port"),
}
OTLP_TIMEOUT_MAX = 600.0  # seconds, OTEL_EXPORTER_OTLP_TIMEOUT and OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT
TLS_FILES = ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE")


def parse_otel_number(variable: str, raw: str) -> int:
    """One numeric OTEL_* value (see ``OTEL_NUMBERS``), strictly: the SDK reads an empty value as a bad number."""
    low, high, unit = OTEL_NUMBERS[variable]
    valid = f"a whole number of {unit} from {low} to {high}" + (
        " (set but empty is not unset; unset it instead)" if raw == "" else ""
    )
    return int(parse_number(variable, raw, low, high, valid))


def parse_otlp_timeout(variable: str, raw: str) -> float:
    valid = (
        f"a number of seconds greater than 0 and at most {OTLP_TIMEOUT_MAX:g} (e.g. 10 or 2.5; the Python "
        "exporters read seconds, not milliseconds)"
    )
    return parse_seconds(variable, raw, OTLP_TIMEOUT_MAX, valid)


def _check_tls_file(variable: str, path: str) -> None:
    if not os.path.isfile(path):
        problem = "it is a directory" if os.path.isdir(path) else "no such file"
        raise SettingsError(variable, path, "the path of an existing, readable PEM file", problem)
    if not os.access(path, os.R_OK):
        raise SettingsError(variable, path, "the path of an existing, readable PEM file", "cannot read it")


def _readers(
    environ: Mapping[str, str],
    exporters: Mapping[str, tuple[PlannedExporter, ...]],
    protocols: Mapping[str, str],
    suffix: str,
) -> dict[str, set[str]]:
    """OTEL_EXPORTER_OTLP_[<SIGNAL>_]<suffix> -> the protocols of the OTLP signals that read it."""
    readers: dict[str, set[str]] = {}
    for signal in SIGNALS:
        for exporter in exporters[signal]:
            if exporter.kind == "otlp":
                own = f"OTEL_EXPORTER_OTLP_{signal.upper()}_{suffix}"
                variable = own if environ.get(own) else f"OTEL_EXPORTER_OTLP_{suffix}"
                readers.setdefault(variable, set()).add(exporter.protocol or protocols[signal])
    return readers


def export_plan(environ: Mapping[str, str] | None = None, problems: list[SettingsError] | None = None) -> ExportPlan:
    """Validate the OTEL_* exporter settings and pick an exporter and protocol per signal. Raises the first
    ``SettingsError``; with ``problems`` (doctor), every problem found after the exporters and protocols are
    known is appended there instead, so all of them are reported."""
    environ = os.environ if environ is None else environ
    exporters, protocols = {}, {}
    default_protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    for signal in SIGNALS:
        protocol_variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
        raw_protocol = environ.get(protocol_variable) or default_protocol
        protocol = raw_protocol.strip()  # as the SDK reads it
        exporters[signal] = exporter_names(signal, environ.get(f"OTEL_{signal.upper()}_EXPORTER"), protocol)
        if protocol not in PROTOCOLS:
            shown = protocol_variable if environ.get(protocol_variable) else "OTEL_EXPORTER_OTLP_PROTOCOL"
            raise SettingsError(shown, raw_protocol, "grpc or http/protobuf")
        protocols[signal] = protocol

    def check(validate: Callable[..., Any], *args: Any) -> Any:
        try:
            return validate(*args)
        except SettingsError as error:
            if problems is None:
                raise
            problems.append(error)
            return None

    endpoint_readers = _readers(environ, exporters, protocols, "ENDPOINT")
    header_readers = _readers(environ, exporters, protocols, "HEADERS")
    for signal in ("",) + tuple(f"{s.upper()}_" for s in SIGNALS):
        prefix = f"OTEL_EXPORTER_OTLP_{signal}"
        if environ.get(prefix + "ENDPOINT"):
            check(
                check_endpoint,
                prefix + "ENDPOINT",
                environ[prefix + "ENDPOINT"],
                "grpc" in endpoint_readers.get(prefix + "ENDPOINT", ()),
            )
        if environ.get(prefix + "HEADERS"):
            check(
                parse_headers,
                prefix + "HEADERS",
                environ[prefix + "HEADERS"],
                "grpc" in header_readers.get(prefix + "HEADERS", ()),
            )
        if prefix + "TIMEOUT" in environ:
            check(parse_otlp_timeout, prefix + "TIMEOUT", environ[prefix + "TIMEOUT"])
        for suffix in TLS_FILES:
            if environ.get(prefix + suffix):
                check(_check_tls_file, prefix + suffix, environ[prefix + suffix])
    numbers = {
        variable: check(parse_otel_number, variable, environ[variable])
        for variable in OTEL_NUMBERS
        if variable in environ
    }
    batch = numbers.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or 512  # the SDK's defaults
    queue = numbers.get("OTEL_BSP_MAX_QUEUE_SIZE") or 2048
    if batch > queue and environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"):
        check(
            _fail,
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            str(batch),
            f"at most {queue}, the span queue (OTEL_BSP_MAX_QUEUE_SIZE; the SDK refuses a larger batch)",
        )
    elif batch > queue:
        check(
            _fail,
            "OTEL_BSP_MAX_QUEUE_SIZE",
            str(queue),
            f"at least {batch}, the SDK's default span batch (or set OTEL_BSP_MAX_EXPORT_BATCH_SIZE lower)",
        )
    if nothing_configured(environ):
        raw_file = environ.get(env.TORCH_OTEL_FILE) or str(default_path(_writable_folder()))
        file_path = check(parse_file_path, env.TORCH_OTEL_FILE, raw_file) or Path(raw_file)
        return ExportPlan({signal: (PlannedExporter("file", "file"),) for signal in SIGNALS}, protocols, file_path)
    return ExportPlan(exporters, protocols)


def _fail(variable: str, raw: str, valid: str) -> None:
    raise SettingsError(variable, raw, valid)


# ------------------------------------------------------------------ exporter names


def exporter_names(signal: str, raw: str | None, protocol: str) -> tuple[PlannedExporter, ...]:
    """OTEL_<SIGNAL>_EXPORTER resolved as the SDK's ``_get_exporter_names``/``_get_exporter_entry_point`` resolve
    it: unset means otlp (torch-otel's default, as opentelemetry-distro's); "none" alone (any case) means none;
    otherwise a comma-separated list of exporter entry-point names, each stripped, "otlp" becoming
    otlp_proto_grpc or otlp_proto_http by ``protocol`` and the other two keeping theirs. Names resolving to the
    same entry point are one exporter, as in the SDK (it keys them by name). Raises ``SettingsError`` for a name
    the SDK could not load. Re-implemented rather than called: the SDK's helpers are private and read
    ``os.environ`` only, while a plan is made from any mapping (doctor's); tests/test_exporter_resolution.py
    checks that both agree."""
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    raw = raw or "otlp"
    if raw.strip().lower() == "none":
        return ()
    planned: dict[str, PlannedExporter] = {}
    for index, item in enumerate(raw.split(","), 1):
        name = item.strip()
        if name in ("otlp", *OTLP_PROTOCOL_OF):
            entry_point = OTLP_ENTRY_POINTS.get(protocol, "otlp_proto_grpc") if name == "otlp" else name
            exporter = PlannedExporter(name, entry_point, OTLP_PROTOCOL_OF[entry_point])
        elif name == "console":
            exporter = PlannedExporter(name, name)
        elif name == "prometheus" and signal == "metrics":
            if importlib.util.find_spec("opentelemetry.exporter.prometheus") is None:
                raise SettingsError(
                    variable,
                    raw.strip(),
                    "a metrics exporter whose package is installed; for "
                    "prometheus, pip install 'torch-otel[prometheus]' (opentelemetry-exporter-"
                    "prometheus)",
                )
            exporter = PlannedExporter(name, name)
        else:
            problem = _unusable_name(signal, name, index, raw)
            if problem is not None:
                raise SettingsError(variable, raw.strip(), _valid_names(signal), problem)
            exporter = PlannedExporter(name, name)
        planned.setdefault(exporter.entry_point, exporter)
    return tuple(planned.values())


def _unusable_name(signal: str, name: str, index: int, raw: str) -> str | None:
    """Why ``name`` (item ``index``) cannot be an exporter of ``signal``, or None if an installed entry point that
    loads and has the right type."""
    if not name:
        return f"item {index} is empty"
    if name.lower() == "none":
        return "none turns the signal off and must stand alone"
    if name not in installed_entry_points(signal):
        return f"no {signal} exporter named {name!r} is installed"
    try:
        load_exporter_class(signal, name)
    except Exception as error:  # noqa: BLE001 - whatever the entry point raises, the SDK could not use it
        return f"the {name!r} exporter is installed but cannot be loaded: {type(error).__name__}: " + " ".join(
            str(error).split()
        )
    return None


def installed_entry_points(signal: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The installed exporters of ``signal`` by name: the entry-point group the SDK loads them from."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUPS[signal]):
        found.setdefault(entry_point.name, entry_point)
    return found


def _valid_names(signal: str) -> str:
    builtin = [
        f"otlp (over OTEL_EXPORTER_OTLP_[{signal.upper()}_]PROTOCOL)",
        "otlp_proto_grpc",
        "otlp_proto_http",
        "console",
    ] + (["prometheus"] if signal == "metrics" else [])
    others = sorted(
        name
        for name in installed_entry_points(signal)
        if name not in ("otlp", "console", "prometheus", *OTLP_PROTOCOL_OF)
    )
    return f"none alone, or a comma-separated list of these {signal} exporters: {', '.join(builtin + others)}"


def load_exporter_class(signal: str, name: str) -> type:
    """The class the installed entry point ``name`` of ``signal`` names, type-checked as the SDK checks it (a
    metrics entry may be a push exporter or a pull reader). Uses the SDK's ``_import_exporters`` when this SDK has
    it (it is private, so it is detected, not relied on); otherwise loads the entry point the same way."""
    import_exporters: Any = None
    try:
        from opentelemetry.sdk._configuration import _import_exporters as import_exporters
    except ImportError:
        pass
    if import_exporters is not None:
        try:
            found = import_exporters(*[[name] if s == signal else [] for s in ("traces", "metrics", "logs")])
        except TypeError:  # a changed private signature: fall back below
            pass
        else:
            return found[("traces", "metrics", "logs").index(signal)][name]
    entry_point = installed_entry_points(signal)[name]
    loaded = entry_point.load()
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
    from opentelemetry.sdk.trace.export import SpanExporter

    expected: tuple[type, ...] = {"traces": (SpanExporter,), "logs": (LogRecordExporter,)}.get(
        signal, (MetricExporter, MetricReader)
    )
    if not (isinstance(loaded, type) and issubclass(loaded, expected)):
        raise TypeError(f"{name} is not a {signal.rstrip('s')} exporter")
    return loaded


# The API's stand-ins for a provider nobody set: records given to them are dropped. By name, so the check needs no
# import and holds for every supported OpenTelemetry release.
_NO_SDK_PROVIDERS = {
    "ProxyTracerProvider",
    "NoOpTracerProvider",
    "ProxyLoggerProvider",
    "NoOpLoggerProvider",
    "_ProxyMeterProvider",
    "NoOpMeterProvider",
}


def has_no_sdk(provider: object) -> bool:
    """True for the OpenTelemetry API's no-op or proxy provider (no SDK provider was set or given)."""
    return type(provider).__name__ in _NO_SDK_PROVIDERS and type(provider).__module__.startswith(
        ("opentelemetry.trace", "opentelemetry._logs", "opentelemetry.metrics")
    )
