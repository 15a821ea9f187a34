"""TORCH_LOGS_TRACE_ID_FILTER: the bridge exports exactly the torch log records torch's own handlers print."""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest
import torch
import torch._logging._internal as internal

from e2e import BIN, run_child
from inmemory import LogCapture, instrumented, recompiling_workload
from torch_otel import catalog
from torch_otel.capture import torch_internals
from torch_otel.capture.log_handler import TorchLogHandler, TraceIdFilteredHandler
from torch_otel.config.settings import Settings
from torch_state import preserved_torch_logging

# recompiling_workload compiles 0/0 and its graph break's resume function 1/0, then recompiles both: 0/1 and 1/1.
KEPT = "0/1"
CUSTOM_FORMAT_ARTIFACT = "custom_format_test_artifact"  # registered by torch with log_format="" (its own formatter)


@pytest.fixture(autouse=True)
def clean_torch_logging():
    with preserved_torch_logging():
        yield


@pytest.fixture
def capture():
    return LogCapture()


@pytest.fixture
def kept_only(monkeypatch):
    """The filter torch would have read from TORCH_LOGS_TRACE_ID_FILTER=[0/1] at import, set on the formatter
    torch's own handlers use (and restored after the test)."""
    monkeypatch.setattr(internal.DEFAULT_FORMATTER, "_trace_id_filter", {f"[{KEPT}]"})


class TorchPrints(logging.Handler):
    """The messages torch's own handlers print: each record formatted by torch's DEFAULT_FORMATTER, kept when that
    is not empty. Put on the loggers torch puts its handlers on."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(internal.DEFAULT_FORMATTER)
        self.printed: list[str] = []
        self.suppressed = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.format(record):
            self.printed.append(record.getMessage())
        else:
            self.suppressed += 1


def torch_log_records(capture: LogCapture) -> list:
    """Records of torch's own log output, without torch-otel's product events (pytorch.recompile, ...)."""
    return [
        r.log_record
        for r in capture.records()
        if r.log_record.event_name is None or r.log_record.event_name.startswith("pytorch.artifact.")
    ]


def enable_logs_with_custom_format_artifact(monkeypatch) -> None:
    monkeypatch.setenv("TORCH_LOGS", f"+dynamo,recompiles,graph_breaks,{CUSTOM_FORMAT_ARTIFACT}")
    internal._init_logs()  # torch applies TORCH_LOGS again (preserved_torch_logging restores its state)


def test_exported_records_are_exactly_what_torch_prints_under_the_filter(capture, kept_only, monkeypatch):
    enable_logs_with_custom_format_artifact(monkeypatch)
    torch_prints = TorchPrints()
    loggers = [logging.getLogger(qname) for qname in internal.log_registry.get_log_qnames()]
    for log in loggers:
        log.addHandler(torch_prints)
    with instrumented(capture, Settings(spans=False)):
        logging.getLogger("torch._dynamo").info("outside any compile")
        torch._logging.getArtifactLogger("torch._dynamo", CUSTOM_FORMAT_ARTIFACT).debug("own format, no compile")
        recompiling_workload()
        records = torch_log_records(capture)
    for log in loggers:
        log.removeHandler(torch_prints)

    assert [r.body for r in records] == torch_prints.printed
    assert torch_prints.suppressed > len(records)  # the filter did drop most of what +dynamo logs
    custom = [r for r in records if r.attributes.get(catalog.ATTR_ARTIFACT) == CUSTOM_FORMAT_ARTIFACT]
    assert [r.body for r in custom] == ["own format, no compile"]  # torch's formatter lets it bypass the filter
    rest = [r for r in records if r not in custom]
    assert {r.attributes.get(catalog.ATTR_COMPILE_ID) for r in rest} == {KEPT}
    assert {"recompiles", "graph_breaks"} <= {r.attributes.get(catalog.ATTR_ARTIFACT) for r in rest}


def test_product_events_and_structured_records_are_not_filtered(capture, kept_only):
    torch._logging.set_logs(dynamo=logging.DEBUG, recompiles=True)
    with instrumented(capture, Settings(structured=True)):
        bridge_handlers = {
            log.name: [h for h in log.handlers if isinstance(h, TorchLogHandler)]
            for log in (logging.getLogger("torch._dynamo"), internal.trace_log)
        }
        recompiling_workload()
        records = [r.log_record for r in capture.records()]
    assert [type(h) for h in bridge_handlers["torch._dynamo"]] == [TraceIdFilteredHandler]
    assert [type(h) for h in bridge_handlers[internal.trace_log.name]] == [TorchLogHandler]

    def compile_ids(event_prefix: str) -> set[str]:
        return {
            r.attributes.get(catalog.ATTR_COMPILE_ID) for r in records if (r.event_name or "").startswith(event_prefix)
        }

    assert compile_ids(catalog.EVENT_RECOMPILE) == {"0/1", "1/1"}
    assert {"0/0", "1/0", "0/1", "1/1"} <= compile_ids(catalog.STRUCTURED_TRACE_EVENT_PREFIX)
    assert compile_ids("pytorch.artifact.") == {KEPT}


def test_without_a_filter_the_handler_is_the_unfiltered_one(capture):
    assert torch_internals.trace_id_filter() == frozenset()
    torch._logging.set_logs(dynamo=logging.DEBUG)
    with instrumented(capture):
        handlers = [h for h in logging.getLogger("torch._dynamo").handlers if isinstance(h, TorchLogHandler)]
        assert [type(h) for h in handlers] == [TorchLogHandler]
        logging.getLogger("torch._dynamo").info("outside any compile")
        assert "outside any compile" in [r.body for r in torch_log_records(capture)]


def test_a_plain_default_formatter_means_no_filter(monkeypatch):
    """With TORCH_LOGS_FORMAT set, torch's DEFAULT_FORMATTER is a plain logging.Formatter and filters nothing."""
    monkeypatch.setattr(internal.DEFAULT_FORMATTER, "_trace_id_filter", {"[0/1]", "[1/0]"})
    assert torch_internals.trace_id_filter() == {"[0/1]", "[1/0]"}
    monkeypatch.setattr(internal, "DEFAULT_FORMATTER", logging.Formatter("%(message)s"))
    assert torch_internals.trace_id_filter() == frozenset()
    assert torch_internals.trace_id_filter_check(*torch_internals.compile_readers()) is None


# -- the real variable, read by torch at import: a child process under `torch-otel run` -----------------------------

WORKLOAD = """
import torch

def step(x):
    y = x * 2
    torch._dynamo.graph_break()
    return y + 1

compiled = torch.compile(step, backend="eager", dynamic=False)
compiled(torch.ones(4))
compiled(torch.ones(8))
"""
# One line torch's stderr handler printed for the kept compile: "V1201 04:37:38.044000 20915 path.py:12] [0/1] text"
TORCH_LINE = re.compile(r"^[VIWEC]\d{4} [\d:.]+ \d+ \S+:\d+\] \[(?P<compile_id>[^\]]+)\] (?P<text>.*)$")
FORMAT_MARK = "TORCHLOG|"


def run_filtered(tmp_path: Path, **extra: str) -> tuple[list[dict], str]:
    """Runs WORKLOAD under `torch-otel run` with TORCH_LOGS_TRACE_ID_FILTER=[0/1] and the file exporter; returns
    the exported torch log records (attributes flattened) and torch's stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_"))}
    target = tmp_path / "run.jsonl"
    env.update(
        TORCH_LOGS="+dynamo,recompiles",
        TORCH_LOGS_TRACE_ID_FILTER=f" [{KEPT}],,",
        TORCH_OTEL_FILE=str(target),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    env.pop("PYTHONPATH", None)
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, "-c", WORKLOAD], env, cwd=tmp_path)
    assert run.returncode == 0 and target.exists(), run.stderr[-3000:]
    records = []
    for line in target.read_text().splitlines():
        for resource_logs in json.loads(line).get("resourceLogs", []):
            for scope_logs in resource_logs["scopeLogs"]:
                for record in scope_logs["logRecords"]:
                    event = record.get("eventName")
                    if event is None or event.startswith("pytorch.artifact."):
                        attributes = {a["key"]: next(iter(a["value"].values())) for a in record.get("attributes", [])}
                        records.append({"event": event, "body": record["body"]["stringValue"], **attributes})
    return records, run.stderr


@pytest.mark.slow
def test_child_process_exports_the_lines_torch_printed_for_the_filtered_compile(tmp_path):
    records, stderr = run_filtered(tmp_path)
    assert records and {r.get(catalog.ATTR_COMPILE_ID) for r in records} == {KEPT}
    exported = collections.Counter()
    for record in records:
        artifact = f"[__{record['event'].removeprefix('pytorch.artifact.')}] " if record["event"] else ""
        exported.update(artifact + line for line in record["body"].split("\n"))
    printed = [m for m in map(TORCH_LINE.match, stderr.splitlines()) if m]
    assert {m["compile_id"] for m in printed} == {KEPT}
    assert exported == collections.Counter(m["text"] for m in printed)


@pytest.mark.slow
def test_child_process_with_torch_logs_format_set_exports_every_record(tmp_path):
    records, stderr = run_filtered(tmp_path, TORCH_LOGS_FORMAT=FORMAT_MARK + "%(message)s")
    assert len(records) == sum(line.startswith(FORMAT_MARK) for line in stderr.splitlines())
    compile_ids = {r.get(catalog.ATTR_COMPILE_ID) for r in records}
    assert None in compile_ids and {"0/0", "1/0", "0/1", "1/1"} <= compile_ids
