"""The demo API's rate limiter: a token bucket per client, used as a router dependency."""

from __future__ import annotations

import time
from collections import OrderedDict

from fastapi import HTTPException, Request

from otel_trader import trading

__all__ = ["RateLimiter"]


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
