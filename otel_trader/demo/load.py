"""A bounded, mixed load on the demo trading API, with a progress bar on stderr.

The mix: orders (buy/sell over four listed symbols), orders the exchange rejects (unlisted
symbol, too large), invalid orders (422), ``/random_sleep``, reads of orders/positions/PnL,
a few ``/test-error`` (500), some unknown paths (404), one burst from a single client to trip
the rate limiter (429), and WebSocket price subscriptions alongside. The load stops after
``requests`` HTTP requests or ``duration`` seconds, whichever comes first.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["LoadResult", "Progress", "plan", "run_load"]

SYMBOLS = {
    "BTC-USDT": (0.001, 0.05),
    "ETH-USDT": (0.01, 0.8),
    "SOL-USDT": (0.1, 20.0),
    "DOGE-USDT": (100.0, 20_000.0),
}
_WEIGHTS = {
    "order": 38,
    "order_rejected": 7,
    "order_invalid": 4,
    "random_sleep": 14,
    "positions": 6,
    "pnl": 4,
    "get_order": 8,
    "list_orders": 4,
    "test_error": 3,
    "not_found": 5,
    "root": 3,
}


@dataclass
class Request:
    """One planned HTTP request (``burst``: that many concurrent requests from one client)."""

    kind: str
    method: str = "GET"
    path: str = "/"
    body: dict[str, Any] | None = None
    burst: int = 0


def _order(rng: random.Random, kind: str) -> Request:
    symbol = rng.choice(list(SYMBOLS))
    low, high = SYMBOLS[symbol]
    body: dict[str, Any] = {
        "symbol": symbol,
        "side": rng.choice(("buy", "sell")),
        "quantity": round(rng.uniform(low, high), 6),
        "strategy": rng.choice(("grid", "rsi")),
    }
    if kind == "order_rejected":
        if rng.random() < 0.5:
            body["symbol"] = "XRP-USDT"  # not listed on the mock exchange
        else:
            body["quantity"] = high * 1000  # above the exchange's notional limit
    elif kind == "order_invalid":
        body.update(rng.choice(({"side": "hold"}, {"symbol": "btc"}, {"quantity": -1})))
    return Request(kind, "POST", "/orders", body)


def plan(seed: int, requests: int | None, burst_capacity: int) -> Iterator[Request]:
    """The request sequence: ``requests`` requests (endless if None), a rate-limit burst midway."""
    rng = random.Random(seed)
    kinds, weights = zip(*_WEIGHTS.items(), strict=True)
    # Comfortably above the limiter's bucket so the burst is visibly limited; at most half the run.
    burst = max(2 * burst_capacity + 10, (requests or 300) // 5)
    if requests is not None:
        burst = min(burst, requests // 2)
    burst_at = (requests or 300) // 2
    # Every run, however short, shows each kind of failure at least once or twice.
    n = requests or 300
    forced = (
        {
            n // 8: "order_rejected",
            n // 4: "test_error",
            n // 3: "not_found",
            3 * n // 5: "order_invalid",
            3 * n // 4: "test_error",
            5 * n // 6: "not_found",
        }
        if n >= 20
        else {}
    )
    sent = 0
    while requests is None or sent < requests:
        if burst and sent >= burst_at:
            yield Request("burst", "GET", "/positions", burst=burst)
            sent += burst
            burst = 0
            continue
        kind = forced.pop(sent, None) or rng.choices(kinds, weights)[0]
        if kind.startswith("order"):
            yield _order(rng, kind)
        elif kind == "random_sleep":
            yield Request(kind, path="/random_sleep")
        elif kind == "positions":
            yield Request(kind, path="/positions")
        elif kind == "pnl":
            yield Request(kind, path="/pnl")
        elif kind == "get_order":
            yield Request(kind, path="/orders/{id}")
        elif kind == "list_orders":
            yield Request(kind, path="/orders?limit=10")
        elif kind == "test_error":
            yield Request(kind, path="/test-error")
        elif kind == "not_found":
            yield Request(kind, path=rng.choice(("/nope", "/api/v1/unknown", "/orders/x/y", "/wp-login.php")))
        else:
            yield Request(kind, path="/")
        sent += 1


class Progress:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, total: int | None, duration: float | None, stream: TextIO | None = None) -> None:
        self.total = total
        self.duration = duration
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.done = 0
        self.errors = 0
        self._last_draw = 0.0
        self._last_decile = -1

    def fraction(self) -> float:
        parts = []
        if self.total:
            parts.append(self.done / self.total)
        if self.duration:
            parts.append((time.monotonic() - self.start) / self.duration)
        return min(1.0, max(parts) if parts else 0.0)

    def update(self, n: int = 1, errors: int = 0) -> None:
        self.done += n
        self.errors += errors
        now = time.monotonic()
        fraction = self.fraction()
        if self.tty:
            if now - self._last_draw >= 0.1 or fraction >= 1.0:
                self._draw(fraction, end="\r")
                self._last_draw = now
        elif int(fraction * 10) > self._last_decile:
            self._last_decile = int(fraction * 10)
            self._draw(fraction, end="\n")

    def _draw(self, fraction: float, end: str) -> None:
        elapsed = time.monotonic() - self.start
        width = 30
        bar = "#" * int(fraction * width) + "-" * (width - int(fraction * width))
        rate = self.done / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total else ""
        self.stream.write(
            f"load [{bar}] {fraction * 100:3.0f}% {self.done}{of} requests, "
            f"{self.errors} errors (4xx/5xx), {rate:.1f} req/s, {elapsed:.1f}s{end}"
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self._draw(self.fraction(), end="\n")


@dataclass
class LoadResult:
    """What the client saw (the summary itself is read from the metrics)."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    websocket_sessions: int = 0
    websocket_messages: int = 0
    websocket_failures: int = 0
    elapsed: float = 0.0


async def _websocket_session(ws_url: str, messages: int, result: LoadResult) -> None:
    from websockets.asyncio.client import connect

    try:
        async with asyncio.timeout(15), connect(f"{ws_url}/ws/prices?count={messages}&interval=0.05") as ws:
            async for _ in ws:
                result.websocket_messages += 1
        result.websocket_sessions += 1
    except Exception:
        result.websocket_failures += 1


async def run_load(
    base_url: str,
    *,
    requests: int | None,
    duration: float | None,
    concurrency: int = 8,
    seed: int = 1,
    burst_capacity: int = 20,
    websockets: int | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Drive the planned load against ``base_url`` with ``concurrency`` workers; bounded in time."""
    import httpx

    result = LoadResult()
    requests_plan = plan(seed, requests, burst_capacity)
    deadline = time.monotonic() + duration if duration else None
    order_ids: list[str] = []
    rng = random.Random(seed + 1)
    progress = progress or Progress(requests, duration)
    start = time.monotonic()

    def record(status: int | None) -> None:
        result.requests += 1
        if status is None:
            result.transport_errors += 1
        else:
            result.statuses[status] += 1
        progress.update(1, errors=1 if status is None or status >= 400 else 0)

    async def send(client: httpx.AsyncClient, req: Request, client_id: str) -> None:
        path = req.path
        if "{id}" in path:
            path = path.replace("{id}", rng.choice(order_ids) if order_ids else "missing-order")
        headers = {"X-Client-Id": client_id}
        if req.kind == "test_error":
            # uvicorn closes the connection after an unhandled exception; without this the next
            # request on that pooled keep-alive connection would fail with a ReadError.
            headers["Connection"] = "close"
        try:
            reply = await client.request(req.method, path, json=req.body, headers=headers)
        except httpx.HTTPError:
            record(None)
            return
        if req.kind == "order" and reply.status_code == 201:
            order_ids.append(reply.json()["id"])
        record(reply.status_code)

    async def worker(index: int, client: httpx.AsyncClient) -> None:
        for req in requests_plan:  # shared iterator: each request is taken by one worker
            if deadline is not None and time.monotonic() >= deadline:
                return
            if req.burst:
                await asyncio.gather(*(send(client, req, "burst-bot") for _ in range(req.burst)))
            else:
                await send(client, req, f"trader-{index}")

    ws_url = "ws" + base_url[len("http") :]
    sessions = websockets if websockets is not None else max(2, (requests or 300) // 60)
    limits = httpx.Limits(max_connections=concurrency + 64, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=15.0, limits=limits) as client:
        workers = [asyncio.create_task(worker(i, client)) for i in range(concurrency)]

        async def subscribers() -> None:
            # Spread over the run so websocket_connections is non-zero while the load runs.
            for _ in range((sessions + 1) // 2):
                await asyncio.gather(*(_websocket_session(ws_url, 10, result) for _ in range(2)))
                if all(w.done() for w in workers):
                    break
                await asyncio.sleep(0.2)

        ws_task = asyncio.create_task(subscribers())
        try:
            await asyncio.gather(*workers)
            await ws_task
        finally:
            for task in (*workers, ws_task):
                task.cancel()
    result.elapsed = time.monotonic() - start
    progress.finish()
    return result
