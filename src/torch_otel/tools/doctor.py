"""`torch-otel doctor`: explain what torch-otel will export with the current environment, and check it.

The report has five sections: TORCH_LOGS (what each item enables, as OpenTelemetry scopes and event names, and
what torch's TORCH_LOGS_OUT, TORCH_LOGS_FORMAT and TORCH_LOGS_TRACE_ID_FILTER do when set), torch-otel's own
TORCH_OTEL_* settings, the OTEL_* exporter settings (resolved per signal the way the OTLP exporters resolve them), a
live endpoint check (an empty OTLP export request per signal, sent to every distinct endpoint concurrently within
``--timeout``), and which span/metric hooks the installed torch offers (detected by attribute and signature, not by
version: ``torch_internals.supported_features``). ``--list`` prints every TORCH_LOGS component and artifact instead
of the report.

Exit codes (the worst finding wins):

* 2 - a bad setting: TORCH_LOGS, a TORCH_OTEL_* variable or an OTEL_* exporter variable torch-otel or the OTLP
  exporters would reject, or a TORCH_LOGS_OUT or TORCH_LOGS_FORMAT that makes ``import torch`` raise (also bad
  command-line options). Settings are validated even when OTEL_SDK_DISABLED is true, so they do not break once it
  is turned off.
* 1 - every setting is valid but an endpoint did not accept the export request: connection refused, timeout,
  TLS failure, name resolution failure, or an answer that is not success (HTTP 4xx/5xx, gRPC UNIMPLEMENTED,
  UNAUTHENTICATED, ...). Telemetry would be lost, so this is a failure, not a warning. A section the doctor
  itself could not complete (an unexpected error) also yields 1.
* 0 - everything is fine (warnings such as an unknown TORCH_OTEL_* variable, torch not being importable or
  missing torch hooks do not change the exit code). ``--list`` and ``--help`` also return 0. The Result line says
  "everything looks fine" only without warnings, and never when torch is not importable (nothing to export then).

Hints with the likely fix: each bad TORCH_LOGS item (not only the first, where torch stops) with the closest
names; an unknown TORCH_OTEL_* name with the closest setting; OTLP/HTTP sent to port 4317 or OTLP/gRPC to 4318
(the other protocol's port); the resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) every signal will carry.

The endpoint check is skipped with ``--no-check``, when the exporter settings are invalid, when OTEL_SDK_DISABLED
is true, or when no signal uses the ``otlp`` exporter. The HTTP check connects directly (no proxy variables).

Secrets are never printed: header values, URL userinfo and credential-like query values are shown as ``***``,
and every line written is scrubbed of them as a last line of defence.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import importlib
import importlib.metadata
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TextIO
from urllib.parse import unquote, urlsplit, urlunsplit

from torch_otel import catalog
from torch_otel import environment_variables as env
from torch_otel.capture.torch_import import import_torch_with_logs_held
from torch_otel.capture.torch_internals import FEATURES, resolve_attribute, supported_features, why_missing
from torch_otel.capture.torch_logs import (
    Registry,
    TorchLogsError,
    TorchLogsSettings,
    current_registry,
    parse_torch_logs,
)
from torch_otel.config.export_config import (
    SIGNALS,
    ExportPlan,
    export_plan,
    installed_entry_points,
    parse_otlp_timeout,
    sdk_disabled,
)
from torch_otel.config.settings import (
    MASK,
    SettingsError,
    mask_url,
    parse_seconds,
    parse_variable,
)
from torch_otel.config.settings import SENSITIVE_NAME as _SENSITIVE_NAME
from torch_otel.tools.cli import unknown_settings

__all__ = ["EXIT_BAD_SETTING", "EXIT_OK", "EXIT_UNREACHABLE", "main", "mask_url"]

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_BAD_SETTING = 2
DEFAULT_TIMEOUT = 3.0
MAX_TIMEOUT = 600.0
TORCH_LOGS = "TORCH_LOGS"

_CHECK_ORDER = ("logs", "traces", "metrics")
_GRPC_DEFAULT = "http://localhost:4317"
_HTTP_DEFAULT = "http://localhost:4318/"
_MIN_SCRUB_LENGTH = 3
_COMPRESSIONS = {"grpc": ("gzip",), "http/protobuf": ("gzip", "deflate", "none")}
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "grpc_proxy")
_GRPC_SERVICES = {
    "logs": ("/opentelemetry.proto.collector.logs.v1.LogsService/Export", "logs", "ExportLogsService"),
    "traces": ("/opentelemetry.proto.collector.trace.v1.TraceService/Export", "trace", "ExportTraceService"),
    "metrics": ("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", "metrics", "ExportMetricsService"),
}
# What torch-otel reads the compile id of a log record from (not a hook, so not in FEATURES).
_COMPILE_IDS = ("compile ids on log records", "torch._guards", "CompileContext.current_trace_id")
# torch's own siblings of TORCH_LOGS (torch/_logging/_internal.py), read when torch is imported.
TORCH_LOGS_OUT = "TORCH_LOGS_OUT"
TORCH_LOGS_FORMAT = "TORCH_LOGS_FORMAT"
TORCH_LOGS_TRACE_ID_FILTER = "TORCH_LOGS_TRACE_ID_FILTER"


# ------------------------------------------------------------------ report


class _Report:
    """Writes the report (scrubbed of secrets) and counts what decides the exit code."""

    def __init__(self, out: TextIO, secrets: Sequence[str]) -> None:
        self._out = out
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SCRUB_LENGTH}, key=len, reverse=True)
        self._sections = 0
        self.bad_settings = 0
        self.failed_checks = 0
        self.warnings = 0
        self.caveat: str | None = None  # what stops "everything looks fine" although the exit code is 0

    def write(self, text: str) -> None:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        self._out.write(text + "\n")

    def heading(self, title: str) -> None:
        if self._sections:
            self.write("")
        self._sections += 1
        self.write(f"{title}\n{'-' * len(title)}")

    def info(self, text: str, indent: int = 1) -> None:
        self.write("  " * indent + text)

    def ok(self, text: str) -> None:
        self.info(f"[ok] {text}")

    def warning(self, text: str) -> None:
        self.warnings += 1
        self.info(f"[warning] {text}")

    def bad_setting(self, text: str) -> None:
        self.bad_settings += 1
        self.info(f"[error] {text}")

    def failed_check(self, text: str) -> None:
        self.failed_checks += 1
        self.info(f"[error] {text}")

    def exit_code(self) -> int:
        if self.bad_settings:
            return EXIT_BAD_SETTING
        return EXIT_UNREACHABLE if self.failed_checks else EXIT_OK

    def summary(self) -> int:
        code = self.exit_code()
        self.heading("Result")
        problems = []
        if self.bad_settings:
            problems.append(f"{self.bad_settings} bad setting(s)")
        if self.failed_checks:
            problems.append(f"{self.failed_checks} failed check(s)")
        if problems:
            verdict = "; ".join(problems) + ("; and torch is not importable" if self.caveat else "")
        elif self.caveat:
            verdict = self.caveat
        elif self.warnings:
            verdict = f"the settings are valid; {self.warnings} warning(s) above"
        else:
            verdict = "everything looks fine"
        self.info(f"{verdict} (exit code {code})")
        return code


# ----------------------------------------------------------------- secrets


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        found += [userinfo, *userinfo.split(":", 1)]
    for item in parts.query.split("&"):
        key, sep, value = item.partition("=")
        if sep and _SENSITIVE_NAME.search(key):
            found.append(value)
    return found + [unquote(s) for s in found]


def _collect_secrets(environ: Mapping[str, str]) -> list[str]:
    """Every value the report must never show: header values and URL credentials of all OTEL_* variables."""
    secrets: list[str] = []
    for name, value in environ.items():
        if not name.startswith("OTEL_"):
            continue
        if name.endswith("HEADERS"):
            for _key, raw in _split_headers(value):
                secrets += [raw, unquote(raw)]
            # an item that is not key=value may be a bare secret (e.g. "Bearer abc"): never shown either
            secrets += [item.strip() for item in value.split(",") if "=" not in item]
        elif "://" in value:
            secrets += _url_secrets(value)
    return secrets


def _split_headers(raw: str) -> list[tuple[str, str]]:
    """``k=v,k2=v2`` as (lower-cased, URL-decoded key, raw value) pairs; malformed items are skipped."""
    pairs = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs.append((unquote(key.strip()).lower(), value.strip()))
    return pairs


def _masked_headers(raw: str) -> str:
    return ", ".join(f"{key}={MASK}" for key, _ in _split_headers(raw)) or "(none)"


def _masked_error(error: SettingsError) -> str:
    """A SettingsError message with any URL credentials in the offending value masked."""
    return str(error).replace(repr(error.value), repr(mask_url(error.value)))


# ---------------------------------------------------------------- torch


def _import_torch() -> tuple[Any | None, str | None]:
    """Import torch without letting it apply (or choke on) TORCH_LOGS; returns (torch, why not importable)."""
    if "torch" in sys.modules:
        return sys.modules["torch"], None
    try:
        return import_torch_with_logs_held(), None
    except Exception as error:  # noqa: BLE001 - any import failure is reported, never raised
        return None, f"{type(error).__name__}: {' '.join(str(error).split())}"


def _torch_section(report: _Report, torch: Any | None, import_error: str | None) -> None:
    report.heading("torch")
    if torch is None:
        report.warning(f"torch is not importable ({import_error}); torch-otel cannot bridge anything")
        report.info(f"install torch into this Python ({sys.executable}), e.g. pip install torch", indent=2)
        report.caveat = (
            "the settings are valid, but torch is not importable here, so there is nothing to export: "
            "install torch into this environment"
        )
        return
    report.info(f"version: {getattr(torch, '__version__', 'unknown')}")
    purpose, module_name, path = _COMPILE_IDS
    _feature_line(report, purpose, f"{module_name}.{path}", resolve_attribute(module_name, path) is not None)
    for feature, supported in supported_features().items():
        module_name, path = FEATURES[feature]
        _feature_line(report, feature if supported else why_missing(feature), f"{module_name}.{path}", supported)


def _feature_line(report: _Report, purpose: str, name: str, supported: bool) -> None:
    if supported:
        report.info(f"supported  {purpose}: {name}")
    else:
        report.warning(f"missing    {purpose}: {name} (this feature is skipped on this torch)")


# ------------------------------------------------------------ TORCH_LOGS


def _level_name(level: int) -> str:
    return logging.getLevelName(level)


def _registry_note(registry: Registry, torch: Any | None) -> str:
    source = "live registry" if torch is not None else "registry snapshot"
    return f"checked against torch {registry.torch_version or '?'}'s {source}"


def _torch_logs_section(report: _Report, environ: Mapping[str, str], registry: Registry, torch: Any | None) -> None:
    report.heading("TORCH_LOGS")
    _describe_torch_logs(report, environ, registry, torch)
    _describe_logs_out(report, environ)
    _describe_logs_format(report, environ)
    _describe_trace_id_filter(report, environ)


def _describe_torch_logs(report: _Report, environ: Mapping[str, str], registry: Registry, torch: Any | None) -> None:
    raw = environ.get(TORCH_LOGS)
    if raw is None:
        report.info("not set: torch logs WARNING and above only; torch-otel still exports those records")
        report.info("(and, later, compile spans). Set e.g. TORCH_LOGS=recompiles,graph_breaks for more.")
        return
    report.info(f"value: {raw!r} ({_registry_note(registry, torch)})")
    try:
        parsed = parse_torch_logs(raw, registry)
    except TorchLogsError as error:
        _report_bad_torch_logs(report, raw, error, registry)
        return
    _describe_components(report, parsed, registry)
    _describe_artifacts(report, parsed, registry)
    _debug_note(report, parsed, registry)


_VALID_TAIL = " Valid components:"


def _report_bad_torch_logs(report: _Report, raw: str, error: TorchLogsError, registry: Registry) -> None:
    """The parser (like torch) stops at the first bad item; here each item is also parsed on its own, so every bad
    one is listed (each with its suggestion), then once what is valid."""
    bad = []
    for index, piece in enumerate(raw.split(",")):
        item = piece.lstrip() if index else piece  # whitespace may follow a comma
        if not item.strip():
            continue
        try:
            parse_torch_logs(item, registry)
        except TorchLogsError as item_error:
            message = str(item_error)
            head = f"TORCH_LOGS={item!r}: "
            reason = message[len(head) :] if message.startswith(head) else message
            bad.append(reason.split(_VALID_TAIL, 1)[0])
    if len(bad) < 2:
        report.bad_setting(str(error))
        return
    for reason in bad:
        report.bad_setting(f"TORCH_LOGS={raw!r}: {reason}")
    tail = str(error).partition(_VALID_TAIL)[2]
    if tail:
        report.info(f"({len(bad)} bad items; torch stops at the first.{_VALID_TAIL}{tail})", indent=2)


def _describe_logs_out(report: _Report, environ: Mapping[str, str]) -> None:
    """TORCH_LOGS_OUT: torch adds a ``logging.FileHandler`` on it to every registered logger (``_init_logs``), which
    opens the file at once, so a path that cannot be opened makes ``import torch`` raise."""
    path = environ.get(TORCH_LOGS_OUT)
    if path is None:
        return
    where = os.path.abspath(path)
    if os.path.isdir(where):
        report.bad_setting(
            f"{TORCH_LOGS_OUT}={path!r} names a directory ({where}): torch opens it as a file, so `import torch` fails"
        )
    elif not os.path.isdir(os.path.dirname(where)):
        report.bad_setting(f"{TORCH_LOGS_OUT}={path!r}: its folder does not exist, so `import torch` fails")
    else:
        report.info(
            f"{TORCH_LOGS_OUT}={path!r}: torch also appends its log lines to this file; torch-otel exports the same "
            f"records either way (TORCH_OTEL_TORCH_STDERR=off removes torch's console output, never this file)"
        )


def _describe_logs_format(report: _Report, environ: Mapping[str, str]) -> None:
    """TORCH_LOGS_FORMAT: torch builds ``logging.Formatter(value)`` at import (``short`` and ``basic`` mean
    ``logging.BASIC_FORMAT``; torch/_logging/_internal.py, ``_default_formatter``), which raises on a bad format."""
    fmt = environ.get(TORCH_LOGS_FORMAT)
    if fmt is None:
        return
    try:
        logging.Formatter(logging.BASIC_FORMAT if fmt in ("short", "basic") else fmt)
    except (ValueError, TypeError) as error:
        report.bad_setting(
            f"{TORCH_LOGS_FORMAT}={fmt!r}: torch rejects it at import ({error}), so `import torch` fails"
        )
        return
    report.info(
        f"{TORCH_LOGS_FORMAT}={fmt!r}: torch formats its own log lines with it; exported records carry the message "
        f"alone, with the other fields as attributes"
    )


def _trace_id_filter_items(raw: str) -> list[str]:
    """The ids in a TORCH_LOGS_TRACE_ID_FILTER value, in order and without repeats, as torch reads them: split on
    commas, each stripped, empty ones ignored (torch/_logging/_internal.py, ``_default_formatter``)."""
    return list(dict.fromkeys(item.strip() for item in raw.split(",") if item.strip()))


_COMPILE_ID = re.compile(r"!?\d+(/[\d-]+)*(_\d+)?")  # torch's CompileId as printed: 0/1, 0/0_1, !0/0/1


def _trace_id_filter_problem(item: str) -> str | None:
    """Why a TORCH_LOGS_TRACE_ID_FILTER item can match no record, or None if it can: torch compares each item with
    the bracketed id it prints (``[0/1]``)."""
    bare = item.strip("[]")
    if _COMPILE_ID.fullmatch(bare):
        return None if item == f"[{bare}]" else f"torch compares bracketed ids: did you mean '[{bare}]'?"
    return "not a compile id, which torch prints as [0/1], [0/0_1] or [!0/0/1]"


def _describe_trace_id_filter(report: _Report, environ: Mapping[str, str]) -> None:
    raw = environ.get(TORCH_LOGS_TRACE_ID_FILTER)
    if raw is None:
        return
    ids = _trace_id_filter_items(raw)
    problems = {item: problem for item in ids if (problem := _trace_id_filter_problem(item)) is not None}
    matching = [item for item in ids if item not in problems]
    if ids and not matching and TORCH_LOGS_FORMAT not in environ:
        reasons = "; ".join(f"{item!r}: {problem}" for item, problem in problems.items())
        report.warning(
            f"{TORCH_LOGS_TRACE_ID_FILTER}={raw!r} matches no record, so torch prints none of its log lines and none "
            f"is exported (torch-otel's compile spans, metrics and events are not filtered). {reasons}"
        )
        return
    if not ids:
        effect = "no ids, so no filter: every record is exported"
    elif TORCH_LOGS_FORMAT in environ:
        effect = f"ignored because {TORCH_LOGS_FORMAT} is set (torch filters only with its own format)"
    else:
        effect = (
            f"only records of {', '.join(matching)} are exported (torch prints only those too), and none logged "
            f"outside a compile; torch-otel's compile spans, metrics and events are not filtered"
        )
    report.info(f"{TORCH_LOGS_TRACE_ID_FILTER}={raw!r}: {effect}")
    for item, problem in problems.items():
        report.warning(f"{TORCH_LOGS_TRACE_ID_FILTER} item {item!r} matches no record: {problem}")


def _describe_components(report: _Report, parsed: TorchLogsSettings, registry: Registry) -> None:
    for name, level in sorted(parsed.components.items()):
        scopes = ", ".join(registry.aliases[name])
        report.info(f"component {name}: level {_level_name(level)} -> scopes {scopes}")
    registered = {qname for qnames in registry.aliases.values() for qname in qnames}
    for name, level in sorted(parsed.modules.items()):
        scope = catalog.owning_qname(name, registered)
        how = f"scope {scope}" if scope else f"scope {name} (torch registers it as a new component)"
        report.info(f"module {name} (and its submodules): level {_level_name(level)} -> {how}")


def _describe_artifacts(report: _Report, parsed: TorchLogsSettings, registry: Registry) -> None:
    for name in sorted(parsed.artifacts):
        line = f"artifact {name} -> event {catalog.artifact_event_name(name)}"
        if name in registry.off_by_default:
            line += " [off by default: exported only because TORCH_LOGS names it]"
        report.info(line)


def _debug_note(report: _Report, parsed: TorchLogsSettings, registry: Registry) -> None:
    debug = sorted(name for name, level in {**parsed.components, **parsed.modules}.items() if level == logging.DEBUG)
    if not debug:
        return
    prefixed = ", ".join(f"+{name}" for name in debug)
    missing = sorted(registry.off_by_default - parsed.artifacts)
    report.info(
        f"note: {prefixed} sets DEBUG, which also exports the on-by-default artifacts torch logs under those "
        f"loggers, but NOT the {len(registry.off_by_default)} off-by-default artifacts; name them to get them."
    )
    if missing:
        report.info(f"off by default and not named: {', '.join(missing)}", indent=2)


# -------------------------------------------------------------- settings


def _settings_section(report: _Report, environ: Mapping[str, str]) -> None:
    """Every declared TORCH_OTEL_* variable: its value, whether it is the default, and what is valid."""
    report.heading("torch-otel settings")
    for variable in env.ALL:
        raw = environ.get(variable)
        default = variable.default_text if variable.field is None else variable.show(variable.default)
        if not raw:
            shown, status = default, "default"
        elif variable.field is None:  # read where it is used (TORCH_OTEL_FILE: checked in the Exporter section)
            shown, status = repr(raw), f"set, default {default}"
        else:
            try:
                value = parse_variable(variable, raw)
            except SettingsError as error:
                report.bad_setting(str(error))
                continue
            shown = variable.show(value)
            same = value == variable.default
            status = f"set to {raw!r}, " + ("same as the default" if same else f"default {default}")
        report.info(f"{variable} = {shown} ({status}) - valid: {variable.limits}")
    for note in unknown_settings(environ):
        report.warning(note)


# -------------------------------------------------------------- exporter


@dataclass(frozen=True)
class _Target:
    """Where and how one signal's OTLP exporter will connect."""

    protocol: str
    url: str
    source: str
    tls: bool
    tls_reason: str
    certificate: str | None
    client_key: str | None
    client_certificate: str | None
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    @property
    def connection(self) -> tuple[object, ...]:
        """What makes two targets the same endpoint: gRPC exporters only use the URL's host:port."""
        address = urlsplit(self.url).netloc if self.protocol == "grpc" else self.url
        return (
            self.protocol,
            address,
            self.tls,
            self.certificate,
            self.client_key,
            self.client_certificate,
            self.headers,
        )


def _first_set(environ: Mapping[str, str], *variables: str) -> tuple[str | None, str | None]:
    for variable in variables:
        if environ.get(variable):
            return environ[variable], variable
    return None, None


def _resolve_target(signal: str, protocol: str, environ: Mapping[str, str]) -> _Target:
    prefix = f"OTEL_EXPORTER_OTLP_{signal.upper()}_"
    headers_raw, _ = _first_set(environ, prefix + "HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
    headers = tuple((key, unquote(value)) for key, value in _split_headers(headers_raw or ""))
    if protocol == "grpc":
        return _grpc_target(prefix, environ, headers)
    return _http_target(signal, prefix, environ, headers)


def _grpc_target(prefix: str, environ: Mapping[str, str], headers: tuple[tuple[str, str], ...]) -> _Target:
    url, source = _first_set(environ, prefix + "ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    url, source = (url, source or "") if url else (_GRPC_DEFAULT, "default")
    scheme = urlsplit(url).scheme
    tls, reason = scheme != "http", f"{scheme} scheme"
    if scheme != "https":
        for variable in (prefix + "INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"):
            if environ.get(variable) is not None:
                tls, reason = environ[variable].lower() != "true", f"{variable}={environ[variable]}"
                break
    cert_prefix = prefix if environ.get(prefix + "CERTIFICATE") else "OTEL_EXPORTER_OTLP_"
    return _Target(
        "grpc",
        url,
        source,
        tls,
        reason,
        environ.get(cert_prefix + "CERTIFICATE") or None,
        environ.get(cert_prefix + "CLIENT_KEY") or None,
        environ.get(cert_prefix + "CLIENT_CERTIFICATE") or None,
        headers,
    )


def _http_target(signal: str, prefix: str, environ: Mapping[str, str], headers: tuple[tuple[str, str], ...]) -> _Target:
    url = environ.get(prefix + "ENDPOINT")
    source = prefix + "ENDPOINT"
    if not url:
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        source = f"OTEL_EXPORTER_OTLP_ENDPOINT + /v1/{signal}" if base else f"default + /v1/{signal}"
        url = f"{(base or _HTTP_DEFAULT).removesuffix('/')}/v1/{signal}"
    scheme = urlsplit(url).scheme
    return _Target(
        "http/protobuf",
        url,
        source,
        scheme == "https",
        f"{scheme} scheme",
        _first_set(environ, prefix + "CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")[0],
        _first_set(environ, prefix + "CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")[0],
        _first_set(environ, prefix + "CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")[0],
        headers,
    )


def _service_name(environ: Mapping[str, str]) -> tuple[str, str]:
    if environ.get("OTEL_SERVICE_NAME"):
        return environ["OTEL_SERVICE_NAME"], "OTEL_SERVICE_NAME"
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip() == "service.name" and value.strip():
            return unquote(value.strip()), "OTEL_RESOURCE_ATTRIBUTES"
    return "unknown_service", "SDK default; set OTEL_SERVICE_NAME"


def _resource_attributes(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """OTEL_RESOURCE_ATTRIBUTES as the SDK reads it (``OTELResourceDetector``): comma-separated ``key=value``
    items, both stripped, the value URL-decoded, a later key replacing an earlier one; returns the attributes and
    the items the SDK drops (no ``=``)."""
    attributes: dict[str, str] = {}
    dropped = []
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if not sep:
            if item.strip():
                dropped.append(item.strip())
            continue
        attributes[key.strip()] = unquote(value.strip())
    return attributes, dropped


def _describe_resource(report: _Report, environ: Mapping[str, str]) -> None:
    """The resource every span, log record and metric will carry, and where each part comes from."""
    report.info("resource (carried by every span, log record and metric):")
    name, source = _service_name(environ)
    report.info(f"service.name: {name} ({source})", indent=2)
    attributes, dropped = _resource_attributes(environ)
    if environ.get("OTEL_SERVICE_NAME") and attributes.get("service.name", name) != name:
        overridden = attributes["service.name"]
        report.info(f"(OTEL_SERVICE_NAME overrides service.name={overridden} in OTEL_RESOURCE_ATTRIBUTES)", 3)
    others = [f"{key}={value}" for key, value in attributes.items() if key != "service.name"]
    if others:
        report.info(f"{', '.join(others)} (OTEL_RESOURCE_ATTRIBUTES)", indent=2)
    elif "OTEL_RESOURCE_ATTRIBUTES" not in environ:
        report.info("OTEL_RESOURCE_ATTRIBUTES: not set (e.g. deployment.environment.name=prod,team=ml adds those)", 2)
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        version = "(torch not installed)"
    ranks = [f"{key}={environ[variable]}" for variable, key in _RANK_ATTRIBUTES if environ.get(variable)]
    added = ", ".join([f"{catalog.RESOURCE_TORCH_VERSION}={version}", *ranks])
    source = "torch-otel" if ranks else "torch-otel; the pytorch.distributed.* ranks too under torchrun"
    report.info(f"{added} ({source}), telemetry.sdk.* (the SDK)", indent=2)
    for item in dropped:
        report.warning(f"OTEL_RESOURCE_ATTRIBUTES item {item!r} is not key=value: the SDK drops it")


_RANK_ATTRIBUTES = (
    ("RANK", catalog.RESOURCE_RANK),
    ("LOCAL_RANK", catalog.RESOURCE_LOCAL_RANK),
    ("WORLD_SIZE", catalog.RESOURCE_WORLD_SIZE),
)
_GRPC_PORT, _HTTP_PORT = 4317, 4318


def _protocol_port_hints(report: _Report, targets: list[tuple[str, _Target]], environ: Mapping[str, str]) -> None:
    """A warning, with the fix, for OTLP/HTTP sent to 4317 (the OTLP/gRPC port) or OTLP/gRPC sent to 4318 (the
    OTLP/HTTP port): the collector answers such a request with an error, or not at all."""
    hints: dict[str, list[str]] = {}
    for signal, target in targets:
        try:
            port = urlsplit(target.url).port
        except ValueError:
            continue
        wrong = {"http/protobuf": _GRPC_PORT, "grpc": _HTTP_PORT}[target.protocol]
        if port != wrong:
            continue
        prefix = f"OTEL_EXPORTER_OTLP_{signal.upper()}_"
        protocol_variable = _first_set(environ, prefix + "PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")[1]
        endpoint_variable = _first_set(environ, prefix + "ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")[1]
        other, right = ("grpc", _HTTP_PORT) if target.protocol == "http/protobuf" else ("http/protobuf", _GRPC_PORT)
        kind = {"http/protobuf": "OTLP/HTTP", "grpc": "OTLP/gRPC"}
        exporter_variable = f"OTEL_{signal.upper()}_EXPORTER"
        if "otlp_proto_" in environ.get(exporter_variable, ""):  # the exporter's name fixes the protocol
            switch = f"name otlp_proto_{other.partition('/')[0]} in {exporter_variable}"
        else:
            switch = f"set {protocol_variable or 'OTEL_EXPORTER_OTLP_PROTOCOL'}={other}"
        endpoint = f"in {endpoint_variable}" if endpoint_variable else ""
        hint = (
            f"{target.protocol} is sent to port {port}, which is the {kind[other]} port by convention, so a collector "
            f"there will not accept it. Fix: {switch}, or use port {right} (the {kind[target.protocol]} port) "
            f"{endpoint}".rstrip()
        )
        hints.setdefault(hint, []).append(signal)
    for hint, signals in hints.items():
        report.warning(f"{', '.join(signals)}: {hint}")


def _exporter_section(report: _Report, environ: Mapping[str, str]) -> list[tuple[str, _Target]] | str:
    """Describe the exporters; returns the OTLP targets to check, or why there is nothing to check."""
    report.heading("Exporter")
    try:
        disabled = sdk_disabled(environ)
    except SettingsError as error:
        report.bad_setting(str(error))
        disabled = False
    raw_disabled = environ.get("OTEL_SDK_DISABLED")
    report.info(f"OTEL_SDK_DISABLED: {raw_disabled!r}" if raw_disabled else "OTEL_SDK_DISABLED: not set (SDK enabled)")
    if disabled:
        report.warning("the SDK is disabled: torch-otel does nothing (no bridge, no providers, nothing exported)")
    _describe_resource(report, environ)
    problems: list[SettingsError] = []
    try:
        plan = export_plan(environ, problems)
    except SettingsError as error:
        report.bad_setting(_masked_error(error))
        return "the exporter settings are invalid"
    for problem in problems:  # the same checks that stop `torch-otel run`
        report.bad_setting(_masked_error(problem))
    if plan.file_path is not None:
        report.info(
            "no OTLP endpoint or exporter is configured: `torch-otel run` writes traces, logs and metrics "
            f"to {plan.file_path} (OTLP JSON Lines; read it with `torch-otel report`). Set "
            "OTEL_EXPORTER_OTLP_ENDPOINT to send to a collector."
        )
        return "torch-otel run writes to a local file"
    targets = _describe_signals(report, plan, environ, built=not problems)
    _protocol_port_hints(report, targets, environ)
    _describe_transport_settings(report, environ, plan)
    if problems:
        return "the exporter settings are invalid"
    if disabled:
        return "OTEL_SDK_DISABLED is true"
    return targets


def _describe_signals(
    report: _Report, plan: ExportPlan, environ: Mapping[str, str], built: bool = True
) -> list[tuple[str, _Target]]:
    """One line per exporter of each signal, in the order `run` builds them; returns the OTLP targets. With
    ``built``, each OTLP exporter is also constructed, as `run` constructs it, and asked where it will send."""
    targets = []
    unbuildable: dict[str, list[str]] = {}  # the error -> the signals whose exporter it stops
    width = max(map(len, SIGNALS)) + 1
    for signal in SIGNALS:
        label = f"{signal}:".ljust(width)
        if not plan.exporters[signal]:
            report.info(f"{label} none (not exported)")
        for planned in plan.exporters[signal]:
            if planned.kind == "console":
                report.info(f"{label} console (printed to stdout, nothing sent)")
            elif planned.kind == "prometheus":
                host = environ.get("OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost"
                port = environ.get("OTEL_EXPORTER_PROMETHEUS_PORT") or "9464"
                report.info(f"{label} prometheus (scraped at http://{host}:{port}/metrics, nothing sent)")
            elif planned.kind == "entry_point":
                entry_point = installed_entry_points(signal).get(planned.entry_point)
                value = entry_point.value if entry_point is not None else "?"
                report.info(
                    f"{label} {planned.name} (installed exporter {value}, built with no arguments; "
                    "its settings are not checked here)"
                )
            else:
                target = _resolve_target(signal, planned.protocol or "grpc", environ)
                if built:
                    target, error = _as_built(signal, target, environ)
                    if error is not None:
                        unbuildable.setdefault(
                            f"the {planned.name} exporter cannot be built with these settings: {error}", []
                        ).append(signal)
                        continue
                targets.append((signal, target))
                security = f"TLS ({target.tls_reason})" if target.tls else f"plaintext ({target.tls_reason})"
                report.info(
                    f"{label} {planned.name} over {target.protocol} -> {mask_url(target.url)} "
                    f"[{target.source}], {security}"
                )
    for error, signals in unbuildable.items():
        report.bad_setting(f"{', '.join(signals)}: {error}")
    return targets


_ENVIRON_LOCK = threading.Lock()


def _build_otlp_exporter(signal: str, protocol: str, environ: Mapping[str, str]) -> Any:
    """The OTLP exporter `run` would build for ``signal``, built with ``environ``'s OTEL_* variables in place of
    this process's (restored afterwards) since the exporters read ``os.environ``."""
    from torch_otel.exporters.sdk_setup import _otlp_exporter

    if environ is os.environ:
        return _otlp_exporter(signal, protocol)
    with _ENVIRON_LOCK:
        saved = {key: value for key, value in os.environ.items() if key.startswith("OTEL_")}
        try:
            for key in saved:
                del os.environ[key]
            os.environ.update({k: v for k, v in environ.items() if k.startswith("OTEL_") and isinstance(v, str)})
            return _otlp_exporter(signal, protocol)
        finally:
            for key in [key for key in os.environ if key.startswith("OTEL_")]:
                del os.environ[key]
            os.environ.update(saved)


def _as_built(signal: str, target: _Target, environ: Mapping[str, str]) -> tuple[_Target, str | None]:
    """Build the exporter `run` will build and take its endpoint (and, for gRPC, its plaintext/TLS choice) over
    the doctor's own reading, so the check goes where the exporter will send; or why it cannot be built at all
    (a bad setting). The endpoint is private to the exporters, so it is read only if present."""
    try:
        exporter = _build_otlp_exporter(signal, target.protocol, environ)
    except Exception as error:  # noqa: BLE001 - whatever stops the exporter stops `run` too
        return target, f"{type(error).__name__}: {' '.join(str(error).split())}"
    try:
        endpoint = getattr(exporter, "_endpoint", None)
        insecure = getattr(exporter, "_insecure", None)
    finally:
        try:
            exporter.shutdown()
        except Exception:  # noqa: BLE001, S110 - closing a channel that never connected
            pass
    if not isinstance(endpoint, str):
        return target, None
    if target.protocol == "grpc":
        if endpoint != urlsplit(target.url).netloc:
            target = _replace_url(target, f"{'http' if insecure else 'https'}://{endpoint}", "as the exporter reads it")
        if isinstance(insecure, bool) and insecure == target.tls:
            target = _replace_tls(target, not insecure, "as the exporter reads it")
    elif endpoint != target.url:
        target = _replace_url(target, endpoint, "as the exporter reads it")
    return target, None


def _replace_url(target: _Target, url: str, source: str) -> _Target:
    from dataclasses import replace

    return replace(target, url=url, source=source)


def _replace_tls(target: _Target, tls: bool, reason: str) -> _Target:
    from dataclasses import replace

    return replace(target, tls=tls, tls_reason=reason)


def _describe_transport_settings(report: _Report, environ: Mapping[str, str], plan: ExportPlan) -> None:
    scopes = [("OTEL_EXPORTER_OTLP_", SIGNALS)] + [(f"OTEL_EXPORTER_OTLP_{s.upper()}_", (s,)) for s in SIGNALS]
    for prefix, signals in scopes:
        if environ.get(prefix + "HEADERS"):
            report.info(f"{prefix}HEADERS: {_masked_headers(environ[prefix + 'HEADERS'])} (values hidden)")
        for suffix in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"):
            path = environ.get(prefix + suffix)
            if path and os.path.isfile(path):  # a missing one is reported by export_plan's check
                report.info(f"{prefix}{suffix}: {path} (file found)")
        if environ.get(prefix + "INSECURE") is not None:
            report.info(f"{prefix}INSECURE: {environ[prefix + 'INSECURE']!r} (gRPC only; ignored for https:// URLs)")
        _check_timeout(report, prefix + "TIMEOUT", environ.get(prefix + "TIMEOUT"))
        protocols = {e.protocol or plan.protocols[s] for s in signals for e in plan.otlp(s)}
        _check_compression(report, prefix + "COMPRESSION", environ.get(prefix + "COMPRESSION"), protocols)


def _check_timeout(report: _Report, variable: str, raw: str | None) -> None:
    if raw is None:
        return
    try:
        report.info(f"{variable}: {parse_otlp_timeout(variable, raw):g} s")
    except SettingsError:
        pass  # reported by export_plan's check


def _check_compression(report: _Report, variable: str, raw: str | None, protocols: set[str]) -> None:
    if raw is None:
        return
    value = raw.strip().lower()
    bad = sorted(p for p in protocols if value not in _COMPRESSIONS[p])
    if bad:
        valid = " or ".join(f"{', '.join(_COMPRESSIONS[p])} for {p}" for p in bad)
        report.bad_setting(_message(variable, raw, valid))
    else:
        report.info(f"{variable}: {raw}")


def _message(variable: str, raw: str, valid: str) -> str:
    return str(SettingsError(variable, raw, valid))


# -------------------------------------------------------- endpoint check


@dataclass
class _Outcome:
    signals: list[str]
    answered: bool
    ok: bool
    text: str


def _millis(start: float) -> str:
    return f"{(time.monotonic() - start) * 1000:.0f} ms"


def _check_section(report: _Report, targets: list[tuple[str, _Target]] | str, timeout: float, skip: bool) -> None:
    report.heading("Endpoint check")
    if skip:
        report.info("skipped (--no-check)")
        return
    if isinstance(targets, str):
        report.info(f"skipped: {targets}")
        return
    if not targets:
        report.info("skipped: no signal is exported over OTLP")
        return
    groups: dict[tuple[object, ...], list[tuple[str, _Target]]] = {}
    for signal in _CHECK_ORDER:
        for own, target in targets:
            if own == signal:
                groups.setdefault(target.connection, []).append((signal, target))
    report.info(f"sending an empty OTLP export request per signal (timeout {timeout:g} s)")
    for group, outcomes in _run_concurrently(list(groups.values()), timeout):
        target = group[0][1]
        where = f"{target.protocol} {mask_url(target.url)}"
        for outcome in outcomes:
            line = f"{', '.join(outcome.signals)} -> {where}: {outcome.text}"
            if outcome.ok:
                report.ok(line)
            else:
                report.failed_check(line)
    _proxy_note(report)


def _proxy_note(report: _Report) -> None:
    proxies = [name for name in _PROXY_VARIABLES if os.environ.get(name)]
    if proxies:
        report.info(f"note: {', '.join(proxies)} set; the HTTP check connects directly, the exporter may use the proxy")


def _run_concurrently(
    groups: list[list[tuple[str, _Target]]], timeout: float
) -> list[tuple[list[tuple[str, _Target]], list[_Outcome]]]:
    """Check every group (the signals sharing one connection) in its own daemon thread, so the whole check takes
    at most about ``timeout``."""
    results: dict[int, list[_Outcome]] = {}

    def work(index: int, group: list[tuple[str, _Target]]) -> None:
        try:
            results[index] = _check_group(group, timeout)
        except Exception as error:  # noqa: BLE001 - reported as a failed check, never raised
            signals = [signal for signal, _ in group]
            results[index] = [_Outcome(signals, False, False, f"check failed: {type(error).__name__}: {error}")]

    threads = [
        threading.Thread(target=work, args=(index, group), daemon=True, name="torch-otel-doctor")
        for index, group in enumerate(groups)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 1.0
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = [_Outcome([s for s, _ in g], False, False, f"no answer within {timeout:g} s (timeout)") for g in groups]
    return [(g, results.get(i, [late[i]])) for i, g in enumerate(groups)]


def _check_group(group: list[tuple[str, _Target]], timeout: float) -> list[_Outcome]:
    """Check the first signal; if the endpoint answered, check the rest of the signals sharing it."""
    deadline = time.monotonic() + timeout
    (signal, target), rest = group[0], group[1:]
    check = _check_grpc if target.protocol == "grpc" else _check_http
    first = check(target, signal, timeout)
    if not first.answered:
        return [_Outcome([s for s, _ in group], False, False, first.text)]
    outcomes = [first]
    for signal, target in rest:
        outcomes.append(check(target, signal, max(0.05, deadline - time.monotonic())))
    return outcomes


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as file:
        return file.read()


def _check_grpc(target: _Target, signal: str, timeout: float) -> _Outcome:
    import grpc

    method, package, prefix = _GRPC_SERVICES[signal]
    module = importlib.import_module(f"opentelemetry.proto.collector.{package}.v1.{package}_service_pb2")
    request_type, response_type = getattr(module, prefix + "Request"), getattr(module, prefix + "Response")
    address = urlsplit(target.url).netloc
    try:
        credentials = (
            grpc.ssl_channel_credentials(
                _read(target.certificate), _read(target.client_key), _read(target.client_certificate)
            )
            if target.tls
            else None
        )
    except OSError as error:
        return _Outcome([signal], False, False, f"cannot read TLS files: {error}")
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    start = time.monotonic()
    try:
        call = channel.unary_unary(
            method, request_serializer=request_type.SerializeToString, response_deserializer=response_type.FromString
        )
        call(request_type(), timeout=timeout, metadata=target.headers or None, wait_for_ready=False)
        return _Outcome([signal], True, True, f"reachable (answered in {_millis(start)})")
    except grpc.RpcError as error:
        return _grpc_failure(signal, error, method, timeout, start)
    finally:
        channel.close()


def _grpc_failure(signal: str, error: Any, method: str, timeout: float, start: float) -> _Outcome:
    import grpc

    code, details = error.code(), " ".join((error.details() or "").split())
    lowered = details.lower()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return _Outcome([signal], False, False, f"no answer within {timeout:g} s (timeout)")
    if code == grpc.StatusCode.UNAVAILABLE:
        if "connection refused" in lowered:
            text = "connection refused (nothing listens there)"
        elif any(word in lowered for word in ("ssl", "tls", "handshake", "certificate")):
            text = f"TLS error: {details}" + _tls_hint(details)
        elif "resolv" in lowered or "lookup" in lowered:
            text = f"cannot resolve the host: {details}"
        else:
            text = f"unavailable: {details}"
        return _Outcome([signal], False, False, text)
    hint = ""
    if code == grpc.StatusCode.UNIMPLEMENTED:
        hint = f" (no {method.rpartition('/')[0].lstrip('/')} there: is this an OTLP/gRPC port, not OTLP/HTTP?)"
    elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        hint = " (check OTEL_EXPORTER_OTLP_HEADERS)"
    text = f"answered in {_millis(start)} but rejected the export: gRPC {code.name}: {details}{hint}"
    return _Outcome([signal], True, False, text)


def _check_http(target: _Target, signal: str, timeout: float) -> _Outcome:
    parts = urlsplit(target.url)
    headers = {"Content-Type": "application/x-protobuf", "User-Agent": "torch-otel-doctor"}
    headers.update(dict(target.headers))
    url = target.url
    if "@" in parts.netloc:  # like requests: URL userinfo becomes basic auth
        userinfo, _, host = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    try:
        handlers: list[Any] = [urllib.request.ProxyHandler({})]
        if target.tls:
            handlers.append(urllib.request.HTTPSHandler(context=_ssl_context(target)))
        opener = urllib.request.build_opener(*handlers)
    except (OSError, ssl.SSLError) as error:
        return _Outcome([signal], False, False, f"cannot load TLS files: {error}")
    request = urllib.request.Request(url, data=b"", headers=headers, method="POST")
    start = time.monotonic()
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
        return _Outcome([signal], True, True, f"reachable (answered in {_millis(start)}, HTTP {status})")
    except urllib.error.HTTPError as error:
        text = f"answered in {_millis(start)} but rejected the export: HTTP {error.code} {error.reason}"
        return _Outcome([signal], True, False, text + _http_hint(error.code))
    except urllib.error.URLError as error:
        return _Outcome([signal], False, False, _network_failure(error.reason, timeout))
    except (OSError, ValueError, http.client.HTTPException) as error:
        return _Outcome([signal], False, False, _network_failure(error, timeout))


def _ssl_context(target: _Target) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=target.certificate)
    if target.client_certificate:
        context.load_cert_chain(target.client_certificate, target.client_key)
    return context


def _http_hint(status: int) -> str:
    if status == 404:
        return " (wrong path? a per-signal endpoint is used as-is and needs the full path, e.g. /v1/logs)"
    if status in (401, 403):
        return " (check OTEL_EXPORTER_OTLP_HEADERS)"
    if status == 415:
        return " (the endpoint does not accept OTLP protobuf)"
    return ""


def _tls_hint(details: str) -> str:
    if "WRONG_VERSION_NUMBER" in details.upper():
        return " (the server does not speak TLS there: use an http:// URL, or enable TLS on the collector)"
    return ""


def _network_failure(reason: object, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s (timeout)"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS error: certificate verification failed ({reason.verify_message})"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason.reason or reason}" + _tls_hint(str(reason))
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host: {reason.strerror}"
    if isinstance(reason, OSError) and reason.strerror:
        return f"connection failed: {reason.strerror}"
    return f"connection failed: {reason}"


# ------------------------------------------------------------------- list


def _list_registry(out: TextIO, registry: Registry, torch: Any | None) -> int:
    write: Callable[[str], object] = lambda text: out.write(text + "\n")  # noqa: E731 - one line, typed
    write(f"TORCH_LOGS names ({_registry_note(registry, torch)})")
    write("")
    write("Components: TORCH_LOGS name -> logger names (= OpenTelemetry instrumentation scopes)")
    write("  all -> torch (every torch logger)")
    for alias in sorted(registry.aliases):
        write(f"  {alias} -> {', '.join(registry.aliases[alias])}")
    write("")
    write(
        f"Artifacts: TORCH_LOGS name -> log record event name ({len(registry.artifacts)} artifacts; "
        f"{len(registry.off_by_default)} [off by default] are exported only when named, never via +component)"
    )
    for name in sorted(registry.artifacts):
        marker = " [off by default]" if name in registry.off_by_default else ""
        description = " ".join(registry.descriptions.get(name, "").split())
        write(f"  {name} -> {catalog.artifact_event_name(name)}{marker}" + (f": {description}" if description else ""))
    return EXIT_OK


# ------------------------------------------------------------------- main


class _ParserExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that writes to ``out`` and returns instead of exiting."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(
            prog="torch-otel doctor",
            description="Explain and check what torch-otel will export with the current environment.",
        )
        self._out = out

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            self._out.write(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._out.write(message)
        raise _ParserExit(status)


def _timeout(raw: str) -> float:
    try:
        return parse_seconds("--timeout", raw, MAX_TIMEOUT)
    except SettingsError:
        raise argparse.ArgumentTypeError(
            f"expected seconds greater than 0 and at most {MAX_TIMEOUT:g}, got {raw!r}"
        ) from None


def _parse_args(argv: Sequence[str], out: TextIO) -> argparse.Namespace:
    parser = _Parser(out)
    parser.add_argument("--list", action="store_true", help="list every TORCH_LOGS component and artifact")
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time allowed for the endpoint check (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the endpoint check (no network)")
    return parser.parse_args(list(argv))


def _guarded(report: _Report, name: str, section: Callable[[], Any], fallback: Any = None) -> Any:
    """Run one section; an unexpected error is reported in the report (and counts as a failed check)."""
    try:
        return section()
    except Exception as error:  # noqa: BLE001 - the doctor never shows a traceback
        report.failed_check(f"the {name} check could not complete: {type(error).__name__}: {error}")
        return fallback


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """Print the report for ``environ`` (default ``os.environ``) to ``out`` (default ``sys.stdout``); returns the
    exit code."""
    environ = os.environ if environ is None else environ
    out = sys.stdout if out is None else out
    try:
        args = _parse_args(argv, out)
    except _ParserExit as stop:
        return stop.code
    report = _Report(out, _collect_secrets(environ))
    try:
        torch, import_error = _import_torch()
        registry = current_registry()
        if args.list:
            return _list_registry(out, registry, torch)
        report.write("torch-otel doctor")
        _guarded(report, "TORCH_LOGS", lambda: _torch_logs_section(report, environ, registry, torch))
        _guarded(report, "settings", lambda: _settings_section(report, environ))
        targets = _guarded(report, "exporter", lambda: _exporter_section(report, environ), "the exporter check failed")
        _guarded(report, "endpoint", lambda: _check_section(report, targets, args.timeout, args.no_check))
        _guarded(report, "torch", lambda: _torch_section(report, torch, import_error))
        return report.summary()
    except KeyboardInterrupt:
        report.write("interrupted")
        return 130
    except Exception as error:  # noqa: BLE001 - the doctor never shows a traceback
        report.write(f"torch-otel doctor failed unexpectedly: {type(error).__name__}: {error}")
        return EXIT_UNREACHABLE
