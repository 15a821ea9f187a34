"""`torch-otel report --perfetto OUT.json`: the compile timeline in the Chrome Trace Event Format (what PyTorch's
profiler and tlparse write, and Perfetto and chrome://tracing open), from the same real two-rank run as
test_report_html: the file holds the format's documented fields, every torch.compile span and phase of the run with
its exact timing, the application spans around them, one process per rank and one named thread per trace; a path
that cannot be written is one paragraph and exit code 2, and the other outputs are still made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torch_otel import catalog

from test_report_html import RankedRun, ranked_run, run_main  # noqa: F401 - ranked_run is a fixture

assert ranked_run  # the fixture, imported for the tests below


@pytest.fixture(scope="module")
def trace(ranked_run: RankedRun, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    out = tmp_path_factory.mktemp("perfetto") / "trace.json"
    code, text, err = run_main(*map(str, ranked_run.paths), "--perfetto", str(out))
    assert code == 0 and err == f"torch-otel report: wrote {out}\n" and "Recompiles" in text
    return json.loads(out.read_text(encoding="utf-8"))


def test_every_event_has_the_documented_fields(trace: dict):
    assert isinstance(trace["traceEvents"], list) and trace["displayTimeUnit"] in ("ms", "ns")
    for event in trace["traceEvents"]:
        assert event["ph"] in ("X", "M")
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int) and isinstance(event["name"], str)
        assert isinstance(event["args"], dict)
        if event["ph"] == "X":
            assert isinstance(event["cat"], str) and event["cat"]
            assert isinstance(event["ts"], (int, float)) and isinstance(event["dur"], (int, float)) and event["dur"] >= 0
        else:
            assert event["name"] in ("process_name", "process_sort_index", "thread_name", "thread_sort_index")
            assert set(event["args"]) == ({"name"} if event["name"].endswith("_name") else {"sort_index"})


def test_every_torch_span_appears_with_its_timing(ranked_run: RankedRun, trace: dict):  # noqa: F811
    slices = {e["args"]["span_id"]: e for e in trace["traceEvents"] if e["ph"] == "X"}
    torch_spans = ranked_run.torch_spans()
    phases = [s for s in torch_spans if catalog.ATTR_PHASE in s.attributes and s.name != catalog.SPAN_COMPILE]
    assert torch_spans and phases
    for span in torch_spans:
        event = slices[format(span.context.span_id, "016x")]
        assert event["name"] == span.name
        assert event["ts"] == span.start_time / 1000 and event["dur"] == (span.end_time - span.start_time) / 1000
        assert event["pid"] == span.resource.attributes[catalog.RESOURCE_RANK]  # pid: the rank
        assert event["cat"] == (catalog.SPAN_COMPILE + ".phase" if span in phases else span.name)
        assert event["args"][catalog.ATTR_COMPILE_ID] == span.attributes[catalog.ATTR_COMPILE_ID]
    apps = [s for s in ranked_run.spans if s.parent is None and any(
        c.context.trace_id == s.context.trace_id for c in torch_spans)]
    for span in apps:  # the application spans around the compiles
        event = slices[format(span.context.span_id, "016x")]
        assert event["cat"] == "app" and event["ts"] == span.start_time / 1000
    recompiles = [e for e in slices.values() if any(line.startswith("recompile ") for line in e["args"].get("summary", ()))]
    failed = [e for e in slices.values() if e["args"].get("status") == "error"]
    assert recompiles and all("[" not in e["args"]["summary"][0].split(":")[0] for e in recompiles)
    assert failed and all("BackendCompilerFailed" in e["args"]["summary"][0] for e in failed)


def test_processes_are_ranks_and_threads_are_named_traces_that_nest(ranked_run: RankedRun, trace: dict):  # noqa: F811
    meta = [e for e in trace["traceEvents"] if e["ph"] == "M"]
    names = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    assert sorted(names) == [0, 1] and all(names[rank].startswith(f"rank {rank}") for rank in names)
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {(e["pid"], e["tid"]) for e in slices} == set(threads)
    assert any(name.startswith("request id=r1-2 batch_size=8 · trace ") for name in threads.values())
    for key in threads:  # complete events of one thread must nest
        open_ends: list[float] = []
        for event in sorted((e for e in slices if (e["pid"], e["tid"]) == key), key=lambda e: (e["ts"], -e["dur"])):
            while open_ends and open_ends[-1] <= event["ts"]:
                open_ends.pop()
            assert not open_ends or event["ts"] + event["dur"] <= open_ends[-1] + 1e-3
            open_ends.append(event["ts"] + event["dur"])
        assert len({e["args"]["trace_id"] for e in slices if (e["pid"], e["tid"]) == key}) == 1  # one trace a thread


@pytest.mark.parametrize("bad", ["missing-folder/out.json", "."])
def test_a_bad_output_path_is_one_paragraph_exit_2_and_nothing_lost(ranked_run: RankedRun, tmp_path: Path,  # noqa: F811
                                                                    bad: str):
    page = tmp_path / "page.html"
    target = str(tmp_path / bad)
    code, text, err = run_main(str(ranked_run.paths[0]), "--perfetto", target, "--html", str(page))
    assert code == 2
    assert "Recompiles" in text and page.exists()  # the terminal report and the page are still there
    lines = err.splitlines()
    assert lines[0] == f"torch-otel report: wrote {page}"
    assert len(lines) == 2 and lines[1].startswith(f"torch-otel report: cannot write the Perfetto trace to {target}: ")
    assert "Traceback" not in err


def test_a_compile_still_running_is_an_instant_event_on_its_rank(tmp_path: Path):
    data = Path(__file__).parent / "data" / "report"
    out = tmp_path / "stuck.json"
    code, _, err = run_main(str(data / "stuck0.jsonl"), str(data / "stuck1.jsonl"), "--perfetto", str(out))
    assert code == 0, err
    trace = json.loads(out.read_text())
    assert all(event["ph"] in ("X", "M", "i") for event in trace["traceEvents"])
    (instant,) = [event for event in trace["traceEvents"] if event["ph"] == "i"]
    assert instant["pid"] == 1 and instant["s"] == "p" and instant["cat"] == catalog.SPAN_COMPILE + ".unfinished"
    assert instant["name"] == "still compiling 0/0 (scaled_cos)"
    assert instant["args"][catalog.ATTR_PHASE] == "backend_compile" and instant["args"][catalog.ATTR_ELAPSED] == 4.0
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert names[1].startswith("rank 1")
    compiles = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["name"] == catalog.SPAN_COMPILE]
    assert [e["pid"] for e in compiles] == [0]  # rank 0's finished compile
