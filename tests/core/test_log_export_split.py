"""Log batches are cut under the gRPC message limit, as span batches are.

Real SDK log records (the logging handler → LoggerProvider path the app uses), exported through
``ForkSafe`` with ``log_size``, the wrapper ``build_exporters`` puts around the OTLP log exporters.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)

from otel_trader.sdk.exporters import MAX_REQUEST_BYTES, ForkSafe, log_size


def _records(bodies: list[str]) -> list[Any]:
    provider = LoggerProvider()
    memory = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    log = logging.getLogger("tests.log_split")
    log.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    log.addHandler(handler)
    try:
        for body in bodies:
            log.warning(body)
    finally:
        log.removeHandler(handler)
        provider.shutdown()
    return list(memory.get_finished_logs())


class Recorder:
    """Stands in for the OTLP log exporter: records each request, fails the ones asked to."""

    def __init__(self, fail: set[int]) -> None:
        self.requests: list[list[Any]] = []
        self.fail = fail

    def export(self, batch: Any) -> LogRecordExportResult:
        self.requests.append(list(batch))
        failed = len(self.requests) - 1 in self.fail
        return LogRecordExportResult.FAILURE if failed else LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_a_log_batch_over_the_limit_goes_out_as_several_requests_in_order() -> None:
    # 40 records, every fourth with a 300 KB body: ≈ 3 MB in all, over the 2 MiB request budget.
    bodies = [("x" * 300_000 if i % 4 == 0 else f"line {i}") for i in range(40)]
    records = _records(bodies)
    assert len(records) == 40
    recorder = Recorder(fail=set())
    exporter = ForkSafe(lambda: recorder, None, "logs", log_size)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert len(recorder.requests) >= 2
    assert [r for request in recorder.requests for r in request] == records  # nothing lost, order kept
    for request in recorder.requests:
        assert sum(log_size(r) for r in request) <= MAX_REQUEST_BYTES


def test_one_failed_request_fails_the_export_and_the_others_still_go_out() -> None:
    records = _records([("y" * 700_000) for _ in range(6)])
    recorder = Recorder(fail={1})
    exporter = ForkSafe(lambda: recorder, None, "logs", log_size)
    assert exporter.export(records) is LogRecordExportResult.FAILURE
    assert [r for request in recorder.requests for r in request] == records


def test_a_small_batch_is_one_request() -> None:
    records = _records([f"line {i}" for i in range(100)])
    recorder = Recorder(fail=set())
    assert ForkSafe(lambda: recorder, None, "logs", log_size).export(records) is LogRecordExportResult.SUCCESS
    assert recorder.requests == [records]
