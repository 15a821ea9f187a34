"""Trace and span ids that survive dynamo: it saves and restores Python's global ``random`` state around every
frame compile, so ids the SDK's default generator draws during a compile (on any thread) are drawn again after it."""

from __future__ import annotations

import os
import random
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator


class PrivateRandomIdGenerator(RandomIdGenerator):
    """RandomIdGenerator drawing from its own RNG, reseeded in fork children."""

    def __init__(self) -> None:
        self._random = random.Random()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._random.seed)

    def generate_span_id(self) -> int:
        span_id = self._random.getrandbits(64)
        while span_id == trace.INVALID_SPAN_ID:
            span_id = self._random.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = self._random.getrandbits(128)
        while trace_id == trace.INVALID_TRACE_ID:
            trace_id = self._random.getrandbits(128)
        return trace_id


PRIVATE_IDS = PrivateRandomIdGenerator()


def use_private_ids(tracer_provider: Any) -> Any:
    """Swap an SDK provider's default id generator for ``PRIVATE_IDS``; returns what to restore, or None.
    Tracers the application obtained before this keep their generator."""
    if type(getattr(tracer_provider, "id_generator", None)) is RandomIdGenerator:
        original = tracer_provider.id_generator
        tracer_provider.id_generator = PRIVATE_IDS
        return original
    return None
