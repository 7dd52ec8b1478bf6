"""Export headers as users write them (upper-case names) reach a real collector."""

from __future__ import annotations

import logging

import pytest

import otel_trader
from tests.e2e.conftest import E2EStack, wait_until


@pytest.mark.timeout(120)
def test_upper_case_header_names_do_not_break_grpc_export(stack: E2EStack, reset_otel, monkeypatch, caplog):
    sink = stack.sink()
    collector = stack.collector(sink)
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("OTLP_ENDPOINT", collector.endpoints.otlp_grpc)
    monkeypatch.setenv("OTLP_HEADERS", "Signoz-Ingestion-Key=abc123,X-Team=desk")
    monkeypatch.setenv("PROMETHEUS_ENABLED", "false")
    manager = otel_trader.get_telemetry_manager()
    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        for i in range(20):
            with otel_trader.trace_operation("with-headers", attributes={"i": i}):
                pass
        assert manager.flush(30)
    wait_until(lambda: len([s for s in sink.spans() if s["name"] == "with-headers"]) == 20, 30, "20 spans")
    assert not [r.getMessage() for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING]
