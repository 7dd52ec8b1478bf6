"""The FastAPI app the end-to-end monitoring test runs (uvicorn, in a subprocess) and drives.

Instrumented like a user's app (``otel_trader.instrument_app``, configured from the
environment) and touching every metric family the dashboards and alerts query: HTTP RED
metrics, trading (orders, executions, positions, PnL, WebSockets, rate limiter), the Redis
pool monitor and health router, runtime metrics, SDK self-metrics and logs. Some routes cause
on purpose what only a problem causes (a 500, a failing Redis operation, span and log bursts
that overflow small SDK queues), so the "only when something is wrong" expressions are proven
too. It stands in for ``otel_trader.demo`` until that is committed.

Environment: the usual otel-trader variables (``TELEGRAM_*`` included: the test points the
reporter's Bot API at a closed loopback port, so reports fail and a burst overflows its queue),
plus ``LOAD_APP_REDIS_URL`` (a real Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import redis.asyncio
from fastapi import FastAPI
from fastapi.responses import JSONResponse

import otel_trader
from otel_trader import trading
from otel_trader.telegram import TelegramErrorReporter
from otel_trader.trading.redis_pool import RedisPoolMonitor
from otel_trader.web.health import make_health_router

logger = logging.getLogger("load_app")

reporter = TelegramErrorReporter.from_env()


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    await reporter.initialize()
    yield
    await reporter.shutdown(timeout=1)


app = FastAPI(title="otel-trader monitoring load app", lifespan=lifespan)
reporter.install()  # unhandled request exceptions (/boom) -> Telegram reports
pool = redis.asyncio.ConnectionPool.from_url(os.environ["LOAD_APP_REDIS_URL"], max_connections=8)
client = redis.asyncio.Redis(connection_pool=pool)
monitor = RedisPoolMonitor(pool, name="cache")
app.include_router(make_health_router(redis=monitor))

PNL = {"BTC-USDT": 7.5, "ETH-USDT": -3.25}


@app.get("/orders/{symbol}")
async def get_order(symbol: str) -> dict:
    return {"symbol": symbol, "positions": trading.get_open_positions()}


@app.post("/orders/{symbol}")
async def place_order(symbol: str, side: str = "buy", status: str = "filled", exchange: str = "okx") -> dict:
    async with trading.order(strategy="grid", side=side, exchange=exchange, symbol=symbol) as order:
        await asyncio.sleep(0.003)
        order.set_status(status)
    trading.set_open_positions(symbol, 1 + len(symbol) % 3, strategy="grid")
    trading.add_realized_pnl(symbol, PNL.get(symbol, 1.0))
    logger.info("order placed", extra={"symbol": symbol, "side": side})
    return {"status": status}


@app.post("/ws/{action}")
async def websocket(action: str) -> dict:
    trading.websocket_connected() if action == "open" else trading.websocket_disconnected()
    return {"action": action}


@app.post("/rate-limit/{status}")
async def rate_limit(status: str) -> JSONResponse:
    trading.record_rate_limit(status)
    return JSONResponse({"status": status}, status_code=429 if status == "limited" else 200)


@app.get("/cache/{key}")
async def cache(key: str) -> dict:
    async with monitor.operation("get"):
        value = await client.get(key)
    return {"key": key, "value": value}


@app.get("/cache-broken")
async def cache_broken() -> JSONResponse:
    """A Redis operation that fails: redis_operation_errors_total gets a series."""
    try:
        async with monitor.operation("eval"):
            await client.execute_command("NO_SUCH_COMMAND")
    except redis.RedisError:
        return JSONResponse({"error": "redis"}, status_code=503)
    return JSONResponse({}, status_code=200)


@app.get("/boom")
async def boom() -> None:
    """An unhandled exception: a 500 (the 5xx series of the error-rate panels and alert)."""
    raise RuntimeError("load app: deliberate failure")


@app.post("/span-burst")
async def span_burst(n: int = 500) -> dict:
    """Many spans at once: with a small OTEL_BSP_MAX_QUEUE_SIZE the SDK drops some (queue_full)."""
    for i in range(n):
        with otel_trader.trace_operation("burst", {"i": i}):
            pass
    return {"spans": n}


@app.post("/report-burst")
async def report_burst(n: int = 20) -> dict:
    """Distinct errors at once: beyond TELEGRAM_ERROR_QUEUE_SIZE they are dropped (and counted).

    Distinct exception types, so deduplication (which ignores digits in messages) lets each through.
    """
    errors = [type(f"LoadAppError{chr(65 + i % 26)}{chr(65 + i // 26)}", (RuntimeError,), {}) for i in range(n)]
    outcomes = [reporter.submit(error("load app: report burst")) for error in errors]
    return {"outcomes": outcomes}


@app.post("/log-burst")
async def log_burst(n: int = 500) -> dict:
    """Many log records at once: with a small OTEL_BLRP_MAX_QUEUE_SIZE the SDK drops some."""
    for i in range(n):
        logger.warning("burst %d", i)
    return {"records": n}


otel_trader.instrument_app(app)
