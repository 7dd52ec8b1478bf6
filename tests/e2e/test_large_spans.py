"""Huge request URLs cannot wipe out span export: values are capped, batches split by size.

A client sending 100 KB paths used to make batches over gRPC's 4 MiB limit; the collector
rejected them whole (RESOURCE_EXHAUSTED), taking the normal requests' spans with them, and the
warning blamed an unreachable collector. Real collector binary and sink on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import tracemalloc

import httpx
import pytest
from fastapi import FastAPI

import otel_trader
from otel_trader.sdk.exporters import ExportHealth, failure_cause, span_size, split_by_size
from tests.e2e.conftest import E2EStack, wait_until

LONG, NORMAL = 150, 450
LONG_PATH = "/orders/" + "x" * 60_000  # httpx refuses URLs over 64 KiB


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{oid}")
    async def order(oid: str) -> dict[str, int]:
        return {"len": len(oid)}

    return app


async def send_mixed(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://trader.local") as client:
        for i in range(LONG + NORMAL):
            path = LONG_PATH if i % 4 == 0 and i // 4 < LONG else f"/orders/normal-{i}"
            assert (await client.get(path)).status_code == 200


def _configure(monkeypatch: pytest.MonkeyPatch, endpoint: str, **env: str) -> otel_trader.TelemetryManager:
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("PROMETHEUS_ENABLED", "false")
    monkeypatch.setenv("TELEMETRY_LOGS_ENABLED", "false")
    monkeypatch.setenv("METRIC_EXPORT_INTERVAL_SECONDS", "3600")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return otel_trader.get_telemetry_manager()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("length_limit", [None, "100000"], ids=["default-cap", "cap-above-the-path"])
def test_every_span_arrives_next_to_huge_urls(stack: E2EStack, reset_otel, monkeypatch, caplog, length_limit):
    sink = stack.sink()
    collector = stack.collector(sink)
    extra = {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": length_limit} if length_limit else {}
    manager = _configure(monkeypatch, collector.endpoints.otlp_grpc, **extra)
    app = otel_trader.instrument_app(make_app())
    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        asyncio.run(send_mixed(app))
        assert manager.flush(60)

    def arrived() -> list[dict] | None:
        spans = [s for s in sink.spans() if s.get("kind") in (2, "SPAN_KIND_SERVER")]
        return spans if len(spans) >= LONG + NORMAL else None

    spans = wait_until(arrived, 60, f"{LONG + NORMAL} server spans in the sink")
    paths = [s["attrs"]["url.path"] for s in spans]
    assert len([p for p in paths if p.startswith("/orders/normal-")]) == NORMAL
    long_paths = [p for p in paths if p.startswith("/orders/xxx")]
    assert len(long_paths) == LONG
    cap = int(length_limit) if length_limit else 4096
    assert {len(p) for p in long_paths} == {min(cap, len(LONG_PATH))}
    assert collector.self_metric("otelcol_receiver_refused_spans_total") == 0
    assert not [r.getMessage() for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING]


@pytest.mark.timeout(120)
def test_memory_stays_bounded_while_the_collector_is_down(reset_otel, monkeypatch, caplog):
    from tests.conftest import free_port

    # pytest keeps every captured log record: httpx's per-request INFO line holds the whole URL.
    caplog.set_level(logging.WARNING, logger="httpx")

    manager = _configure(monkeypatch, f"127.0.0.1:{free_port()}", OTLP_TIMEOUT_SECONDS="1")
    app = otel_trader.instrument_app(make_app())
    tracemalloc.start()
    try:
        asyncio.run(send_mixed(app))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        manager.shutdown(timeout=1)
    # Uncapped, the 150 queued 60 KB paths alone hold > 9 MB (and each request copies its path
    # into several strings); capped at 4096 characters they hold < 1 MB.
    assert peak < 12 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_batches_are_cut_under_the_request_limit():
    class Span:
        def __init__(self, size: int) -> None:
            self.name = "GET /orders/{oid}"
            self.attributes = {"url.path": "x" * size}
            self.events = self.links = ()
            self.status = type("S", (), {"description": None})()

    batch = [Span(100_000) if i % 4 == 0 else Span(20) for i in range(512)]
    chunks = split_by_size(batch, span_size, 2 * 1024 * 1024)
    assert [s for chunk in chunks for s in chunk] == batch  # order kept, nothing lost
    assert all(sum(span_size(s) for s in chunk) <= 2 * 1024 * 1024 for chunk in chunks)
    assert len(chunks) == 7
    small = [Span(20)] * 512
    assert split_by_size(small, span_size, 2 * 1024 * 1024) == [small]  # the common case is not copied
    alone = [Span(5_000_000)]
    assert split_by_size(alone, span_size, 2 * 1024 * 1024) == [alone]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            "Failed to export traces to localhost:4317, error code: StatusCode.RESOURCE_EXHAUSTED, "
            "error details: grpc: received message larger than max (7407095 vs. 4194304)",
            "rejected a batch as too large",
        ),
        (
            "Failed to export traces to localhost:4317, error code: StatusCode.RESOURCE_EXHAUSTED, "
            "error details: data refused due to high memory usage",
            "refused data (overloaded",
        ),
        ("Failed to export traces to x, error code: StatusCode.UNAUTHENTICATED", "check OTLP_HEADERS"),
        ("Failed to export traces to x, error code: StatusCode.UNIMPLEMENTED", "check OTLP_ENDPOINT"),
        ("Transient error StatusCode.UNAVAILABLE encountered while exporting traces", "unreachable"),
    ],
)
def test_the_warning_names_the_real_cause(caplog, error, expected):
    assert expected in failure_cause(error)
    health = ExportHealth("localhost:4317")
    health.filter(logging.LogRecord("opentelemetry.exporter", logging.ERROR, __file__, 1, error, None, None))
    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        health.report("spans", False)
    (record,) = [r for r in caplog.records if r.name == "otel_trader"]
    assert expected in record.getMessage()
    if "unreachable" not in expected:
        assert "unreachable" not in record.getMessage()
