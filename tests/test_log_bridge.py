"""The log bridge on real torch.compile runs, exported to in-memory OTel pipelines."""

from __future__ import annotations

import logging
import re

import pytest
import torch
import torch._logging._internal as internal
from opentelemetry import trace

import torch_otel
from torch_otel import catalog
from torch_otel.exporters.delivery import Tally
from torch_otel.exporters.log_batching import ByteBudgetLogExporter, split_by_bytes
from torch_otel.capture.log_handler import TorchLogHandler
from torch_otel.config.settings import Settings

from inmemory import LogCapture, app_tracer, instrumented, recompiling_workload
from torch_state import preserved_torch_logging

LOGS_ONLY = Settings(spans=False)  # without compile spans, records sit directly in the app span
COMPILE_ID = re.compile(r"^!?\d+/\d+(_\d+)?$|^!\d+/\d+/\d+$")


@pytest.fixture(autouse=True)
def clean_torch_logging():
    with preserved_torch_logging():
        yield


@pytest.fixture
def capture():
    return LogCapture()


def enable_recompile_logs() -> None:
    torch._logging.set_logs(dynamo=logging.DEBUG, recompiles=True, graph_breaks=True, guards=True)


def our_handlers(logger: logging.Logger) -> list[TorchLogHandler]:
    return [h for h in logger.handlers if isinstance(h, TorchLogHandler)]


def test_artifacts_become_named_events_scoped_by_component(capture):
    enable_recompile_logs()
    with instrumented(capture, LOGS_ONLY):
        with app_tracer().start_as_current_span("request") as span:
            recompiling_workload()
        records = capture.records()
    registered = internal.log_registry.get_log_qnames()
    artifacts = {r.log_record.attributes.get(catalog.ATTR_ARTIFACT) for r in records}
    assert {"recompiles", "graph_breaks", "guards"} <= artifacts
    for readable in records:
        record = readable.log_record
        scope = readable.instrumentation_scope
        assert scope.name in registered and "__" not in scope.name
        assert scope.version == torch.__version__
        artifact = record.attributes.get(catalog.ATTR_ARTIFACT)
        assert record.event_name == (f"pytorch.artifact.{artifact}" if artifact else None)
        assert record.trace_id == span.get_span_context().trace_id
        assert record.span_id == span.get_span_context().span_id
        assert record.attributes[catalog.ATTR_CODE_LINE] > 0
    recompiles = capture.by_artifact("recompiles")
    assert recompiles and all(r.instrumentation_scope.name == "torch._dynamo" for r in recompiles)
    assert all(r.log_record.attributes[catalog.ATTR_COMPONENT] == "dynamo" for r in recompiles)
    assert "size mismatch at index 0. expected 4, actual 8" in recompiles[0].log_record.body
    assert not recompiles[0].log_record.body.startswith("V")  # no stderr prefix


def test_records_emitted_during_a_compile_carry_its_compile_id(capture):
    enable_recompile_logs()
    with instrumented(capture):
        recompiling_workload()
        records = capture.records()
    for artifact in ("recompiles", "graph_breaks", "guards"):
        for readable in capture.by_artifact(artifact):
            assert COMPILE_ID.match(readable.log_record.attributes[catalog.ATTR_COMPILE_ID])
    recompile_ids = {r.log_record.attributes[catalog.ATTR_COMPILE_ID] for r in capture.by_artifact("recompiles")}
    assert recompile_ids == {"0/1", "1/1"}  # the graph break's resume function recompiles too
    assert len(records) > len(capture.by_artifact("guards"))


def test_records_stay_in_the_app_span_when_no_tracer_provider_is_configured(capture):
    enable_recompile_logs()
    with instrumented(capture):  # spans on, but the global tracer provider is the API's no-op proxy
        with app_tracer().start_as_current_span("request") as span:
            recompiling_workload()
        records = capture.by_artifact("recompiles")
    assert records and all(r.log_record.span_id == span.get_span_context().span_id for r in records)


def test_record_outside_a_compile_has_no_compile_id(capture):
    enable_recompile_logs()
    with instrumented(capture):
        logging.getLogger("torch._dynamo.eval_frame").info("outside any compile")
        (record,) = [r.log_record for r in capture.records() if r.log_record.body == "outside any compile"]
    assert catalog.ATTR_COMPILE_ID not in record.attributes
    assert record.severity_text == "INFO" and record.severity_number.value == 9


def test_unenabled_artifacts_and_levels_are_not_exported(capture):
    torch._logging.set_logs(dynamo=logging.INFO)
    with instrumented(capture):
        recompiling_workload()
        records = capture.records()
    assert not [r for r in records if r.log_record.attributes.get(catalog.ATTR_ARTIFACT)]
    assert all(r.log_record.severity_number.value >= 9 for r in records)


def test_handler_is_reattached_when_torch_reinitialises_logging(capture):
    torch._logging.set_logs(dynamo=logging.INFO)
    with instrumented(capture):
        torch._logging.set_logs(dynamo=logging.DEBUG, recompiles=True)
        dynamo = logging.getLogger("torch._dynamo")
        assert len(our_handlers(dynamo)) == 1 and dynamo.handlers[-1] is our_handlers(dynamo)[0]
        recompiling_workload()
        assert capture.by_artifact("recompiles")


def test_user_module_gets_its_own_scope(capture, tmp_path, monkeypatch):
    (tmp_path / "my_model_lib.py").write_text("import logging\nlog = logging.getLogger(__name__)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with instrumented(capture):
        torch._logging.set_logs(modules={"my_model_lib": logging.INFO})
        import my_model_lib

        my_model_lib.log.info("hello from user code")
        (record,) = [r for r in capture.records() if r.log_record.body == "hello from user code"]
    assert record.instrumentation_scope.name == "my_model_lib"
    assert record.log_record.attributes[catalog.ATTR_COMPONENT] == "my_model_lib"


def test_uninstrument_is_the_exact_inverse(capture):
    enable_recompile_logs()
    loggers = [logging.getLogger(q) for q in internal.log_registry.get_log_qnames()]
    before = {log.name: list(log.handlers) for log in loggers}
    init_logs = (internal._init_logs, torch._logging._init_logs)
    with instrumented(capture, Settings(torch_stderr=False)):
        assert all(our_handlers(log) for log in loggers)
        assert internal._init_logs is not init_logs[0]
    assert {log.name: list(log.handlers) for log in loggers} == before
    assert (internal._init_logs, torch._logging._init_logs) == init_logs


def test_torch_stderr_kept_by_default_and_removable(capture):
    enable_recompile_logs()
    dynamo = logging.getLogger("torch._dynamo")
    torch_handlers = [h for h in dynamo.handlers if internal._is_torch_handler(h)]
    assert torch_handlers
    with instrumented(capture):
        assert all(h in dynamo.handlers for h in torch_handlers)
    with instrumented(capture, Settings(torch_stderr=False)):
        assert not [h for h in dynamo.handlers if internal._is_torch_handler(h)]
        torch._logging.set_logs(dynamo=logging.DEBUG)  # torch re-adds its handlers; the setting still holds
        assert not [h for h in dynamo.handlers if internal._is_torch_handler(h)]
        logging.getLogger("torch._dynamo").debug("only to OpenTelemetry")
        assert [r for r in capture.records() if r.log_record.body == "only to OpenTelemetry"]


def test_oversized_body_is_capped_and_says_so(capture):
    torch._logging.set_logs(dynamo=logging.DEBUG)
    with instrumented(capture, Settings(max_body_bytes=1024)):
        logging.getLogger("torch._dynamo").debug("é" * 5000)
        (record,) = [r.log_record for r in capture.records() if r.log_record.body.startswith("é")]
    assert len(record.body.encode()) <= 1024
    assert record.attributes[catalog.ATTR_TRUNCATED] is True
    assert record.attributes[catalog.ATTR_ORIGINAL_SIZE] == 10000


def test_handler_never_raises_into_torch(capture):
    torch._logging.set_logs(dynamo=logging.DEBUG)
    with instrumented(capture):
        bridge = torch_otel.TorchInstrumentor.bridge
        dropped = bridge.dropped
        logging.getLogger("torch._dynamo").handlers[-1].handle(
            logging.LogRecord("torch._dynamo", logging.INFO, __file__, 1, "%d", ("not a number",), None)
        )
        assert bridge.dropped == dropped + 1


def test_queue_is_bounded_and_counts_drops(capture):
    torch._logging.set_logs(dynamo=logging.DEBUG)
    with instrumented(capture, Settings(queue_size=10)):
        bridge = torch_otel.TorchInstrumentor.bridge
        with bridge._export_lock:  # hold the export thread off so the queue fills
            for i in range(50):
                logging.getLogger("torch._dynamo").debug("record %d", i)
        assert bridge.dropped >= 40
        assert len([r for r in capture.records() if r.log_record.body.startswith("record ")]) <= 10


def test_exception_info_becomes_exception_attributes(capture):
    torch._logging.set_logs(dynamo=logging.DEBUG)
    with instrumented(capture):
        try:
            raise RuntimeError("boom in dynamo")
        except RuntimeError:
            logging.getLogger("torch._dynamo").exception("compile failed")
        (record,) = [r.log_record for r in capture.records() if r.log_record.body == "compile failed"]
    assert record.attributes["exception.type"] == "RuntimeError"
    assert "boom in dynamo" in record.attributes["exception.message"]
    assert record.severity_text == "ERROR"


def test_batches_are_split_under_the_byte_budget(capture):
    torch._logging.set_logs(dynamo=logging.DEBUG)
    with instrumented(capture):
        for _ in range(8):
            logging.getLogger("torch._dynamo").debug("x" * 60_000)
        batch = [r for r in capture.records() if r.log_record.body.startswith("xxx")]
    chunks = list(split_by_bytes(batch, 150_000))
    assert [len(c) for c in chunks] == [2, 2, 2, 2]

    sent = []

    class Recorder:
        def export(self, chunk):
            from opentelemetry.sdk._logs.export import LogRecordExportResult

            sent.append(len(chunk))
            return LogRecordExportResult.SUCCESS

    ByteBudgetLogExporter(Recorder, 150_000, Tally()).export(batch)
    assert sent == [2, 2, 2, 2]


def test_severity_mapping():
    assert [catalog.otel_severity_number(level) for level in (10, 20, 25, 30, 40, 50, 5)] == [5, 9, 11, 13, 17, 21, 1]


def test_components_of_shared_loggers():
    aliases = internal.log_registry.log_alias_to_log_qnames
    assert catalog.component_of_qname("torch._dynamo", aliases) == "dynamo"
    assert catalog.component_of_qname("torch.fx.experimental.symbolic_shapes", aliases) == "dynamic"
    assert catalog.component_of_qname("torch._functorch.aot_autograd", aliases) == "aot"
    assert catalog.component_of_qname("torch", aliases) == "torch"


def test_trace_context_follows_the_current_span_per_record(capture):
    enable_recompile_logs()
    tracer = app_tracer()
    with instrumented(capture, LOGS_ONLY):
        with tracer.start_as_current_span("first") as first:
            logging.getLogger("torch._dynamo").info("in first")
        with tracer.start_as_current_span("second") as second:
            logging.getLogger("torch._dynamo").info("in second")
        logging.getLogger("torch._dynamo").info("in none")
        by_body = {r.log_record.body: r.log_record for r in capture.records()}
    assert by_body["in first"].span_id == first.get_span_context().span_id
    assert by_body["in second"].span_id == second.get_span_context().span_id
    assert by_body["in none"].span_id in (0, None)
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_records_logged_while_exporting_are_not_requeued(capture):
    """An exporter that logs through torch's loggers (e.g. a warning) must not loop back into the bridge."""
    from torch_otel.capture.log_handler import exporting

    torch._logging.set_logs(dynamo=logging.DEBUG)
    with instrumented(capture, LOGS_ONLY):
        token = exporting.set(True)
        try:
            logging.getLogger("torch._dynamo").info("from inside an export")
        finally:
            exporting.reset(token)
        logging.getLogger("torch._dynamo").info("from the application")
        bodies = [r.log_record.body for r in capture.records()]
    assert "from the application" in bodies and "from inside an export" not in bodies


# -- when the export thread runs ------------------------------------------------------------------------------
def counting_exports(bridge, monkeypatch) -> list[int]:
    """Counts the export thread's passes (each with how many records were queued when it began)."""
    passes: list[int] = []
    export = bridge._export_pending

    def counted() -> None:
        passes.append(bridge.queued)
        export()

    monkeypatch.setattr(bridge, "_export_pending", counted)
    return passes


def test_idle_bridge_never_wakes_and_wakes_for_the_first_record(capture, monkeypatch):
    import time

    torch._logging.set_logs(dynamo=logging.DEBUG)
    with instrumented(capture, LOGS_ONLY):
        bridge = torch_otel.TorchInstrumentor.bridge
        passes = counting_exports(bridge, monkeypatch)
        time.sleep(1.0)  # five export ticks' worth of idleness
        assert passes == [], "the export thread woke up with nothing queued"
        logging.getLogger("torch._dynamo").debug("one record after a quiet second")
        deadline = time.monotonic() + 5
        while not passes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert passes and passes[0] >= 1, "the first record did not start the export ticks"


def test_a_burst_is_exported_after_it_ends_unless_the_queue_is_three_quarters_full(capture, monkeypatch):
    import time

    torch._logging.set_logs(dynamo=logging.DEBUG)
    with instrumented(capture, Settings(spans=False, queue_size=400)):
        bridge = torch_otel.TorchInstrumentor.bridge
        passes = counting_exports(bridge, monkeypatch)
        log = logging.getLogger("torch._dynamo")
        with bridge._export_lock:  # a pass that starts now waits here, so what it saw queued stays readable
            for i in range(299):  # over 0.6 s, three export ticks: the queue keeps growing, so the thread waits
                log.debug("burst %d", i)
                time.sleep(0.002)
            assert passes == [], "the export thread competed with a burst that fits in 3/4 of the queue"
            log.debug("burst 299")  # the queue reaches 300 = 3/4 of 400
            deadline = time.monotonic() + 5
            while not passes and time.monotonic() < deadline:
                time.sleep(0.01)
            assert passes == [300], "the export thread did not wake when the queue reached 3/4"
        torch_otel.flush(10)
        assert bridge.dropped == 0
        assert sum(r.log_record.body.startswith("burst ") for r in capture.records()) == 300
