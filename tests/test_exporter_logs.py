"""The SDK's own export warnings are limited per distinct message, and the next one that passes says how many were
held back; the filter comes off exactly as it went on."""

from __future__ import annotations

import logging

import pytest

from torch_otel.exporters.exporter_logs import RepeatLimiter, limit_sdk_warnings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def exporter_logger():
    """A logger in the exporters' namespace that carries no filter of the SDK's own (its DuplicateFilter)."""
    logger = logging.getLogger("opentelemetry.exporter.torch_otel_test")
    lines = Lines()
    saved = logger.propagate, list(logger.filters)
    logger.addHandler(lines)
    logger.propagate = False
    yield logger, lines
    logger.removeHandler(lines)
    logger.propagate, logger.filters[:] = saved[0], saved[1]


TRANSIENT = "Transient error %s encountered while exporting %s to %s, retrying in %.2fs. Error details: %s"


def test_each_distinct_message_passes_once_per_interval_then_reports_what_was_held_back(exporter_logger):
    logger, lines = exporter_logger
    clock = Clock()
    logger.addFilter(RepeatLimiter(interval=300, clock=clock))
    for backoff in (1.0, 2.1, 3.9, 8.2):  # only the backoff changes: the same message
        logger.warning(TRANSIENT, "UNAVAILABLE", "logs", "localhost:4317", backoff, "connection refused")
    logger.warning(TRANSIENT, "UNAVAILABLE", "traces", "localhost:4317", 1.0, "connection refused")
    logger.error("Failed to export %s to %s", "logs", "localhost:4317")
    assert len(lines.lines) == 3, lines.lines
    clock.now += 301
    logger.warning(TRANSIENT, "UNAVAILABLE", "logs", "localhost:4317", 16.0, "connection refused")
    assert lines.lines[-1].endswith("retrying in 16.00s. Error details: connection refused "
                                    "[torch-otel held back 3 more like this in the last 301 s]"), lines.lines[-1]
    logger.warning(TRANSIENT, "UNAVAILABLE", "logs", "localhost:4317", 1.0, "connection refused")
    assert len(lines.lines) == 4


def test_messages_without_arguments_and_percent_signs_survive(exporter_logger):
    logger, lines = exporter_logger
    clock = Clock()
    logger.addFilter(RepeatLimiter(interval=10, clock=clock))
    for _ in range(3):
        logger.warning("Queue is full, 100% used")
    clock.now += 11
    logger.warning("Queue is full, 100% used")
    assert lines.lines == ["Queue is full, 100% used",
                           "Queue is full, 100% used [torch-otel held back 2 more like this in the last 11 s]"]


def test_limit_sdk_warnings_attaches_to_the_sdk_loggers_and_detaches_exactly(exporter_logger):
    import opentelemetry.sdk._shared_internal  # noqa: F401 - the batch processors' logger exists

    logger, _ = exporter_logger
    before = {name: list(lg.filters) for name, lg in logging.Logger.manager.loggerDict.items()
              if isinstance(lg, logging.Logger)}
    detach = limit_sdk_warnings()
    limited = [name for name, lg in logging.Logger.manager.loggerDict.items()
               if isinstance(lg, logging.Logger) and any(isinstance(f, RepeatLimiter) for f in lg.filters)]
    assert logger.name in limited
    assert all(name.startswith(("opentelemetry.exporter", "opentelemetry.sdk")) for name in limited)
    assert not any(name.startswith("torch") for name in limited)
    detach()
    after = {name: list(lg.filters) for name, lg in logging.Logger.manager.loggerDict.items()
             if isinstance(lg, logging.Logger) and name in before}
    assert after == before
