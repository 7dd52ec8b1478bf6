"""The two services of the end-to-end tests, run by uvicorn in subprocesses (``--factory``).

``create_api``: the trading API. ``GET /orders/{symbol}`` does what a bot's order path does:
a ``trace_operation`` around an httpx call to the exchange service, a SQLAlchemy insert/select
(SQLite file) and a Redis SET/GET, so one trace holds every kind of span otel-trader makes.
``GET /quote/{symbol}`` is the light request of the load tests (server span + one child span +
one counter add). ``GET /health`` is excluded from telemetry (readiness probe).

``create_exchange``: the mock exchange, ``GET /ticker/{symbol}``.

Environment: the usual otel-trader variables, plus ``EXCHANGE_URL``, ``DATABASE_URL``,
``REDIS_URL`` for the API.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx
from fastapi import FastAPI, Request

import otel_trader

logger = logging.getLogger("e2e.trader")


def create_api() -> FastAPI:
    """The trading API (instrumented before its SQLAlchemy engine is created, as in production)."""
    import redis.asyncio as aioredis
    import sqlalchemy

    app = FastAPI()
    otel_trader.instrument_app(app)
    engine = sqlalchemy.create_engine(os.environ["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, symbol TEXT, price REAL)")
        )
    cache = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    exchange = httpx.AsyncClient(base_url=os.environ["EXCHANGE_URL"], timeout=10)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/quote/{symbol}")
    async def quote(symbol: str) -> dict[str, Any]:
        with otel_trader.trace_operation("compute_quote", attributes={"symbol": symbol}):
            otel_trader.record_counter("quotes_total", attributes={"symbol": symbol})
            return {"symbol": symbol, "price": 101.5}

    @app.get("/orders/{symbol}")
    async def place_order(symbol: str, request: Request) -> dict[str, Any]:
        api_key = request.query_params.get("api_key", "")
        auth = request.headers.get("authorization", "")
        with otel_trader.trace_operation(
            "place_order",
            # A careless bot puts credentials into attributes: the collector must drop/scrub them.
            attributes={"symbol": symbol, "exchange.api_key": api_key, "request.auth": f"Authorization: {auth}"},
        ):
            # Signed exchange call: credentials travel in the query string and a header.
            params = {k: v for k, v in request.query_params.items() if k in ("api_key", "signature")}
            headers = {"Authorization": auth} if auth else {}
            ticker = (await exchange.get(f"/ticker/{symbol}", params=params, headers=headers)).json()
            with engine.begin() as conn:
                conn.execute(
                    sqlalchemy.text("INSERT INTO orders (symbol, price) VALUES (:symbol, :price)"),
                    {"symbol": symbol, "price": ticker["price"]},
                )
                count = conn.execute(
                    sqlalchemy.text("SELECT COUNT(*) FROM orders WHERE symbol = :symbol"), {"symbol": symbol}
                ).scalar()
            await cache.set(f"last_price:{symbol}", ticker["price"])
            cached = await cache.get(f"last_price:{symbol}")
            if api_key:
                logger.warning("order for %s signed with api_key=%s auth=%s", symbol, api_key, auth)
            assert isinstance(cached, bytes)  # the client returns raw bytes (decode_responses off)
            return {"symbol": symbol, "price": ticker["price"], "orders": count, "cached": cached.decode()}

    return app


def create_exchange() -> FastAPI:
    """The mock exchange."""
    app = FastAPI()
    otel_trader.instrument_app(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ticker/{symbol}")
    async def ticker(symbol: str) -> dict[str, Any]:
        return {"symbol": symbol, "price": 101.5}

    return app
