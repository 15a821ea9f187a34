"""`torch-otel report --html`: the timeline reads without clicking. A real torch.compile run per rank (two ranks in
one process, one after the other, each with its own resource, both exported to one OTLP JSON Lines file by the
embedded default's writer): requests with attributes, a recompile, a graph break that restarts the analysis, a
compile that fails in its backend. The page labels each lane with its request, writes each recompile's reason,
restarts and failure (with its type) in a visible note beside the bar, puts the reason first in the click panel, and
gives one lane per rank on one time axis; headless Chromium shows the reason on screen without any interaction.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from torch_otel import catalog
from torch_otel.tools import report
from torch_otel.tools.report.formatting import request_label
from torch_otel.tools.report.html import render_html

from torch_state import preserved_torch_logging

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars", "--window-size=1400,900",
)  # fmt: skip
RANKS = (0, 1)


def step_with_graph_break(x):
    y = x * 2
    import torch

    torch._dynamo.graph_break()
    return y + 1


class BackendFailure(RuntimeError):
    pass


def failing_backend(graph, example_inputs):
    raise BackendFailure("this backend refuses every graph")


@dataclass(frozen=True)
class RankedRun:
    paths: tuple[Path, ...]  # per rank, every signal of it (as torchrun's ranks each write their own)
    spans: tuple  # ReadableSpan of both ranks, from in-memory exporters on the same providers

    def torch_spans(self) -> list:
        """Every torch.compile span and phase span of the run."""
        return [s for s in self.spans if s.name.startswith(catalog.SPAN_COMPILE) or catalog.ATTR_PHASE in s.attributes]


def _one_rank(rank: int, path: Path, span_truth) -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    import torch

    import torch_otel
    from torch_otel.exporters.file_export import JsonLinesFile, OtlpJsonLogExporter, OtlpJsonSpanExporter

    sink = JsonLinesFile(path)
    resource = Resource.create(
        {"service.name": "report-html-test", catalog.RESOURCE_RANK: rank, "process.pid": os.getpid()}
    )
    tracer_provider = TracerProvider(resource=resource)
    for exporter in (OtlpJsonSpanExporter(sink), span_truth):
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OtlpJsonLogExporter(sink)))
    torch._dynamo.reset()
    with preserved_torch_logging():
        torch._logging.set_logs(recompiles=True, graph_breaks=True)
        torch_otel.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider,
                              settings=torch_otel.Settings())
        try:
            tracer = tracer_provider.get_tracer("app")
            step = torch.compile(step_with_graph_break, backend="eager", dynamic=False)
            for number, size in enumerate((4, 4, 8)):  # the third request recompiles
                with tracer.start_as_current_span("request", attributes={"request.id": f"r{rank}-{number}",
                                                                         "request.batch_size": size}):
                    step(torch.ones(size))
            broken = torch.compile(lambda x: x.sin() + 1, backend=failing_backend)
            with tracer.start_as_current_span("train_step", attributes={"training.step": 7}):
                try:
                    broken(torch.ones(3))
                except Exception:  # torch wraps it in BackendCompilerFailed
                    pass
            torch_otel.flush(10)
        finally:
            torch_otel.uninstrument()
            torch._dynamo.reset()
    tracer_provider.shutdown()
    logger_provider.shutdown()


@pytest.fixture(scope="module")
def ranked_run(tmp_path_factory: pytest.TempPathFactory) -> RankedRun:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    directory = tmp_path_factory.mktemp("report-html")
    spans, paths = [], []
    for rank in RANKS:
        truth = InMemorySpanExporter()
        paths.append(directory / f"run-rank{rank}.jsonl")
        _one_rank(rank, paths[-1], truth)
        spans += truth.get_finished_spans()
    return RankedRun(tuple(paths), tuple(spans))


@pytest.fixture(scope="module")
def one_rank_file(ranked_run: RankedRun) -> Path:
    return ranked_run.paths[0]


# ---------------------------------------------------------------------------------------------------------------
# The page's structure
# ---------------------------------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """Each element's tag, attributes and own text (text of its descendants too), for the timeline's elements."""

    VOID = {"meta", "input", "br", "img", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict] = []
        self._open: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data

    def with_class(self, name: str) -> list[dict]:
        return [e for e in self.elements if name in (e["attrs"].get("class") or "").split()]


def page_of(*argv: str, tmp_path: Path) -> tuple[str, _Page]:
    out = tmp_path / "page.html"
    code, _, err = run_main(*argv, "--html", str(out))
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(text)
    return text, parser


def run_main(*argv: str) -> tuple[int, str, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    code = report.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def recompile_reasons(spans) -> dict[tuple[int, str], list[str]]:
    """(rank, compile id) -> the reasons of each recompile, as torch gave them."""
    found = {}
    for span in spans:
        for event in span.events:
            if span.name == catalog.SPAN_COMPILE and event.name == catalog.EVENT_RECOMPILE:
                rank = span.resource.attributes[catalog.RESOURCE_RANK]
                found[(rank, span.attributes[catalog.ATTR_COMPILE_ID])] = list(event.attributes[catalog.ATTR_RECOMPILE_REASONS])
    return found


def test_the_run_has_what_the_page_must_show(ranked_run: RankedRun):
    torch_spans = ranked_run.torch_spans()
    assert len(recompile_reasons(ranked_run.spans)) >= len(RANKS)
    assert any(s.attributes.get(catalog.ATTR_RESTARTS, 0) > 0 for s in torch_spans), "no restart in the run"
    failed = [s for s in torch_spans if s.name == catalog.SPAN_COMPILE and not s.status.is_ok and s.status.description]
    assert len(failed) == len(RANKS) and all("BackendCompilerFailed" in s.status.description for s in failed)


def test_one_process_lanes_are_labelled_with_their_request(ranked_run: RankedRun, one_rank_file: Path, tmp_path: Path):
    _, page = page_of(str(one_rank_file), tmp_path=tmp_path)
    titles = [e["text"] for e in page.with_class("lane-title")]
    roots = sorted(
        (s for s in ranked_run.spans if s.parent is None and s.resource.attributes[catalog.RESOURCE_RANK] == 0
         and any(c.context.trace_id == s.context.trace_id for c in ranked_run.torch_spans())),
        key=lambda s: s.start_time,
    )
    assert titles == [request_label(s.name, dict(s.attributes), 80) for s in roots]
    assert any("id=r0-2" in t for t in titles) and any("step=7" in t for t in titles)
    cells = [e for e in page.elements if "id" in (e["attrs"].get("class") or "").split()]  # kept on one line
    assert [e["text"] for e in cells if e["tag"] == "span"] == [f"trace {format(s.context.trace_id, '032x')}" for s in roots]
    trace_ids = {format(s.context.trace_id, "032x") for s in roots}
    assert trace_ids & {e["text"] for e in cells if e["tag"] == "td"}  # the recompile table's trace id too


def test_recompile_failure_and_restart_are_written_beside_their_bar(ranked_run: RankedRun, one_rank_file: Path,
                                                                    tmp_path: Path):
    text, page = page_of(str(one_rank_file), tmp_path=tmp_path)
    notes = page.with_class("note")
    bars = {e["attrs"]["data-i"]: e for e in page.with_class("bar")}
    reasons = {cid: r for (rank, cid), r in recompile_reasons(ranked_run.spans).items() if rank == 0}
    for compile_id, reason in reasons.items():
        note = next(n for n in notes if n["text"].startswith(f"recompile {compile_id}: "))
        assert "; ".join(reason) in note["text"] and "[" not in note["text"].split(":", 1)[0]  # no list repr
        assert "in request id=r0-2" in note["text"]  # the request that paid for it
        bar = bars[note["attrs"]["data-i"]]
        assert "k-recompile" in bar["attrs"]["class"] and reason[0] in bar["text"]  # on the bar as well
    assert "&#39;]" not in text and "[&#39;" not in text  # no Python list repr of reasons anywhere
    failure = next(n for n in notes if "n-failed" in n["attrs"]["class"])
    assert "BackendCompilerFailed" in failure["text"] and "in train_step step=7" in failure["text"]
    assert "k-failed" in bars[failure["attrs"]["data-i"]]["attrs"]["class"]
    restart = next(n for n in notes if "n-restart" in n["attrs"]["class"])
    assert re.search(r"restarted [0-9]+×", restart["text"])


def test_the_click_panel_leads_with_the_reason(ranked_run: RankedRun, one_rank_file: Path, tmp_path: Path):
    text, page = page_of(str(one_rank_file), tmp_path=tmp_path)
    data = json.loads(re.search(r'<script type="application/json" id="span-data">(.*?)</script>', text, re.S).group(1))
    recompiles = [d for d in data if d["k"] == "recompile"]
    assert recompiles and all(d["h"][0].startswith("recompile ") for d in recompiles)
    assert all(d["r"]["a"]["request.id"] == "r0-2" for d in recompiles)  # the triggering request's attributes
    script = next(e["text"] for e in page.elements if e["tag"] == "script" and "function open" in e["text"])
    assert script.index("d.h.forEach") < script.index("rows(t,[['kind'")  # the lead comes before the table


def test_several_ranks_get_one_lane_each_on_one_time_axis(ranked_run: RankedRun, tmp_path: Path):
    text, page = page_of(*map(str, ranked_run.paths), tmp_path=tmp_path)
    assert [e["text"] for e in page.with_class("lane-title")] == [f"rank {rank}" for rank in RANKS]
    assert 'id="fit"' not in text  # one axis for all: no per-lane scaling
    origin = min(s.start_time for s in ranked_run.spans if any(
        c.context.trace_id == s.context.trace_id for c in ranked_run.torch_spans()))
    end = max(s.end_time for s in ranked_run.spans if any(
        c.context.trace_id == s.context.trace_id for c in ranked_run.torch_spans()))
    bars = page.with_class("bar")
    compile_bars = [b for b in bars if b["text"].startswith("torch.compile ")]
    # each bar sits at (its start - the earliest start) / the whole extent, whichever rank it belongs to
    truth = {(s.resource.attributes[catalog.RESOURCE_RANK], s.attributes[catalog.ATTR_COMPILE_ID]):
             100 * (s.start_time - origin) / (end - origin) for s in ranked_run.torch_spans() if s.name == catalog.SPAN_COMPILE}
    assert len(compile_bars) == len(truth)
    drawn = [float(re.search(r"left:([0-9.]+)%", b["attrs"]["style"]).group(1)) for b in compile_bars]
    # the page writes 4 decimals: compare within that precision, not after rounding both (18.665 rounds either way)
    assert all(abs(a - b) <= 1e-3 for a, b in zip(sorted(drawn), sorted(truth.values()), strict=True)), (drawn, truth)
    assert max(drawn) > 50  # rank 1 ran after rank 0: its compiles sit in the later part of the shared axis


# ---------------------------------------------------------------------------------------------------------------
# Headless Chromium: the reason is on screen without any interaction
# ---------------------------------------------------------------------------------------------------------------
def chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def chromium_run(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )


VISIBILITY_PROBE = """<script>
window.addEventListener('load',function(){
  var out=[];
  document.querySelectorAll('#lanes .note .reason').forEach(function(e){
    var r=e.getBoundingClientRect(),s=getComputedStyle(e),hit=document.elementFromPoint(r.left+2,r.top+r.height/2);
    out.push({text:e.textContent,w:r.width,h:r.height,top:r.top,left:r.left,vis:s.visibility,disp:s.display,
              op:s.opacity,onTop:!!hit&&(hit===e||e.contains(hit)),panelOpen:document.getElementById('details').classList.contains('open')});
  });
  var pre=document.createElement('pre');pre.id='probe';pre.textContent=JSON.stringify(out);document.body.appendChild(pre);
});
</script></body>"""


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium); "
                                              "it renders the HTML report headless")
def test_headless_chromium_shows_the_recompile_reason_without_interaction(ranked_run: RankedRun, one_rank_file: Path,
                                                                           tmp_path: Path):
    text, _ = page_of(str(one_rank_file), tmp_path=tmp_path)
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", VISIBILITY_PROBE, 1), encoding="utf-8")
    completed = chromium_run(probed, tmp_path / "profile", "--dump-dom", "--virtual-time-budget=5000")
    found = re.search(r'<pre id="probe">(.*?)</pre>', completed.stdout, re.S)
    assert found, completed.stderr[-2000:]
    import html as html_module

    reasons = json.loads(html_module.unescape(found.group(1)))
    truth = [r for (rank, _), rs in recompile_reasons(ranked_run.spans).items() if rank == 0 for r in rs]
    assert truth
    for reason in truth:
        shown = [r for r in reasons if reason in r["text"]]
        assert shown, (reason, reasons)
        for r in shown:  # laid out, not hidden, inside the first screen, not covered, with no panel open
            assert r["w"] > 50 and r["h"] > 5 and r["vis"] == "visible" and r["disp"] != "none" and r["op"] == "1"
            assert 0 <= r["top"] < 900 and 0 <= r["left"] < 1400 and r["onTop"] and not r["panelOpen"]

    png = tmp_path / "shot.png"
    completed = chromium_run(tmp_path / "page.html", tmp_path / "profile2", f"--screenshot={png}")
    assert png.exists() and png.stat().st_size > 10_000, completed.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------------------
# README's screenshot: `python tests/test_report_html.py` after `./dev demo`
# ---------------------------------------------------------------------------------------------------------------
def readme_screenshot(root: Path = Path(__file__).resolve().parents[1]) -> Path:
    """Regenerates docs/report-timeline.png from the demo's output (demo-output/torch-otel-demo.jsonl, which
    `./dev demo` writes), rendered with the flags the Chromium test uses."""
    import tempfile

    target = root / "docs" / "report-timeline.png"
    target.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        page = Path(directory) / "demo.html"
        cwd = os.getcwd()
        os.chdir(root)  # so the page names the file as the demo does: demo-output/torch-otel-demo.jsonl
        try:
            code, _, err = run_main("demo-output/torch-otel-demo.jsonl", "--html", str(page))
        finally:
            os.chdir(cwd)
        assert code == 0, err
        completed = chromium_run(page, Path(directory) / "profile", f"--screenshot={target}")
        assert target.exists(), completed.stderr[-2000:]
    return target


if __name__ == "__main__":
    print(readme_screenshot())


STUCK = [Path(__file__).parent / "data" / "report" / name for name in ("stuck0.jsonl", "stuck1.jsonl")]


@pytest.mark.parametrize("files", [STUCK, STUCK[1:]], ids=["two-ranks", "the-stuck-rank-alone"])
def test_a_compile_still_running_is_an_open_ended_bar_with_a_note(files: list[Path]):
    rep = report.read_files([str(p) for p in files]).report
    (stuck,) = rep.unfinished
    page = render_html(rep)
    bars = re.findall(r'<div class="bar k-running"[^>]*style="left:([0-9.]+)%;width:([0-9.]+)%[^>]*>([^<]*)</div>', page)
    assert len(bars) == 1 and float(bars[0][1]) > 0, bars
    assert bars[0][2].startswith("still compiling 0/0 (scaled_cos) · backend_compile · 4.00 s at slow warning 4")
    notes = re.findall(r'<li class="note n-running"[^>]*><i></i><b>([^<]*)</b>: <span class="reason">([^<]*)</span>', page)
    assert notes == [("still compiling 0/0 (scaled_cos)", "backend_compile · 4.00 s at slow warning 4")]
    assert "<h2>Compiles that did not finish</h2>" in page
    assert page.index("<h2>Compiles that did not finish</h2>") < page.index("<h2>Compiles per function</h2>")
    if len(files) == 2:  # on rank 1's lane, and rank 0's slow but finished compile is a plain compile
        lanes = re.findall(r'<b class="lane-title">([^<]*)</b>', page)
        assert lanes == ["rank 0", "rank 1"]
        assert page.index('class="bar k-running"') > page.index('<b class="lane-title">rank 1</b>')
        assert "rank 0 0/0: warned 2×, longest in backend_compile" in page
