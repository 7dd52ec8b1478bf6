"""Auto-instrumentation against real things: two uvicorn services, SQLite, PostgreSQL, Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.trace import SpanKind

import otel_trader
from tests.conftest import free_port


class ServerThread:
    """A uvicorn server on 127.0.0.1 in a background thread of this process."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def two_services(telemetry) -> Iterator[tuple[ServerThread, ServerThread]]:
    """An exchange service and a trading API that calls it over httpx, both under uvicorn."""
    exchange = FastAPI()

    @exchange.get("/ticker/{symbol}")
    async def ticker(symbol: str) -> dict[str, Any]:
        return {"symbol": symbol, "price": 101.5}

    api = FastAPI()
    state: dict[str, str] = {}

    @api.get("/quote/{symbol}")
    async def quote(symbol: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{state['exchange']}/ticker/{symbol}", params={"api_key": "SECRET9"})
        return response.json()

    otel_trader.instrument_app(exchange)
    otel_trader.instrument_app(api)
    with ServerThread(exchange) as ex, ServerThread(api) as ap:
        state["exchange"] = ex.url
        yield ex, ap


def test_httpx_propagates_one_trace_across_two_services(telemetry, two_services):
    _, api = two_services
    response = httpx.get(f"{api.url}/quote/BTC", timeout=10)
    assert response.json() == {"symbol": "BTC", "price": 101.5}
    spans = telemetry.finished_spans()
    servers = {s.name: s for s in spans if s.kind == SpanKind.SERVER}
    assert set(servers) == {"GET /quote/{symbol}", "GET /ticker/{symbol}"}
    api_span, exchange_span = servers["GET /quote/{symbol}"], servers["GET /ticker/{symbol}"]
    # The test's own httpx call is a client span too; the one under the API span is the hop.
    (client_span,) = [
        s for s in spans if s.kind == SpanKind.CLIENT and s.parent and s.parent.span_id == api_span.context.span_id
    ]
    assert len({s.context.trace_id for s in (api_span, client_span, exchange_span)}) == 1
    assert exchange_span.parent.span_id == client_span.context.span_id
    assert exchange_span.parent.is_remote
    # Stable HTTP semantic conventions on the client span too, with the secret redacted.
    assert client_span.attributes["http.request.method"] == "GET"
    assert client_span.attributes["http.response.status_code"] == 200
    assert "api_key=REDACTED" in client_span.attributes["url.full"]
    assert "SECRET9" not in repr([s.to_json() for s in spans])


def _exercise_database(url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, api_key TEXT, qty INTEGER)"))
        conn.execute(sqlalchemy.text("DELETE FROM orders"))
        conn.execute(
            sqlalchemy.text("INSERT INTO orders (id, api_key, qty) VALUES (:id, :key, :qty)"),
            {"id": 1, "key": "SECRET-PARAM", "qty": 3},
        )
        assert conn.execute(sqlalchemy.text("SELECT qty FROM orders WHERE id = :id"), {"id": 1}).scalar() == 3
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sqlalchemy_spans_without_parameter_values(telemetry, backend, request, tmp_path):
    url = f"sqlite:///{tmp_path / 'orders.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    with otel_trader.trace_operation("store_order"):
        _exercise_database(url)
    spans = telemetry.finished_spans()
    db_spans = [s for s in spans if s.kind == SpanKind.CLIENT]
    statements = [s.attributes.get("db.statement") or s.attributes.get("db.query.text") for s in db_spans]
    assert any(st and st.startswith("INSERT INTO orders") for st in statements), statements
    assert any(st and st.startswith("SELECT qty FROM orders") for st in statements), statements
    parent = next(s for s in spans if s.name == "store_order")
    assert all(s.context.trace_id == parent.context.trace_id for s in db_spans)
    assert {s.attributes.get("db.system") or s.attributes.get("db.system.name") for s in db_spans} == {backend}
    assert "SECRET-PARAM" not in repr([s.to_json() for s in spans])


def test_redis_spans_sync_and_async_without_values(telemetry, redis_server):
    import redis
    import redis.asyncio as aioredis

    client = redis.Redis.from_url(redis_server.url)
    with otel_trader.trace_operation("cache"):
        client.set("order:1", "SECRET-VALUE")
        assert client.get("order:1") == b"SECRET-VALUE"

    async def async_part() -> None:
        aclient = aioredis.Redis.from_url(redis_server.url)
        with otel_trader.trace_operation("cache-async"):
            await aclient.set("order:2", "SECRET-VALUE")
        await aclient.aclose()

    asyncio.run(async_part())
    spans = telemetry.finished_spans()
    redis_spans = [s for s in spans if s.kind == SpanKind.CLIENT]
    statements = sorted(s.attributes.get("db.statement") or s.attributes.get("db.query.text") for s in redis_spans)
    assert statements == ["GET ?", "SET ? ?", "SET ? ?"]
    assert "SECRET-VALUE" not in repr([s.to_json() for s in spans])


def test_integrations_can_be_switched_off(reset_otel, monkeypatch, redis_server):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_EXPORTER", "none")
    monkeypatch.setenv("TELEMETRY_DISABLED_INSTRUMENTATIONS", "redis")
    manager = otel_trader.get_telemetry_manager()
    exporter = InMemorySpanExporter()
    manager.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    import redis

    redis.Redis.from_url(redis_server.url).ping()
    assert exporter.get_finished_spans() == ()
