"""TorchHooks turns torch's begin/end phase events into listener calls that follow the phase rules."""

from typing import Any

import wrapt

from torch_otel import catalog
from torch_otel.capture.torch_hooks import Phase, TorchHooks


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def phase_started(self, phase: Phase) -> None:
        self.calls.append(("start", phase.name, phase.depth))

    def phase_ended(self, phase: Phase, end_ns: int) -> None:
        self.calls.append(("end", phase.name, phase.depth, end_ns - phase.start_ns))


def feed(*events: tuple[str, str, int]) -> list[tuple[Any, ...]]:
    recorder = Recorder()
    seen: list[dict[str, Any]] = []
    record = wrapt.FunctionWrapper(seen.append, TorchHooks([recorder]).record_chromium_event_internal)
    for kind, name, ts_us in events:
        record({"ph": kind, "name": name, "ts": ts_us, "args": {"compile_id": "0/0"}})
    assert len(seen) == len(events)  # torch always gets its event
    return recorder.calls


def test_phases_outside_a_compile_are_ignored():
    assert feed(("B", "cpp_compile", 0), ("E", "cpp_compile", 5)) == []


def test_an_end_closes_the_phases_it_overlaps_innermost_first():
    assert feed(("B", "dynamo", 0), ("B", "a", 1), ("B", "b", 2), ("E", "a", 4), ("E", "dynamo", 9)) == [
        ("start", "dynamo", 0),
        ("start", "a", 1),
        ("start", "b", 2),
        ("end", "b", 2, 2000),
        ("end", "a", 1, 3000),
        ("end", "dynamo", 0, 9000),
    ]


def test_an_end_without_an_open_phase_of_its_name_is_ignored():
    assert feed(("B", "dynamo", 0), ("E", "other", 1), ("E", "dynamo", 2)) == [
        ("start", "dynamo", 0),
        ("end", "dynamo", 0, 2000),
    ]


def test_a_failing_listener_or_event_never_reaches_torch():
    class Broken:
        def phase_started(self, phase: Phase) -> None:
            raise RuntimeError

    seen: list[Any] = []
    record = wrapt.FunctionWrapper(seen.append, TorchHooks([Broken()]).record_chromium_event_internal)
    record({"ph": "B", "name": "dynamo", "ts": 0})
    record({"ph": "E", "name": "dynamo", "ts": "not a number"})
    assert len(seen) == 2


def test_labels_name_compile_roots_by_the_catalog():
    assert Phase("dynamo", 0, None, 0).label == catalog.SPAN_COMPILE
    assert Phase("entire_backward_compile", 0, None, 0).label == catalog.SPAN_BACKWARD_COMPILE
    assert Phase("dynamo", 0, None, 1).label == "dynamo"
    assert Phase("compiled_autograd", 0, None, 0).label == catalog.SPAN_COMPILED_AUTOGRAD


def test_the_root_phase_of_a_frame_compile_carries_the_function_being_compiled():
    recorder = Recorder()
    hooks = TorchHooks([recorder])
    roots: list[Phase] = []
    recorder.phase_started = roots.append  # type: ignore[method-assign]
    record = wrapt.FunctionWrapper(lambda event: None, hooks.record_chromium_event_internal)

    def compile_frame(code, globals_, locals_, builtins, closure, compiler_fn, one_graph):
        record({"ph": "B", "name": "dynamo", "ts": 0, "args": {"compile_id": "0/0"}})
        record({"ph": "B", "name": "entire_frame_compile", "ts": 1, "args": {"compile_id": "0/0"}})
        return one_graph

    def user_function(x):
        return x

    wrapped = wrapt.FunctionWrapper(compile_frame, hooks.compile_frame)
    assert wrapped(user_function.__code__, {}, {}, {}, None, None, True) is True
    root, phase = roots
    assert root.function == (user_function.__name__, __file__, user_function.__code__.co_firstlineno)
    assert phase.function is None  # only the root says what is compiled
    assert hooks._frame_compile() is None  # nothing left open once torch's _compile returns
