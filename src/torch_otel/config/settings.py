"""Reads and validates torch-otel's own settings, as declared in ``torch_otel.environment_variables``."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from torch_otel import environment_variables as env

# ASCII only: ``\d`` and ``str.isdigit`` accept other scripts' digits (and ``²``), which ``int`` then rejects or reads.
_SIZE_PATTERN = re.compile(r"[ \t]*([0-9]{1,30})[ \t]*(|b|kib|kb|k|mib|mb|m)[ \t]*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}
_WHOLE_NUMBER = re.compile(r"[ \t]*([0-9]{1,30})[ \t]*")
_DECIMAL_NUMBER = re.compile(r"[ \t]*([0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})[ \t]*")
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")
MASK = "***"


class SettingsError(ValueError):
    """A torch-otel or OTEL_* setting has a value that cannot be used. ``value`` is what the message shows: callers
    pass a masked form for anything that may hold a secret (header values, URL credentials)."""

    def __init__(self, variable: str, value: str, valid: str, problem: str | None = None) -> None:
        self.variable = variable
        self.value = value
        why = f" ({problem})" if problem else ""
        super().__init__(f"{variable}={_one_line(value)!r} is not valid{why}: expected {valid}.")


def _one_line(value: str) -> str:
    """Long or multi-line values are shortened so the message stays one paragraph."""
    flat = value if value.isprintable() else "".join(ch if ch.isprintable() else " " for ch in value)
    return flat if len(flat) <= 200 else flat[:200] + "..."


def parse_bool(variable: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(variable, raw, "one of on/off, true/false, 1/0, yes/no")


def parse_number(variable: str, raw: str, minimum: float, maximum: float, valid: str, decimal: bool = False) -> float:
    """The one strict number parser of every numeric setting: ASCII digits only (``decimal`` also takes one ``.``;
    no sign, exponent, ``_``, ``inf``/``nan`` or other scripts' digits), within ``minimum``..``maximum``. ``valid``
    says what is valid, limits included. Returns an ``int`` unless ``decimal``."""
    match = (_DECIMAL_NUMBER if decimal else _WHOLE_NUMBER).fullmatch(raw)
    if match is None:
        raise SettingsError(variable, raw, valid)
    number = float(match.group(1)) if decimal else int(match.group(1))
    if not minimum <= number <= maximum:
        raise SettingsError(variable, raw, valid)
    return number


def parse_size(variable: str, raw: str, minimum: int, maximum: int) -> int:
    valid = (
        f"a whole number of bytes from {env.size_text(minimum)} to {env.size_text(maximum)}, optionally with a "
        "KiB or MiB suffix (e.g. 65536 or 64KiB)"
    )
    match = _SIZE_PATTERN.fullmatch(raw)
    if match is None:
        raise SettingsError(variable, raw, valid)
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if not minimum <= size <= maximum:
        raise SettingsError(variable, raw, valid)
    return size


def parse_count(variable: str, raw: str, minimum: int, maximum: int) -> int:
    return int(parse_number(variable, raw, minimum, maximum, f"a whole number from {minimum} to {maximum}"))


def parse_seconds(variable: str, raw: str, maximum: float, valid: str | None = None) -> float:
    """The one seconds parser (TORCH_OTEL_SHUTDOWN_TIMEOUT, `torch-otel doctor --timeout`): a number greater than 0
    and at most ``maximum``, decimals allowed. ``valid`` replaces the default description of what is valid."""
    valid = valid or f"a number of seconds greater than 0 and at most {maximum:g} (e.g. 5 or 0.5)"
    seconds = parse_number(variable, raw, 0, maximum, valid, decimal=True)
    if seconds <= 0:
        raise SettingsError(variable, raw, valid)
    return seconds


def parse_seconds_or_off(variable: str, raw: str, maximum: float) -> float | None:
    """``off`` (None), or seconds as ``parse_seconds`` reads them (TORCH_OTEL_SLOW_COMPILE)."""
    if raw.strip().lower() == "off":
        return None
    valid = f"a number of seconds greater than 0 and at most {maximum:g}, or off (e.g. 60, 0.5 or off)"
    return parse_seconds(variable, raw, maximum, valid)


def mask_url(url: str) -> str:
    """``url`` with its userinfo and credential-like query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL, hidden>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(_mask_query_item(item) for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_query_item(item: str) -> str:
    key, sep, _ = item.partition("=")
    return f"{key}={MASK}" if sep and SENSITIVE_NAME.search(key) else item


SENSITIVE_NAME = re.compile(r"token|key|secret|pass|auth|sig|cred|session", re.IGNORECASE)


def check_endpoint(variable: str, raw: str, grpc: bool) -> None:
    """The one endpoint check of `torch-otel run` (via ``export_plan``) and `torch-otel doctor`: an http(s) URL with a
    host and a valid port, and no credentials in it when the gRPC exporter uses it (gRPC would treat
    ``user:password@host`` as a host name, and print it). The value is shown masked."""
    shown = mask_url(raw)
    try:
        parts = urlsplit(raw)
        _ = parts.port
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            variable,
            shown,
            "an http:// or https:// URL with a host and an optional port from 0 to 65535, e.g. http://localhost:4317",
        )
    if grpc and "@" in parts.netloc:
        raise SettingsError(
            variable,
            shown,
            "a URL without user:password@ for the OTLP gRPC exporter (it would look "
            "up a host named after them); put credentials in OTEL_EXPORTER_OTLP_HEADERS instead",
            "credentials in the URL",
        )


def parse_file_path(variable: str, raw: str) -> Path:
    """TORCH_OTEL_FILE (or the default file): a path that is not a directory, in an existing directory this user can
    write to (the file itself is created by the first process with something to export)."""
    path = Path(raw)
    try:
        if raw.strip() == "" or "\0" in raw:
            raise SettingsError(variable, raw, "a file path")
        if path.is_dir():
            raise SettingsError(variable, raw, "a file path, not a directory", "it is a directory")
        directory = path.parent
        if not directory.is_dir():
            raise SettingsError(
                variable, raw, "a file path in an existing directory", f"there is no directory {str(directory)!r}"
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            raise SettingsError(
                variable,
                raw,
                "a file path in a directory this user can write to",
                f"cannot write to {str(directory)!r}",
            )
        if path.exists() and not os.access(path, os.W_OK):
            raise SettingsError(variable, raw, "a file this user can append to", "the file is not writable")
    except OSError as error:  # e.g. a name too long
        raise SettingsError(variable, raw, "a file path", error.strerror or type(error).__name__) from None
    return path


def parse_choice(variable: str, raw: str, choices: tuple[str, ...]) -> str:
    choice = raw.strip().lower()
    if choice not in choices:
        raise SettingsError(variable, raw, "one of " + ", ".join(choices))
    return choice


_PARSERS: dict[str, Callable[[env.Variable, str], Any]] = {
    "flag": parse_bool,
    "bytes": lambda v, raw: parse_size(v, raw, int(v.minimum or 0), int(v.maximum or 0)),
    "count": lambda v, raw: parse_count(v, raw, int(v.minimum or 0), int(v.maximum or 0)),
    "seconds": lambda v, raw: parse_seconds(v, raw, float(v.maximum or 0)),
    "seconds_or_off": lambda v, raw: parse_seconds_or_off(v, raw, float(v.maximum or 0)),
    "choice": lambda v, raw: parse_choice(v, raw, v.choices),
    "path": parse_file_path,
}


def parse_variable(variable: env.Variable, raw: str) -> Any:
    """One declared variable's value (not empty) read as its declaration says; ``SettingsError`` if invalid."""
    return _PARSERS[variable.kind](variable, raw)


@dataclass(frozen=True)
class Settings:
    """The values of the declared variables that have a ``field`` (tests/test_settings_declaration.py checks that
    the fields are exactly those, with the declared defaults)."""

    torch_stderr: bool = env.TORCH_OTEL_TORCH_STDERR.default
    max_body_bytes: int = env.TORCH_OTEL_MAX_BODY_BYTES.default
    max_batch_bytes: int = env.TORCH_OTEL_MAX_BATCH_BYTES.default
    queue_size: int = env.TORCH_OTEL_QUEUE_SIZE.default
    queue_bytes: int = env.TORCH_OTEL_QUEUE_BYTES.default
    shutdown_timeout: float = env.TORCH_OTEL_SHUTDOWN_TIMEOUT.default
    spans: bool = env.TORCH_OTEL_SPANS.default
    structured: bool = env.TORCH_OTEL_STRUCTURED.default
    metrics: bool = env.TORCH_OTEL_METRICS.default
    redact_paths: str = env.TORCH_OTEL_REDACT_PATHS.default
    redact_code: bool = env.TORCH_OTEL_REDACT_CODE.default
    fast_path: bool = env.TORCH_OTEL_FAST_PATH.default
    slow_compile: float | None = env.TORCH_OTEL_SLOW_COMPILE.default

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every declared setting (in declaration order), raising ``SettingsError`` for the first invalid one;
        an unset or empty variable keeps its default."""
        environ = os.environ if environ is None else environ
        values = {}
        for variable in env.ALL:
            raw = environ.get(variable)
            if variable.field is not None and raw:
                values[variable.field] = parse_variable(variable, raw)
        return cls(**values)
