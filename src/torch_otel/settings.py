"""Reads and validates torch-otel's own settings (see ``environment_variables``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from torch_otel import environment_variables as env

T = TypeVar("T")

_SIZE_PATTERN = re.compile(r"\s*(\d+)\s*(|b|kib|kb|k|mib|mb|m)\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")


class SettingsError(ValueError):
    """A torch-otel or OTEL_* setting has a value that cannot be used."""

    def __init__(self, variable: str, value: str, valid: str) -> None:
        self.variable = variable
        self.value = value
        super().__init__(f"{variable}={value!r} is not valid: expected {valid}.")


def parse_bool(variable: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(variable, raw, "one of on/off, true/false, 1/0, yes/no")


def parse_size(variable: str, raw: str, minimum: int = 1) -> int:
    match = _SIZE_PATTERN.fullmatch(raw)
    if match is None or int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()] < minimum:
        raise SettingsError(
            variable, raw, f"a whole number of bytes of at least {minimum}, optionally with a KiB or MiB suffix (e.g. 65536 or 64KiB)"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def parse_count(variable: str, raw: str, minimum: int = 1) -> int:
    stripped = raw.strip()
    if not stripped.isdigit() or int(stripped) < minimum:
        raise SettingsError(variable, raw, f"a whole number of at least {minimum}")
    return int(stripped)


def parse_seconds(variable: str, raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 600:
        raise SettingsError(variable, raw, "a number of seconds greater than 0 and at most 600 (e.g. 5 or 0.5)")
    return seconds


def parse_path_mode(variable: str, raw: str) -> str:
    mode = raw.strip().lower()
    if mode not in ("off", "hash", "remove"):
        raise SettingsError(variable, raw, "one of off, hash, remove")
    return mode


@dataclass(frozen=True)
class Settings:
    torch_stderr: bool = True
    max_body_bytes: int = 64 * 1024
    max_batch_bytes: int = 3 * 1024 * 1024
    queue_size: int = 20_000
    shutdown_timeout: float = 5.0
    spans: bool = True
    structured: bool = False
    metrics: bool = True
    redact_paths: str = "off"
    redact_code: bool = False
    fast_path: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting, raising ``SettingsError`` for the first invalid one."""
        environ = os.environ if environ is None else environ
        defaults = cls()

        def read(variable: str, parse: Callable[[str, str], T], default: T) -> T:
            raw = environ.get(variable)
            return default if raw is None or raw == "" else parse(variable, raw)

        return cls(
            torch_stderr=read(env.TORCH_OTEL_TORCH_STDERR, parse_bool, defaults.torch_stderr),
            max_body_bytes=read(env.TORCH_OTEL_MAX_BODY_BYTES, lambda v, r: parse_size(v, r, 256), defaults.max_body_bytes),
            max_batch_bytes=read(
                env.TORCH_OTEL_MAX_BATCH_BYTES, lambda v, r: parse_size(v, r, 64 * 1024), defaults.max_batch_bytes
            ),
            queue_size=read(env.TORCH_OTEL_QUEUE_SIZE, parse_count, defaults.queue_size),
            shutdown_timeout=read(env.TORCH_OTEL_SHUTDOWN_TIMEOUT, parse_seconds, defaults.shutdown_timeout),
            spans=read(env.TORCH_OTEL_SPANS, parse_bool, defaults.spans),
            structured=read(env.TORCH_OTEL_STRUCTURED, parse_bool, defaults.structured),
            metrics=read(env.TORCH_OTEL_METRICS, parse_bool, defaults.metrics),
            redact_paths=read(env.TORCH_OTEL_REDACT_PATHS, parse_path_mode, defaults.redact_paths),
            redact_code=read(env.TORCH_OTEL_REDACT_CODE, parse_bool, defaults.redact_code),
            fast_path=read(env.TORCH_OTEL_FAST_PATH, parse_bool, defaults.fast_path),
        )
