"""The mock exchange's side of the demo bot: a market-data WebSocket, a user-data WebSocket, working orders.

==============================  ======  ==========================================================
endpoint                        kind    what
==============================  ======  ==========================================================
``/ws/market?streams=A,B``      WS      trades per stream every 20 ms: ``{"stream", "E", "u", "p"}``
                                        (``E`` event time in ms, ``u`` sequence number)
``/ws/user``                    WS      execution reports of working orders: ``x`` = ``NEW`` (the
                                        ack), ``TRADE`` (a fill, ``l`` qty at ``L``), ``X`` = status
``POST /api/v3/bot/order``      REST    a working order: 202 ``PENDING_NEW``; the ack and 1–3 fills
                                        follow on ``/ws/user`` within ≈ 0.5 s
``POST /demo/stall?seconds=N``  REST    market data goes silent for N s (sockets stay open)
``POST /demo/lose-acks?count=``  REST   the next N orders are never acknowledged
``POST /demo/fills?enabled=``   REST    orders are acknowledged but (not) filled
``POST /demo/slippage?bps=``    REST    fills that many bps further against the taker
==============================  ======  ==========================================================

What a bot must survive, on purpose: market data arrives 1–15 ms after its event time, now and
then 250 ms late, and skips a sequence number once in 60 messages; one order in 8 is never
acknowledged (nor filled); one in 10 is followed by a stray fill of an order the bot never sent
(``MOCK_BOT_LOSE_EVERY`` / ``MOCK_BOT_STRAY_EVERY``; 0 turns them off). Fill prices deviate from the market by −2 … +8 bps against the taker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

__all__ = ["STREAM_PRICES", "StreamVenue", "install_bot_streams"]

#: Streamed symbols and their opening prices.
STREAM_PRICES = {"BTC-USDT": 65_000.0, "ETH-USDT": 3_200.0}
MESSAGE_INTERVAL = 0.02
#: Every this many messages of a stream one sequence number is skipped.
GAP_EVERY = 60
#: One order in this many is never acknowledged; one in STRAY_EVERY gets a stray fill after it.
LOSE_EVERY = 8
STRAY_EVERY = 10


class BotOrder(BaseModel):
    """A working order from the demo bot."""

    client_order_id: str = Field(min_length=1, max_length=64)
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0)


@dataclass
class StreamVenue:
    """The exchange-side state of the bot's streams."""

    rng: random.Random = field(default_factory=random.Random)
    prices: dict[str, float] = field(default_factory=lambda: dict(STREAM_PRICES))
    stall_until: float = 0.0
    order_ids: Iterator[int] = field(default_factory=lambda: itertools.count(7_000_001))
    users: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    #: 0 turns the periodic lost acks / stray fills off (MOCK_BOT_LOSE_EVERY, MOCK_BOT_STRAY_EVERY).
    lose_every: int = field(default_factory=lambda: int(os.environ.get("MOCK_BOT_LOSE_EVERY", LOSE_EVERY)))
    stray_every: int = field(default_factory=lambda: int(os.environ.get("MOCK_BOT_STRAY_EVERY", STRAY_EVERY)))
    #: Set by the /demo controls: orders still to lose, whether orders fill, extra adverse slippage.
    lose_next: int = 0
    fills_enabled: bool = True
    extra_slippage_bps: float = 0.0

    def tick(self, symbol: str) -> float:
        self.prices[symbol] *= 1.0 + self.rng.gauss(0.0, 0.0004)
        return self.prices[symbol]

    def publish(self, event: dict[str, Any]) -> None:
        for queue in list(self.users):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    async def execute(self, order: BotOrder, order_id: int) -> None:
        """Ack, then fill in 1–3 parts; now and then lose the order, or add a stray fill."""
        rng = self.rng
        if self.lose_next > 0 or (self.lose_every and order_id % self.lose_every == 3):
            self.lose_next = max(0, self.lose_next - 1)
            return  # lost in the matching engine: never acknowledged
        await asyncio.sleep(rng.uniform(0.01, 0.08))
        base = {
            "e": "executionReport",
            "c": order.client_order_id,
            "s": order.symbol,
            "S": order.side.upper(),
        }
        self.publish({**base, "x": "NEW", "X": "NEW", "i": order_id, "E": int(time.time() * 1000)})
        if not self.fills_enabled:
            return  # acknowledged, resting, never filled
        parts = rng.choice((1, 2, 2, 3))
        left = order.quantity
        for index in range(parts):
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            quantity = left if index == parts - 1 else round(order.quantity / parts, 8)
            left -= quantity
            market = self.prices.get(order.symbol, 1.0)
            against = 1 if order.side == "buy" else -1
            price = market * (1 + against * (rng.uniform(-2, 8) + self.extra_slippage_bps) / 1e4)
            status = "FILLED" if index == parts - 1 else "PARTIALLY_FILLED"
            self.publish(
                {**base, "x": "TRADE", "X": status, "i": order_id, "l": quantity, "L": round(price, 8)}
                | {"E": int(time.time() * 1000)}
            )
            if index == 0 and self.stray_every and order_id % self.stray_every == 5:
                self.publish(
                    {**base, "c": f"stray-{order_id}-{index}", "x": "TRADE", "X": "FILLED", "i": 0}
                    | {"l": quantity, "L": round(price, 8), "E": int(time.time() * 1000)}
                )


async def _until_disconnect(websocket: WebSocket) -> None:
    """Return when the client goes away (or the server shuts down): a silent handler notices too."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


def install_bot_streams(app: FastAPI, venue: StreamVenue | None = None) -> StreamVenue:
    """Add the bot's endpoints (see the module docstring) to the mock exchange ``app``."""
    venue = venue or StreamVenue()

    @app.websocket("/ws/market")
    async def market(websocket: WebSocket, streams: str = Query(...)) -> None:
        wanted = [s for s in streams.split(",") if s.split("@")[0] in venue.prices][:10]
        await websocket.accept()
        rng = venue.rng
        sequences = {s: 0 for s in wanted}
        closed = asyncio.create_task(_until_disconnect(websocket))
        try:
            while not closed.done():
                await asyncio.sleep(MESSAGE_INTERVAL)
                if time.monotonic() < venue.stall_until:
                    continue  # silent, the socket open: the stall a bot has to notice itself
                for stream in wanted:
                    sequences[stream] += 2 if sequences[stream] % GAP_EVERY == GAP_EVERY - 1 else 1
                    delay = 0.25 if rng.random() < 0.003 else rng.uniform(0.001, 0.015)
                    await websocket.send_json(
                        {
                            "stream": stream,
                            "E": int((time.time() - delay) * 1000),
                            "u": sequences[stream],
                            "p": round(venue.tick(stream.split("@")[0]), 8),
                        }
                    )
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            closed.cancel()

    @app.websocket("/ws/user")
    async def user(websocket: WebSocket) -> None:
        await websocket.accept()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        venue.users.add(queue)
        closed = asyncio.create_task(_until_disconnect(websocket))
        try:
            while not closed.done():
                event = asyncio.create_task(queue.get())
                await asyncio.wait({event, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not event.done():
                    event.cancel()
                    break
                await websocket.send_json(event.result())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            closed.cancel()
            venue.users.discard(queue)

    @app.post("/api/v3/bot/order", status_code=202)
    async def bot_order(order: BotOrder) -> Any:
        if order.symbol not in venue.prices:
            return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
        order_id = next(venue.order_ids)
        task = asyncio.create_task(venue.execute(order, order_id))
        venue.tasks.add(task)
        task.add_done_callback(venue.tasks.discard)
        return {"orderId": order_id, "clientOrderId": order.client_order_id, "status": "PENDING_NEW"}

    @app.post("/demo/lose-acks")
    async def lose_acks(count: int = Query(1, ge=0, le=1000)) -> dict[str, int]:
        venue.lose_next = count
        return {"losing": count}

    @app.post("/demo/fills")
    async def fills(enabled: bool = Query(True)) -> dict[str, bool]:
        venue.fills_enabled = enabled
        return {"fills": enabled}

    @app.post("/demo/slippage")
    async def extra_slippage(bps: float = Query(0.0, ge=0, le=10_000)) -> dict[str, float]:
        venue.extra_slippage_bps = bps
        return {"extra_bps": bps}

    @app.post("/demo/stall")
    async def stall(seconds: float = Query(2.5, gt=0, le=60)) -> dict[str, float]:
        venue.stall_until = time.monotonic() + seconds
        return {"stalled_for": seconds}

    return venue
