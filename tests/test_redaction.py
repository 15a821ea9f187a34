"""Redaction of absolute paths and code bodies before export, on real compiles."""

from __future__ import annotations

import json
import linecache
import logging
import os
import re
import shutil
import sys

import pytest
from torch.utils._traceback import shorten_filename
import torch
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import torch_otel
from torch_otel.signals import redaction
from torch_otel.signals.redaction import Redactor
from torch_otel.config.settings import Settings, SettingsError

from e2e import BIN, ROOT, run_child
from inmemory import LogCapture, recompiling_workload
from torch_state import preserved_torch_logging

HERE = __file__


@pytest.fixture(autouse=True)
def clean_torch_logging():
    with preserved_torch_logging():
        yield


def exported_text(settings: Settings) -> tuple[str, list]:
    capture = LogCapture()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    torch._logging.set_logs(dynamo=logging.INFO, recompiles=True, graph_breaks=True, graph_code=True)
    torch_otel.instrument(tracer_provider=tracer_provider, logger_provider=capture.provider, settings=settings)
    try:
        recompiling_workload()
        records = capture.records()
    finally:
        torch_otel.uninstrument()
    parts = []
    for readable in records:
        parts.append(str(readable.log_record.body))
        parts.extend(str(v) for v in (readable.log_record.attributes or {}).values())
    for span in spans.get_finished_spans():
        parts.extend(str(v) for v in span.attributes.values())
        parts.extend(str(v) for event in span.events for v in event.attributes.values())
        parts.append(span.status.description or "")
    return "\n".join(parts), records


def test_without_redaction_paths_and_code_are_exported():
    text, _ = exported_text(Settings())
    assert "/tests/inmemory.py" in text and "torch/_dynamo" in text
    assert "def forward" in text


@pytest.mark.parametrize("mode", ["hash", "remove"])
def test_paths_are_redacted_everywhere(mode):
    text, records = exported_text(Settings(redact_paths=mode))
    assert "/tests/inmemory.py" not in text and "/site-packages/" not in text
    assert "inmemory.py" in text  # the file name stays useful
    if mode == "hash":
        assert "<" in text and ">/inmemory.py" in text


def test_code_bodies_are_redacted():
    text, records = exported_text(Settings(redact_code=True))
    assert "def forward" not in text
    graph_code = [r.log_record for r in records if r.log_record.attributes.get("pytorch.log.artifact") == "graph_code"]
    assert graph_code and all(r.body.startswith("<code redacted: ") for r in graph_code)
    assert all(r.attributes["pytorch.log.redacted"] is True for r in graph_code)
    recompiles = [r for r in records if r.log_record.attributes.get("pytorch.log.artifact") == "recompiles"]
    # This file is user source too: its own string literals are redacted wherever they appear, so the check that
    # torch's reason survives is a pattern that is not itself a literal of the text it looks for.
    assert recompiles and re.search(r"size\s+mismatch", recompiles[0].log_record.body)


def test_redactor_units():
    redactor = Redactor("remove")
    assert redactor.text('File "/a/b/c.py", line 3 and C:\\work\\x.py') == 'File "c.py", line 3 and x.py'
    assert redactor.path("relative/path.py") == "path.py"  # a relative directory can be as telling as any
    assert redactor.path("<string>") == "<string>"
    assert Redactor("off").text("/a/b/c.py") == "/a/b/c.py"


def test_bad_mode_is_a_clear_error():
    with pytest.raises(SettingsError, match="TORCH_OTEL_REDACT_PATHS='everything'.*off, hash, remove"):
        Settings.from_env({"TORCH_OTEL_REDACT_PATHS": "everything"})


@pytest.fixture(autouse=True)
def fresh_knowledge(monkeypatch):
    """What redaction knows starts empty in every test (it is process-wide, learned from linecache): what other
    tests compiled or quoted earlier in the run is not user source here, so test order does not matter."""
    monkeypatch.setattr(linecache, "cache", {})
    monkeypatch.setattr(redaction, "_KNOWN", redaction._Knowledge())


def test_known_directories_with_spaces_and_unicode_in_every_form(tmp_path, monkeypatch, fresh_knowledge):
    secret = tmp_path / "secret dir ü MARKERDIR"
    (secret / "pkg").mkdir(parents=True)
    source = secret / "train.py"
    source.write_text("def step(x):\n    return x * 2  # MARKERSRC in a comment\n")
    monkeypatch.chdir(tmp_path)
    for mode in ("hash", "remove"):
        redactor = Redactor(mode)
        assert "MARKERDIR" not in redactor.path(str(source)) and redactor.path(str(source)).endswith("train.py")
        texts = [
            f'File "{source}", line 2, in step',  # absolute, as in a stack trace
            "# return x * 2  # secret dir ü MARKERDIR/train.py:2 in step",  # relative to the working directory
            f"# {shorten_filename(str(source))}:2 in step",  # as torch prints it in guards bodies
            f"cwd {secret}, package {secret / 'pkg'}",  # bare directories
            json.dumps({"file": str(source)}),  # JSON, non-ASCII escaped
        ]
        for text in texts:
            assert "MARKERDIR" not in redactor.text(text), (mode, text)
        hashed = Redactor("hash").text(f"{source} and secret dir ü MARKERDIR/train.py")
        assert len(set(re.findall(r"<[0-9a-f]{12}>/train\.py", hashed))) == 1  # one directory, one hash, any form


def test_code_means_any_quote_of_user_source(tmp_path, fresh_knowledge):
    source = tmp_path / "model_src.py"
    source.write_text('def f(x):\n    y = x.sin()  # MARKERSRC comment\n    return y + len("MARKERSRC literal")\n')
    redactor = Redactor(code=True)
    redactor.path(str(source))  # as code.file.path: the compiled code's co_filename
    text = redactor.text(f"TRACE starts_line {source}:2 in f\n        y = x.sin()  # MARKERSRC comment\n"
                         "TRACE LOAD_CONST MARKERSRC literal []\n"
                         "| +- GUARD: x  # return y + len(\"MARKERSRC literal\")  # model_src.py:3 in f")
    assert "MARKERSRC" not in text and "x.sin()" not in text
    assert text.count("<source redacted>") == 3 and "TRACE starts_line" in text and "model_src.py:3 in f" in text
    assert redactor.text("return y") == "return y"  # short lines and words that merely recur are not code


# -- as an adversary: markers in a directory name and in source, through the real entry point --------------------
REDACTION_APP = ROOT / "tests" / "workloads" / "redaction_app"
VERBOSE_LOGS = "+dynamo,guards,recompiles,graph_breaks,trace_source,trace_call,bytecode,output_code"


def exported_and_report(tmp_path, paths: str, code: str, cwd) -> tuple[bytes, bytes]:
    """Every byte `torch-otel run` wrote to its embedded-default file (nothing else configured), and the HTML
    report of it, for the marked workload run from a directory named with a space, a non-ASCII letter and a marker."""
    secret = tmp_path / "secret dir ü MARKERDIR"
    shutil.copytree(REDACTION_APP, secret, ignore=shutil.ignore_patterns("__pycache__"))
    exported, html = tmp_path / "export.json", tmp_path / "report.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCH_")) and k != "PYTHONPATH"}
    env.update(TORCH_LOGS=VERBOSE_LOGS, TORCH_OTEL_FILE=str(exported), TORCH_OTEL_REDACT_PATHS=paths,
               TORCH_OTEL_REDACT_CODE=code, PYTHONUNBUFFERED="1")
    cwd = tmp_path if cwd == "tmp" else ROOT
    script = os.path.relpath(secret / "app.py", cwd) if cwd == tmp_path else str(secret / "app.py")
    run = run_child([str(BIN / "torch-otel"), "run", "--", sys.executable, script], env, cwd=cwd)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "MARKERSRC" in run.stderr and "MARKERDIR" in run.stderr  # torch itself prints them: not our concern
    report = run_child([str(BIN / "torch-otel"), "report", str(exported), "--html", str(html)], env, cwd=cwd)
    assert report.returncode == 0, report.stderr[-4000:]
    return exported.read_bytes(), html.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("paths, code, cwd", [
    ("off", "off", "tmp"), ("hash", "on", "tmp"), ("remove", "off", "root"), ("off", "on", "root"),
])
def test_no_marker_reaches_the_export_or_the_report(tmp_path, paths, code, cwd):
    exported, html = exported_and_report(tmp_path, paths, code, cwd)
    assert b"app.py" in exported and b"helpers.py" in exported  # file names stay useful
    for data in (exported, html):
        if paths == "off":
            assert data.count(b"MARKERDIR") > 10  # the control: unredacted, the directory is everywhere
        else:
            assert b"MARKERDIR" not in data and b"secret dir" not in data
        if code == "off":
            assert data.count(b"MARKERSRC") > 10
        else:
            assert b"MARKERSRC" not in data
    if code == "on":
        assert b"<source redacted>" in exported and b"<code redacted: " in exported
        assert b"exception.stacktrace" in exported  # the failing backend's traceback is exported, redacted
