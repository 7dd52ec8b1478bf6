"""The demo trading API: orders through a (mock) exchange, positions, PnL, prices over WebSocket.

Everything otel-trader offers, used for real:

* ``instrument_app``: server spans, ``http_requests_total`` / ``http_request_duration_seconds``,
  ``/metrics``; SQLAlchemy and Redis client spans.
* orders go through an unmodified ``ccxt.async_support.binance`` pointed at the mock exchange
  (which speaks Binance's signed REST API): a ``ccxt.mock.create_order`` span per order with its
  aiohttp client span, so the trace crosses into the mock exchange's service, and
  ``exchange_*`` latency, error, rate-limit headroom and clock-skew metrics
  (:mod:`otel_trader.trading.exchanges`); before an order, ``fetch_time()`` reads the exchange's clock
  when the last read is a minute old.
* :mod:`otel_trader.trading`: ``trading.order(...)`` around every exchange call, positions and
  realized PnL after each fill, ``websocket_connections`` for ``/ws/prices``,
  ``rate_limit_requests_total`` from the rate limiter.
* :class:`RedisPoolMonitor` and :func:`make_health_router` (``/health``, ``/health/redis``,
  ``/health/redis/pool/stats``, ``/health/db``).

Configuration (environment): ``EXCHANGE_URL`` (the mock exchange), ``MOCK_EXCHANGE_API_KEY`` /
``MOCK_EXCHANGE_API_SECRET`` (the credentials the bot signs with; demo defaults), ``DATABASE_URL`` (SQLAlchemy
URL; SQLite in a temp dir by default, ``postgresql://…`` works), ``REDIS_URL`` (optional cache),
``DEMO_RATE_LIMIT_BURST`` / ``DEMO_RATE_LIMIT_PER_SEC`` (token bucket per client, default 20 and
20/s), ``DEMO_MAX_SLEEP`` (``/random_sleep`` upper bound, default 0.5 s), plus the usual
otel-trader variables (``TELEMETRY_ENABLED=true`` …).

The endpoints are routers in :mod:`otel_trader.demo.routes`, one module per group; :func:`create_app`
builds their shared :class:`~otel_trader.demo.routes.context.ApiContext` and includes them.

Run: ``uvicorn --factory otel_trader.demo.api:create_app``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy import select

import otel_trader
from otel_trader import RedisPoolMonitor, trading
from otel_trader.demo.bot import attach_bot
from otel_trader.demo.routes.context import ApiContext, make_venue
from otel_trader.demo.routes.limiter import RateLimiter
from otel_trader.demo.routes.orders import OrderRequest, orders_router
from otel_trader.demo.routes.positions import positions_router
from otel_trader.demo.routes.prices import prices_router
from otel_trader.demo.routes.service import service_router
from otel_trader.demo.routes.storage import Base, PositionRow, apply_fill, async_database_url
from otel_trader.web.health import make_health_router

__all__ = ["OrderRequest", "RateLimiter", "apply_fill", "async_database_url", "create_app"]


def create_app() -> FastAPI:
    """Build the trading API from the environment (see the module docstring)."""
    exchange_url = os.environ.get("EXCHANGE_URL", "http://127.0.0.1:8001").rstrip("/")
    max_sleep = float(os.environ.get("DEMO_MAX_SLEEP", "0.5"))
    limiter = RateLimiter(
        burst=float(os.environ.get("DEMO_RATE_LIMIT_BURST", "20")),
        per_second=float(os.environ.get("DEMO_RATE_LIMIT_PER_SEC", "20")),
    )

    app = FastAPI(title="otel-trader demo trading API", version="1.0")
    # First, so the engine, HTTP client and Redis pool below are made with instrumentation on.
    otel_trader.instrument_app(app)

    import sqlalchemy.ext.asyncio as sa_async  # after instrumentation: create_async_engine is patched

    engine = sa_async.create_async_engine(async_database_url(os.environ.get("DATABASE_URL")))
    ctx = ApiContext(
        sessions=sa_async.async_sessionmaker(engine, expire_on_commit=False), max_sleep=max_sleep
    )
    if os.environ.get("REDIS_URL"):
        import redis.asyncio

        pool = redis.asyncio.ConnectionPool.from_url(
            os.environ["REDIS_URL"], max_connections=20, socket_connect_timeout=2, socket_timeout=2
        )
        ctx.redis = redis.asyncio.Redis(connection_pool=pool)
        ctx.monitor = RedisPoolMonitor(pool, name="cache")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with ctx.sessions() as session:  # positions survive restarts in the database
            for row in (await session.execute(select(PositionRow))).scalars():
                trading.set_open_positions(row.symbol, 1 if row.quantity else 0, strategy=row.strategy)
        ctx.venue = venue = make_venue(exchange_url)
        with contextlib.suppress(Exception):  # an exchange still starting: markets load at the first order
            await venue.load_markets()
        await ctx.check_clock()
        try:
            yield
        finally:
            await venue.close()
            if ctx.redis is not None:
                await ctx.redis.aclose()
                await ctx.redis.connection_pool.aclose()
            await engine.dispose()

    # Set before attach_bot, which wraps it: the bot starts once the database and exchange client are up.
    app.router.lifespan_context = lifespan
    attach_bot(app, exchange_url)  # the demo bot (.bot); DEMO_BOT=false leaves it out
    app.include_router(make_health_router(redis=ctx.monitor, engine=engine))
    rate_limited = [Depends(limiter)]
    app.include_router(orders_router(ctx), dependencies=rate_limited)
    app.include_router(positions_router(ctx), dependencies=rate_limited)
    app.include_router(prices_router(ctx))
    app.include_router(service_router(ctx))
    return app
