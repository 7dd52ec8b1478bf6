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

Run: ``uvicorn --factory otel_trader.demo.api:create_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field
from sqlalchemy import DateTime, Float, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import otel_trader
from otel_trader import RedisPoolMonitor, trading
from otel_trader.demo.binance import DEMO_API_KEY, DEMO_API_SECRET, ccxt_exchange
from otel_trader.demo.bot import attach_bot
from otel_trader.demo.exchange import LISTED
from otel_trader.integrations.ccxt import classify
from otel_trader.web.health import make_health_router

__all__ = ["OrderRequest", "RateLimiter", "apply_fill", "async_database_url", "create_app"]

EXCHANGE_NAME = "mock"


# -- storage ------------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class OrderRow(Base):
    __tablename__ = "demo_orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[float] = mapped_column(Float)
    strategy: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    exchange_order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "strategy": self.strategy,
            "status": self.status,
            "price": self.price,
            "reason": self.reason,
            "exchange_order_id": self.exchange_order_id,
            "created_at": self.created_at.isoformat(),
        }


class PositionRow(Base):
    __tablename__ = "demo_positions"

    strategy: Mapped[str] = mapped_column(String(32), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[float] = mapped_column(Float, default=0.0)
    avg_price: Mapped[float] = mapped_column(Float, default=0.0)
    realized_pnl: Mapped[float] = mapped_column(Float, default=0.0)


def async_database_url(url: str | None) -> str:
    """DATABASE_URL as an async SQLAlchemy URL (aiosqlite / psycopg); a temp SQLite file if unset."""
    if not url:
        path = os.path.join(tempfile.gettempdir(), f"otel-trader-demo-{os.getpid()}.db")
        return f"sqlite+aiosqlite:///{path}"
    for prefix, replacement in (
        ("postgres://", "postgresql+psycopg://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(prefix):
            return replacement + url[len(prefix) :]
    return url


def apply_fill(position: PositionRow, side: str, quantity: float, price: float) -> float:
    """Apply a fill to a net position (average-cost method); return the PnL it realizes."""
    signed = quantity if side == "buy" else -quantity
    current = position.quantity or 0.0
    realized = 0.0
    if current == 0 or (current > 0) == (signed > 0):
        total = abs(current) + abs(signed)
        position.avg_price = ((position.avg_price or 0.0) * abs(current) + price * abs(signed)) / total
    else:
        closed = min(abs(signed), abs(current))
        realized = closed * (price - position.avg_price) * (1 if current > 0 else -1)
        if abs(signed) > abs(current):  # flipped: the rest opens a position at this price
            position.avg_price = price
    position.quantity = current + signed
    if abs(position.quantity) < 1e-12:
        position.quantity = 0.0
        position.avg_price = 0.0
    position.realized_pnl = (position.realized_pnl or 0.0) + realized
    return realized


# -- rate limiting ------------------------------------------------------------------------------


class RateLimiter:
    """Token bucket per client (``X-Client-Id`` header, else the client address).

    Every decision is counted in ``rate_limit_requests_total{status}``. At most ``max_clients``
    buckets are kept (least recently used dropped), so a scan of client ids cannot grow memory.
    """

    def __init__(self, burst: float, per_second: float, max_clients: int = 10_000) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        """Take a token for ``client``; False when the bucket is empty."""
        now = time.monotonic()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        trading.record_rate_limit("allowed" if allowed else "limited")
        return allowed

    async def __call__(self, request: Request) -> None:
        client = request.headers.get("x-client-id") or (request.client.host if request.client else "unknown")
        if not self.allow(client):
            raise HTTPException(429, "rate limit exceeded", headers={"Retry-After": "1"})


# -- API models ---------------------------------------------------------------------------------


class OrderRequest(BaseModel):
    """A market order."""

    symbol: str = Field(pattern=r"^[A-Z0-9]{2,10}-[A-Z0-9]{2,10}$", examples=["BTC-USDT"])
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0, le=1_000_000)
    strategy: str = Field("demo", pattern=r"^[a-z0-9_-]{1,32}$")


# -- the app ------------------------------------------------------------------------------------


def venue_message(exc: BaseException) -> str:
    """The venue's own message in a ccxt error (``mock {"code":-2010,"msg":"…"}``, ``mock Market is closed.``)."""
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(text[start:]).get("msg")
            if message:
                return str(message)[:200]
    return text.removeprefix(f"{EXCHANGE_NAME} ")[:200]


def _venue(exchange_url: str) -> Any:
    """The bot's exchange client: ccxt's async Binance class, every URL on the mock exchange."""
    import ccxt.async_support as ccxt_async

    return ccxt_exchange(
        ccxt_async.binance,
        exchange_url,
        api_key=os.environ.get("MOCK_EXCHANGE_API_KEY", DEMO_API_KEY),
        secret=os.environ.get("MOCK_EXCHANGE_API_SECRET", DEMO_API_SECRET),
        id=EXCHANGE_NAME,
    )


#: Seconds between two reads of the exchange's clock (before an order, never in the background,
#: so the service is quiet when nothing is asked of it).
CLOCK_CHECK_SECONDS = 60.0


async def _check_clock(venue: Any, state: dict[str, Any]) -> None:
    """Read the exchange's clock when the last read is old, as bots do before signing (skew gauge)."""
    now = time.monotonic()
    if now - state.get("clock_checked", -CLOCK_CHECK_SECONDS) < CLOCK_CHECK_SECONDS:
        return
    state["clock_checked"] = now
    with contextlib.suppress(Exception):  # the order itself reports a venue that is down
        await venue.fetch_time()


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
    sessions = sa_async.async_sessionmaker(engine, expire_on_commit=False)
    redis_client: Any = None
    monitor: RedisPoolMonitor | None = None
    if os.environ.get("REDIS_URL"):
        import redis.asyncio

        pool = redis.asyncio.ConnectionPool.from_url(
            os.environ["REDIS_URL"], max_connections=20, socket_connect_timeout=2, socket_timeout=2
        )
        redis_client = redis.asyncio.Redis(connection_pool=pool)
        monitor = RedisPoolMonitor(pool, name="cache")
    write_lock = asyncio.Lock()  # one writer: positions are read-modify-write
    state: dict[str, Any] = {"prices": dict(LISTED)}
    rng = random.Random()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with sessions() as session:  # positions survive restarts in the database
            for row in (await session.execute(select(PositionRow))).scalars():
                trading.set_open_positions(row.symbol, 1 if row.quantity else 0, strategy=row.strategy)
        state["venue"] = venue = _venue(exchange_url)
        with contextlib.suppress(Exception):  # an exchange still starting: markets load at the first order
            await venue.load_markets()
        await _check_clock(venue, state)
        try:
            yield
        finally:
            await venue.close()
            if redis_client is not None:
                await redis_client.aclose()
                await redis_client.connection_pool.aclose()
            await engine.dispose()

    app.router.lifespan_context = lifespan
    attach_bot(app, exchange_url)  # the demo bot (.bot); DEMO_BOT=false leaves it out
    app.include_router(make_health_router(redis=monitor, engine=engine))

    async def cache_get(key: str) -> Any:
        if redis_client is None or monitor is None:
            return None
        try:
            async with monitor.operation("get"):
                raw = await redis_client.get(key)
        except Exception:  # the cache is optional: a Redis outage must not fail the request
            return None
        return json.loads(raw) if raw else None

    async def cache_set(key: str, value: dict[str, Any]) -> None:
        if redis_client is None or monitor is None:
            return
        try:
            async with monitor.operation("set"):
                await redis_client.set(key, json.dumps(value), ex=300)
        except Exception:
            pass

    api = APIRouter(dependencies=[Depends(limiter)])

    @api.post("/orders", status_code=201, summary="Place a market order")
    async def place_order(order: OrderRequest) -> dict[str, Any]:
        client_order_id = str(uuid.uuid4())
        price: float | None = None
        reason: str | None = None
        exchange_order_id: str | None = None
        try:
            await _check_clock(state["venue"], state)
            async with trading.order(
                strategy=order.strategy, side=order.side, exchange=EXCHANGE_NAME, symbol=order.symbol
            ) as placed:
                try:
                    reply = await state["venue"].create_order(
                        order.symbol.replace("-", "/"),
                        "market",
                        order.side,
                        order.quantity,
                        params={"newClientOrderId": client_order_id},
                    )
                except Exception as exc:
                    if classify(exc)[0] != "rejected":
                        raise
                    # The venue answered and refused this order (halted market, balance, symbol).
                    placed.set_status("rejected")
                    reason = venue_message(exc)
                else:
                    placed.set_status("filled")
                    price = float(reply.get("average") or reply.get("price"))
                    exchange_order_id = str(reply["id"])
        except Exception as exc:
            # Counted as status="error" by trading.order; the client sees a gateway error.
            raise HTTPException(502, f"exchange unavailable: {type(exc).__name__}") from exc
        status = "filled" if price is not None else "rejected"
        row = OrderRow(
            id=client_order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            strategy=order.strategy,
            status=status,
            price=price,
            reason=reason,
            exchange_order_id=exchange_order_id,
            created_at=datetime.now(timezone.utc),
        )
        async with write_lock, sessions() as session, session.begin():
            session.add(row)
            if price is not None:
                position = await session.get(PositionRow, (order.strategy, order.symbol))
                if position is None:
                    position = PositionRow(
                        strategy=order.strategy,
                        symbol=order.symbol,
                        quantity=0.0,
                        avg_price=0.0,
                        realized_pnl=0.0,
                    )
                    session.add(position)
                realized = apply_fill(position, order.side, order.quantity, price)
                state["prices"][order.symbol] = price
                if realized:
                    trading.add_realized_pnl(order.symbol, realized)
                trading.set_open_positions(
                    order.symbol, 1 if position.quantity else 0, strategy=order.strategy
                )
        result = row.to_dict()
        await cache_set(f"order:{row.id}", result)
        return result

    @api.get("/orders/{order_id}", summary="One order (Redis cache, then the database)")
    async def get_order(order_id: str) -> dict[str, Any]:
        cached = await cache_get(f"order:{order_id}")
        if cached is not None:
            return {**cached, "cached": True}
        async with sessions() as session:
            row = await session.get(OrderRow, order_id)
        if row is None:
            raise HTTPException(404, "order not found")
        return {**row.to_dict(), "cached": False}

    @api.get("/orders", summary="Recent orders")
    async def list_orders(limit: int = 20) -> list[dict[str, Any]]:
        async with sessions() as session:
            rows = await session.execute(
                select(OrderRow).order_by(OrderRow.created_at.desc()).limit(max(1, min(limit, 100)))
            )
            return [r.to_dict() for r in rows.scalars()]

    @api.get("/positions", summary="Open positions")
    async def positions() -> list[dict[str, Any]]:
        async with sessions() as session:
            rows = (await session.execute(select(PositionRow).where(PositionRow.quantity != 0))).scalars()
            return [
                {"strategy": r.strategy, "symbol": r.symbol, "quantity": r.quantity, "avg_price": r.avg_price}
                for r in rows
            ]

    @api.get("/pnl", summary="Realized PnL per symbol")
    async def pnl() -> dict[str, Any]:
        async with sessions() as session:
            rows = (await session.execute(select(PositionRow))).scalars().all()
        per_symbol: dict[str, float] = {}
        for r in rows:
            per_symbol[r.symbol] = per_symbol.get(r.symbol, 0.0) + r.realized_pnl
        return {"realized": per_symbol, "total": sum(per_symbol.values())}

    app.include_router(api)

    @app.websocket("/ws/prices")
    async def prices_ws(websocket: WebSocket, count: int = 50, interval: float = 0.1) -> None:
        """Stream ``count`` price ticks (bounded: at most 10 000), one every ``interval`` seconds."""
        await websocket.accept()
        with trading.websocket_connection():
            try:
                for _ in range(max(1, min(count, 10_000))):
                    symbol = rng.choice(list(state["prices"]))
                    state["prices"][symbol] *= 1.0 + rng.gauss(0.0, 0.001)
                    await websocket.send_json({"symbol": symbol, "price": round(state["prices"][symbol], 8)})
                    await asyncio.sleep(max(0.01, interval))
                await websocket.close()
            except WebSocketDisconnect:
                pass

    @app.get("/random_sleep", summary="Sleep a random time (seed 002's load endpoint)")
    async def random_sleep() -> dict[str, float]:
        slept = rng.uniform(0.0, max_sleep)
        await asyncio.sleep(slept)
        return {"slept": round(slept, 4)}

    @app.get("/test-error", summary="Raise an unhandled exception (seed 004)")
    async def test_error() -> None:
        raise RuntimeError("test error from /test-error")

    @app.get("/", summary="Where to look")
    async def root() -> dict[str, Any]:
        return {
            "service": "otel-trader demo trading API",
            "endpoints": ["/orders", "/positions", "/pnl", "/ws/prices", "/random_sleep", "/test-error"],
            "health": "/health",
            "metrics": "/metrics",
            "docs": "/docs",
        }

    return app
