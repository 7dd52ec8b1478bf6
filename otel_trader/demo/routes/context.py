"""What the demo API's routers share: database sessions, the optional Redis cache, the exchange client, prices."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from otel_trader import RedisPoolMonitor
from otel_trader.demo.binance import DEMO_API_KEY, DEMO_API_SECRET, ccxt_exchange
from otel_trader.demo.exchange import LISTED

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["CLOCK_CHECK_SECONDS", "EXCHANGE_NAME", "ApiContext", "make_venue"]

#: The exchange label of the API's order metrics and the ccxt client's id (``ccxt.mock.*`` spans).
EXCHANGE_NAME = "mock"

#: Seconds between two reads of the exchange's clock (before an order, never in the background,
#: so the service is quiet when nothing is asked of it).
CLOCK_CHECK_SECONDS = 60.0


def make_venue(exchange_url: str) -> Any:
    """The API's exchange client: ccxt's async Binance class, every URL on the mock exchange."""
    import ccxt.async_support as ccxt_async

    return ccxt_exchange(
        ccxt_async.binance,
        exchange_url,
        api_key=os.environ.get("MOCK_EXCHANGE_API_KEY", DEMO_API_KEY),
        secret=os.environ.get("MOCK_EXCHANGE_API_SECRET", DEMO_API_SECRET),
        id=EXCHANGE_NAME,
    )


@dataclass
class ApiContext:
    """One app's shared state: built by ``create_app``, the exchange client set by its lifespan."""

    sessions: async_sessionmaker[AsyncSession]
    redis: Any = None
    monitor: RedisPoolMonitor | None = None
    max_sleep: float = 0.5  # /random_sleep's upper bound, seconds
    prices: dict[str, float] = field(default_factory=lambda: dict(LISTED))  # last fill or tick per symbol
    rng: random.Random = field(default_factory=random.Random)
    # One writer: positions are read-modify-write.
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    venue: Any = None
    clock_checked: float = -CLOCK_CHECK_SECONDS  # monotonic time of the last clock read

    def exchange(self) -> Any:
        """The exchange client; KeyError while the lifespan has not opened it."""
        if self.venue is None:
            raise KeyError("venue")
        return self.venue

    async def check_clock(self) -> None:
        """Read the exchange's clock when the last read is old, as bots do before signing (skew gauge)."""
        now = time.monotonic()
        if now - self.clock_checked < CLOCK_CHECK_SECONDS:
            return
        self.clock_checked = now
        with contextlib.suppress(Exception):  # the order itself reports a venue that is down
            await self.exchange().fetch_time()

    async def cache_get(self, key: str) -> Any:
        """The cached JSON value of ``key``; None without Redis, on a miss or when Redis fails."""
        if self.redis is None or self.monitor is None:
            return None
        try:
            async with self.monitor.operation("get"):
                raw = await self.redis.get(key)
        except Exception:  # the cache is optional: a Redis outage must not fail the request
            return None
        return json.loads(raw) if raw else None

    async def cache_set(self, key: str, value: dict[str, Any]) -> None:
        """Cache ``value`` as JSON for 5 minutes; nothing without Redis or when Redis fails."""
        if self.redis is None or self.monitor is None:
            return
        try:
            async with self.monitor.operation("set"):
                await self.redis.set(key, json.dumps(value), ex=300)
        except Exception:
            pass
