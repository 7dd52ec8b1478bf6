"""Log lines carrying a trace id say how to open that trace: locally, and in SigNoz when configured."""

from __future__ import annotations

import logging
import sys

from opentelemetry.sdk.trace import TracerProvider

import otel_trader.sdk.logs
from otel_trader.sdk.logs import TraceFormatter, install_log_correlation


def _record(trace_id: str | None, message: str = "order failed", exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("bot", logging.ERROR, __file__, 1, message, None, exc_info)
    if trace_id is not None:
        record.trace_id = trace_id
    return record


def test_the_hint_ends_the_first_line_before_the_traceback(monkeypatch):
    monkeypatch.delenv("SIGNOZ_URL", raising=False)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    text = TraceFormatter("%(levelname)s %(message)s").format(_record(trace_id, exc=True))
    first, _, rest = text.partition("\n")
    assert first == f"ERROR order failed  [trace: otel-trader traces --trace-id {trace_id}]"
    assert rest.startswith("Traceback") and "ValueError: boom" in rest


def test_signoz_link_from_the_argument_or_the_environment(monkeypatch):
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    monkeypatch.setenv("SIGNOZ_URL", "https://signoz.example.com/")
    text = TraceFormatter().format(_record(trace_id))
    assert text == (
        f"order failed  [trace: otel-trader traces --trace-id {trace_id} · https://signoz.example.com/trace/{trace_id}]"
    )
    assert "signoz.example.com" not in TraceFormatter(signoz_url="").format(_record(trace_id))


def test_records_outside_a_trace_are_left_alone(monkeypatch):
    monkeypatch.delenv("SIGNOZ_URL", raising=False)
    formatter = TraceFormatter("%(message)s")
    assert formatter.format(_record(None)) == "order failed"
    assert formatter.format(_record("0")) == "order failed"  # log correlation's "no span"


def test_with_log_correlation_a_record_inside_a_span_gets_the_hint(monkeypatch, caplog):
    monkeypatch.delenv("SIGNOZ_URL", raising=False)
    # The record factory is process-wide: put back whatever was there before.
    monkeypatch.setattr(otel_trader.sdk.logs, "_installed_factory", otel_trader.sdk.logs._installed_factory)
    previous = logging.getLogRecordFactory()
    try:
        install_log_correlation()
        _log_inside_and_outside(caplog)
    finally:
        logging.setLogRecordFactory(previous)


def _log_inside_and_outside(caplog) -> None:
    tracer = TracerProvider().get_tracer("t")
    logger = logging.getLogger("tests.traces.hint")
    with caplog.at_level(logging.INFO, logger="tests.traces.hint"):
        with tracer.start_as_current_span("order") as span:
            logger.info("inside")
        logger.info("outside")
    inside, outside = caplog.records
    trace_id = format(span.get_span_context().trace_id, "032x")
    formatter = TraceFormatter("%(message)s")
    assert formatter.format(inside) == f"inside  [trace: otel-trader traces --trace-id {trace_id}]"
    assert formatter.format(outside) == "outside"
