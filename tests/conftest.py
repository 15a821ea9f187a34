"""Shared pytest fixtures; the rotel collector harness (otlp_sink, collector, make_collector) lives here."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from collector import RotelCollector
from otlp_sink import OtlpSink

_COLLECTORS = pytest.StashKey[list[RotelCollector]]()


@pytest.fixture
def otlp_sink() -> Iterator[OtlpSink]:
    """A fresh in-process OTLP/gRPC capture server per test (starts in a few ms)."""
    with OtlpSink() as sink:
        yield sink


@pytest.fixture
def make_collector(
    request: pytest.FixtureRequest, otlp_sink: OtlpSink
) -> Iterator[Callable[..., RotelCollector]]:
    """Factory: make_collector(options={...}) -> started RotelCollector exporting to otlp_sink; always killed."""
    made: list[RotelCollector] = request.node.stash.setdefault(_COLLECTORS, [])
    mine: list[RotelCollector] = []

    def make(options: Mapping[str, str | bool | None] | None = None, **kwargs: Any) -> RotelCollector:
        c = RotelCollector(otlp_sink.endpoint, options=options, **kwargs)
        made.append(c)
        mine.append(c)
        return c.start()

    yield make
    for c in mine:
        c.close()


@pytest.fixture
def collector(make_collector: Callable[..., RotelCollector]) -> RotelCollector:
    """A real rotel-agent per test (~10 ms start-up) on fresh loopback ports, forwarding to otlp_sink."""
    return make_collector()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach every rotel-agent's output to the report of a failing test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and call.when != "teardown":
        for c in item.stash.get(_COLLECTORS, []):
            report.sections.append((f"rotel-agent output (grpc port {c.grpc_port})", c.log_text()))
