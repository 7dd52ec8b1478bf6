"""Log–trace correlation, log export with redaction, and the disabled mode."""

from __future__ import annotations

import asyncio
import logging

import httpx
from fastapi import FastAPI
from opentelemetry import metrics, trace

import otel_trader


def test_every_log_record_carries_trace_and_span_ids(telemetry, caplog):
    log = logging.getLogger("trader.test")
    with caplog.at_level(logging.INFO, logger="trader.test"):
        log.info("outside")
        with otel_trader.trace_operation("order") as span:
            log.info("inside")
    outside, inside = caplog.records
    assert (outside.trace_id, outside.span_id) == ("0", "0")
    ctx = span.get_span_context()
    assert inside.trace_id == format(ctx.trace_id, "032x")
    assert inside.span_id == format(ctx.span_id, "016x")


def test_logs_are_exported_with_trace_context_and_secrets_redacted(reset_otel, monkeypatch):
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_EXPORTER", "none")
    exporter = InMemoryLogRecordExporter()
    manager = otel_trader.configure(log_exporter=exporter)
    log = logging.getLogger("trader.export")
    with otel_trader.trace_operation("order") as span:
        log.warning("placing order with api_key=%s for %s", "SECRET7", "BTC")
    manager.logger_provider.force_flush()
    records = [r for r in exporter.get_finished_logs() if r.log_record.body and "placing order" in str(r.log_record.body)]
    assert len(records) == 1
    record = records[0].log_record
    assert record.body == "placing order with api_key=REDACTED for BTC"
    assert record.trace_id == span.get_span_context().trace_id
    assert record.span_id == span.get_span_context().span_id
    assert records[0].resource.attributes["service.name"] == "unknown_service:python"


def test_disabled_mode_installs_nothing_and_helpers_are_noops(reset_otel):
    manager = otel_trader.get_telemetry_manager()
    assert not manager and not manager.configured
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict[str, bool]:
        otel_trader.record_counter("orders_total", attributes={"side": "buy"})
        otel_trader.record_histogram("latency_seconds", 0.1, buckets=(0.1, 1))
        otel_trader.set_gauge("positions_open", 3, {"symbol": "BTC"})
        otel_trader.add_span_attribute("k", "v")
        with otel_trader.trace_operation("op") as span:
            span.set_attribute("qty", 1)
        return {"recording": span.is_recording()}

    assert otel_trader.instrument_app(app) is app
    assert app.user_middleware == []
    assert not any(getattr(r, "path", "") == "/metrics" for r in app.routes)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get("/x")

    assert asyncio.run(go()).json() == {"recording": False}
    # No SDK providers were installed globally.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"


def test_seed_style_guards_work_enabled_and_disabled(reset_otel, monkeypatch):
    """The seed's `telemetry = get_telemetry_manager(); if telemetry: ...` pattern."""

    def business() -> str:
        telemetry = otel_trader.get_telemetry_manager()
        with telemetry.trace_operation("process_user_data", attributes={"user_id": 7}) as span:
            span.set_attribute("data_size", 3)
            if telemetry:
                telemetry.add_span_attribute("request_type", "x")
            telemetry.record_counter("orders.processed", value=1, attributes={"status": "success"})
            telemetry.record_histogram("orders.processing_time", value=0.2, attributes={"order_type": "buy"})
        return "done"

    assert business() == "done"
    otel_trader.sdk.manager._manager = None
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_EXPORTER", "none")
    assert business() == "done"
    from prometheus_client import REGISTRY, generate_latest

    text = generate_latest(REGISTRY).decode()
    assert 'orders_processed_total{otel_scope_name="otel_trader"' in text
    assert "orders_processing_time_bucket" in text
