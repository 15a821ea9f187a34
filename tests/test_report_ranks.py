"""`torch-otel report` over files from several processes, made by real runs (tests/data/report/make_fixtures.sh):
two serving processes without a rank, and a two-rank run (RANK/WORLD_SIZE/LOCAL_RANK as torchrun sets them, each
rank writing its own file, rank 1 alone seeing a longer sequence at step 2). Compile ids stay readable, the ranks
are compared compile id by compile id, and the compiles only some ranks did are listed with their reasons."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from torch_otel import catalog
from torch_otel.tools import report
from torch_otel.tools.report import read_files, render_text

DATA = Path(__file__).parent / "data" / "report"
SERVE = [DATA / "serve.jsonl", DATA / "serve_second.jsonl"]
RANKS = [DATA / "rank0.jsonl", DATA / "rank1.jsonl"]


def _value(value: dict):
    (kind, inner), = value.items()
    return int(inner) if kind == "intValue" else inner


def raw_spans(path: Path) -> list[dict]:
    """The file's spans as written, with their resource's attributes: the truth, read without the report."""
    spans = []
    for line in path.read_text().splitlines():
        document = json.loads(line)
        for resource in document.get("resourceSpans", []):
            resource_attributes = {a["key"]: _value(a["value"]) for a in resource["resource"]["attributes"]}
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    span = dict(span, resource=resource_attributes)
                    span["attributes"] = {a["key"]: _value(a["value"]) for a in span.get("attributes", [])}
                    spans.append(span)
    return spans


def section(text: str, title: str) -> str:
    match = re.search(rf"^{re.escape(title)}.*?(?=^\S|\Z)", text, re.M | re.S)
    assert match, f"no section {title!r} in\n{text}"
    return match.group(0)


# ---------------------------------------------------------------------------------------------------------------
# Several processes, no rank
# ---------------------------------------------------------------------------------------------------------------
def test_processes_without_a_rank_get_short_labels_and_compile_ids_stay_readable():
    rep = read_files([str(p) for p in SERVE]).report
    instances = {raw_spans(p)[0]["resource"]["service.instance.id"] for p in SERVE}
    assert all(s["resource"]["service.name"] == "unknown_service:python" for p in SERVE for s in raw_spans(p))
    assert len(rep.processes) == 2 and all(re.fullmatch(r"python\[[0-9a-f]{4,}\]", p) for p in rep.processes)
    assert {p[len("python["):-1] for p in rep.processes} == {i.replace("-", "")[:4] for i in instances}
    for width in (report.DEFAULT_WIDTH, 100):
        text = render_text(rep, width)
        assert "unknown_service" not in text
        for title in ("Recompiles", "Graph breaks"):
            body = section(text, title)
            for process in rep.processes:  # every compile id whole, with its process, in every table
                ids = {r.compile_id for r in (rep.recompiles if title == "Recompiles" else rep.graph_breaks)
                       if r.process == process}
                assert ids
                for compile_id in ids:
                    assert re.search(rf"^  {re.escape(process)} {re.escape(compile_id)}\s", body, re.M), (title, body)
        functions = section(text, "Compiles per function")
        for row in rep.functions:
            listed = " ".join(line.strip() for line in functions.splitlines() if not line.startswith("  ") or
                              line.startswith("    "))
            for compile_id in row.compile_ids:
                assert compile_id in listed, (compile_id, functions)
        assert "Compiles across ranks" not in text  # no rank: no rank section


# ---------------------------------------------------------------------------------------------------------------
# A two-rank run
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ranks() -> report.Report:
    return read_files([str(p) for p in RANKS]).report


def truth_by_rank() -> dict[int, dict[str, dict]]:
    found: dict[int, dict[str, dict]] = {}
    for path in RANKS:
        for span in raw_spans(path):
            if span["name"] in (catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE):
                rank = span["resource"][catalog.RESOURCE_RANK]
                entry = found.setdefault(rank, {}).setdefault(span["attributes"][catalog.ATTR_COMPILE_ID],
                                                              {"us": 0, "spans": []})
                entry["us"] += span["attributes"]["pytorch.compile.duration_us"]
                entry["spans"].append(span)
    return found


def test_ranks_are_compared_compile_id_by_compile_id(ranks: report.Report):
    truth = truth_by_rank()
    assert ranks.ranks == (0, 1) and ranks.processes == ("rank 0", "rank 1")
    assert {row.compile_id for row in ranks.rank_compiles} == set(truth[0]) | set(truth[1])
    for row in ranks.rank_compiles:
        assert row.ranks == tuple(rank for rank in (0, 1) if row.compile_id in truth[rank])
        for compile in row.compiles:
            entry = truth[compile.rank][row.compile_id]
            assert compile.duration_us == entry["us"]  # forward and backward together
            misses = sum(s["attributes"].get(report.cache_count_attribute(c, "miss"), 0)
                         for s in entry["spans"] for c in catalog.CACHES)
            assert compile.cache_misses == misses and misses > 0  # inductor: FX graph and AOTAutograd caches
        if len(row.compiles) > 1:  # the slowest rank only when it took at least 10 % and 0.05 s over the median
            durations = [c.duration_us for c in row.compiles]
            over = max(durations) - statistics.median(durations)
            meaningful = over >= max(50_000, 0.1 * statistics.median(durations))
            assert row.slowest == (max(row.compiles, key=lambda c: c.duration_us).rank if meaningful else None)
            assert row.over_median_us == (pytest.approx(over) if meaningful else 0.0)


def test_rank_section_names_the_slowest_rank_and_the_compiles_of_some_ranks_only(ranks: report.Report):
    text = render_text(ranks)
    across = section(text, "Compiles across ranks")
    shared = [row for row in ranks.rank_compiles if len(row.compiles) == 2]
    assert shared
    for row in shared:
        assert re.search(rf"^  {re.escape(row.compile_id)}\s", across, re.M)
        slowest = max(row.compiles, key=lambda c: c.duration_us)
        median = statistics.median(c.duration_us for c in row.compiles)
        match = re.search(rf"slowest: rank (\d+), \+([0-9.]+) s over the median \(compile id {re.escape(row.compile_id)}\)",
                          across)
        if slowest.duration_us - median < max(50_000, 0.1 * median):  # noise: no slowest line
            assert match is None, across
            continue
        assert match, across
        assert int(match.group(1)) == slowest.rank
        assert float(match.group(2)) == pytest.approx((slowest.duration_us - median) / 1e6, abs=0.0006)
    only = section(text, "Compiles on some ranks only")
    diverging = ranks.rank_divergences
    assert {row.compile_id for row in diverging} == {"0/1", "1/1"}  # rank 1's longer sequence: it alone recompiled
    for row in diverging:
        assert row.ranks == (1,) and row.missing == (0,)
        (reason,) = row.reasons
        assert re.fullmatch(r"[01]/0: tensor '[xy]' size mismatch at index 0\. expected 32, actual 40", reason)
        line = next(line for line in only.splitlines() if line.startswith(f"  {row.compile_id} "))
        assert "rank 1" in line and "model_step" in line and reason in line
    assert "model_step (resumed after line 11)" in only  # 1/1 is the continuation after the graph break


def test_rank_tables_are_data_for_both_views(ranks: report.Report):
    tables = {table.key: table for table in report.report_tables(ranks)}
    assert tables["ranks"].headers == ("compile id", "function", "rank 0", "rank 1", "slowest")
    assert all(isinstance(cell, str) for row in tables["ranks"].rows for cell in row)
    assert tables["rank_only"].rows and all(row[1] == "rank 1" for row in tables["rank_only"].rows)
    for row in ranks.rank_compiles:  # a lane per rank on a common clock: every compile has its start and end
        assert all(0 < c.start_ns < c.end_ns for c in row.compiles)
    single = read_files([str(RANKS[0])]).report
    assert single.ranks == () and not single.rank_compiles
    assert "Compiles across ranks" not in render_text(single)


def test_cache_counts_backward_compiles_and_explains_its_columns(ranks: report.Report):
    spans = [s for p in RANKS for s in raw_spans(p)]
    backward = [s for s in spans if s["name"] == catalog.SPAN_BACKWARD_COMPILE]
    fx_miss = report.cache_count_attribute("inductor_fx_local", "miss")
    assert backward and all(s["attributes"].get(fx_miss) == 1 for s in backward)  # each backward graph: one FX miss
    rows = {row.cache: row for row in ranks.caches}
    for cache in ("inductor_fx_local", "aotautograd_local"):
        for result, got in (("hit", rows[cache].span_hits), ("miss", rows[cache].span_misses)):
            key = report.cache_count_attribute(cache, result)
            assert got == sum(s["attributes"].get(key, 0) for s in spans
                              if s["name"] in (catalog.SPAN_COMPILE, catalog.SPAN_BACKWARD_COMPILE))
    forward_only = sum(s["attributes"].get(fx_miss, 0) for s in spans if s["name"] == catalog.SPAN_COMPILE)
    assert rows["inductor_fx_local"].span_misses == forward_only + len(backward)
    cache = section(render_text(ranks), "Cache")
    assert re.search(r"^  inductor_fx_local\s", cache, re.M) and re.search(r"^  aotautograd_local\s", cache, re.M)
    assert "remote" not in cache.split("hits / misses")[0]  # all-zero rows: caches these backends never looked up
    assert "hits / misses (spans): how often the compiles in these files found their compiled code" in " ".join(
        line.strip() for line in cache.splitlines())
    assert "6 torch.compile and 6 backward compile spans" in " ".join(line.strip() for line in cache.splitlines())
    assert "(metric): the same lookups, counted by the pytorch.compile.cache.lookups counter" in " ".join(
        line.strip() for line in cache.splitlines())


# ---------------------------------------------------------------------------------------------------------------
# A two-rank run killed while rank 1 was stuck in its backend compile (stuck_workload.py, make_fixtures.sh)
# ---------------------------------------------------------------------------------------------------------------
STUCK = [DATA / "stuck0.jsonl", DATA / "stuck1.jsonl"]


def raw_records(path: Path, event_name: str) -> list[tuple[dict, dict]]:
    """(resource attributes, record attributes) of the file's log records with that event name, as written."""
    found = []
    for line in path.read_text().splitlines():
        for resource in json.loads(line).get("resourceLogs", []):
            resource_attributes = {a["key"]: _value(a["value"]) for a in resource["resource"]["attributes"]}
            for scope in resource["scopeLogs"]:
                for record in scope["logRecords"]:
                    if record.get("eventName") == event_name:
                        attributes = {a["key"]: a["value"] for a in record.get("attributes", [])}
                        found.append((resource_attributes, attributes))
    return found


def test_a_compile_still_running_when_the_file_ends_is_reported_not_taken_for_a_divergence():
    slow1 = raw_records(STUCK[1], catalog.EVENT_COMPILE_SLOW)
    assert len(slow1) == 4 and not [s for s in raw_spans(STUCK[1]) if s["name"] == catalog.SPAN_COMPILE]
    last = max(float(a[catalog.ATTR_ELAPSED]["doubleValue"]) for _, a in slow1)
    rep = read_files([str(p) for p in STUCK]).report
    (stuck,) = rep.unfinished
    assert (stuck.process, stuck.rank, stuck.compile_id, stuck.function) == ("rank 1", 1, "0/0", "scaled_cos")
    assert stuck.phase == "backend_compile" and stuck.elapsed_s == last and stuck.warned and stuck.warnings == 4
    (row,) = rep.rank_compiles
    assert row.ranks == (0,) and row.running_ranks == (1,) and row.missing == () and rep.rank_divergences == ()
    for width in (report.DEFAULT_WIDTH, 120, 80):
        text = render_text(rep, width)
        assert text.index("Compiles that did not finish") < text.index("Compiles per function")  # near the top
        unfinished = section(text, "Compiles that did not finish")
        assert re.search(r"^  rank 1 0/0\s+scaled_cos\s+(\S+stuck_workload\.py:17\s+)?backend_compile\s+"
                         r"4\.00 s at slow warning 4$", unfinished, re.M), unfinished
        assert "stuck_workload.py:17" in unfinished and "still running when the file ends" in unfinished
        across = section(text, "Compiles across ranks")
        (cells,) = [line for line in across.splitlines() if line.startswith("  0/0 ")]
        assert "still compiling" in cells and " - " not in f"{cells} " and "backend_compile" in across
        assert "Compiles on some ranks only" not in text and "diverged" not in text
        assert all(len(line) <= width for line in text.splitlines()), width


def test_slow_warnings_of_a_finished_compile_are_shown():
    rep = read_files([str(p) for p in STUCK]).report
    warned = raw_records(STUCK[0], catalog.EVENT_COMPILE_SLOW)
    assert len(warned) == 2
    (function,) = rep.functions
    (slow,) = function.slow
    assert (slow.process, slow.compile_id, slow.warnings, slow.phase) == ("rank 0", "0/0", 2, "backend_compile")
    assert slow.phase_seconds == max(float(a[catalog.ATTR_PHASE_ELAPSED]["doubleValue"]) for _, a in warned)
    text = section(render_text(rep, 80), "Compiles per function")
    assert "slow: rank 0 0/0: warned 2×, longest in backend_compile (0.828 s)" in text


def test_a_rank_cell_says_hits_and_misses_in_words():
    rep = read_files([str(p) for p in RANKS]).report
    table = {t.key: t for t in report.report_tables(rep)}["ranks"]
    cells = [cell for row in table.rows for cell in row[2:-1] if cell != "-"]
    assert cells and all(re.fullmatch(r"[0-9.]+ m?s · [0-9]+ hit [0-9]+ miss · (re)?compiled", c) for c in cells)


def _as_rank(source: Path, rank: int, world_size: int, target: Path) -> Path:
    """A real rank file relabelled as another rank of a larger run: its resource's rank, world size and instance id."""
    renamed = {
        catalog.RESOURCE_RANK: {"intValue": str(rank)},
        catalog.RESOURCE_LOCAL_RANK: {"intValue": str(rank % 8)},
        catalog.RESOURCE_WORLD_SIZE: {"intValue": str(world_size)},
        "service.instance.id": {"stringValue": f"00000000-0000-4000-8000-{rank:012d}"},
    }
    lines = []
    for line in source.read_text().splitlines():
        document = json.loads(line)
        for key in ("resourceSpans", "resourceLogs", "resourceMetrics"):
            for resource in document.get(key, []):
                for attribute in resource["resource"]["attributes"]:
                    attribute["value"] = renamed.get(attribute["key"], attribute["value"])
        lines.append(json.dumps(document))
    target.write_text("\n".join(lines) + "\n")
    return target


def test_many_ranks_are_summarised_in_one_column(tmp_path):
    """Ten ranks (the two real ranks' files, each relabelled five times: odd ranks saw rank 1's longer sequence):
    one summary column instead of ten, naming the ranks that did not compile the divergent compile ids."""
    files = [_as_rank(RANKS[rank % 2], rank, 10, tmp_path / f"rank{rank}.jsonl") for rank in range(10)]
    rep = read_files([str(f) for f in files]).report
    assert rep.ranks == tuple(range(10))
    text = render_text(rep, report.DEFAULT_WIDTH)
    across = section(text, "Compiles across ranks")
    header = across.splitlines()[1]
    assert "10 ranks" in header and "rank 0" not in header and "rank 9" not in header
    assert all(len(line) <= report.DEFAULT_WIDTH for line in text.splitlines())
    divergent = {row.compile_id for row in rep.rank_divergences}
    assert divergent, "rank 1's longer sequence compiled something rank 0 did not"
    for compile_id in divergent:
        (row,) = [line for line in across.splitlines() if line.strip().startswith(compile_id + " ")]
        assert "5 of 10 compiled" in row and "not on rank 0, rank 2, rank 4, rank 6, rank 8" in row, row
    shared = [r.compile_id for r in rep.rank_compiles if r.compile_id not in divergent]
    (row,) = [line for line in across.splitlines() if line.strip().startswith(shared[0] + " ")]
    assert "10 of 10 compiled" in row and "min " in row and "median " in row and "not on" not in row, row
    only = section(text, "Compiles on some ranks only")
    assert "rank 1, rank 3, rank 5, rank 7, rank 9" in only
