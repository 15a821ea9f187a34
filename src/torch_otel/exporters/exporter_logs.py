"""Keeps the OpenTelemetry SDK's own warnings (export retries and failures, full queues) from flooding stderr
while a collector stays down: each distinct message passes once per interval, and the next one that passes says
how many were held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_INTERVAL_S = 300.0
SDK_LOGGER_PREFIXES = ("opentelemetry.exporter", "opentelemetry.sdk")
_MAX_KEYS = 256


class RepeatLimiter(logging.Filter):
    """Passes a message (logger, level, template and its non-numeric arguments) at most once per ``interval``."""

    def __init__(self, interval: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._last_passed: dict[tuple, float] = {}
        self._held: dict[tuple, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            key = _key(record)
        except Exception:  # noqa: BLE001 - an odd record is simply let through
            return True
        now = self._clock()
        last = self._last_passed.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if last is None and len(self._last_passed) >= _MAX_KEYS:
            return True
        self._last_passed[key] = now
        held = self._held.pop(key, 0)
        if held and last is not None:
            record.msg = f"{record.msg} [torch-otel held back {held} more like this in the last {now - last:.0f} s]"
        return True


def _key(record: logging.LogRecord) -> tuple:
    args = record.args if isinstance(record.args, tuple) else ()
    return (record.name, record.levelno, str(record.msg), *(str(arg) for arg in args if not isinstance(arg, float)))


def limit_sdk_warnings(limiter: RepeatLimiter | None = None) -> Callable[[], None]:
    """Attach one limiter to every SDK and exporter logger that exists now; returns what detaches it again."""
    limiter = limiter or RepeatLimiter()
    loggers = [
        logger
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if isinstance(logger, logging.Logger) and name.startswith(SDK_LOGGER_PREFIXES)
    ]
    for logger in loggers:
        logger.addFilter(limiter)

    def detach() -> None:
        for logger in loggers:
            logger.removeFilter(limiter)

    return detach
