"""The demo bot: runs inside the trading API and shows the bot-health signals with real data.

Three tasks on the API's event loop, against the mock exchange's bot endpoints
(:mod:`otel_trader.demo.bot_exchange`):

* **market data**: one WebSocket with ``BTC-USDT@trade`` and ``ETH-USDT@trade``, each a
  ``trading.feed("mock", stream)`` fed with the message's event time and sequence number. No
  message for :data:`STALE_AFTER` seconds and the bot reconnects (``feed.reconnected()``).
* **strategy**: every :data:`TICK` seconds ``trading.decision("demo-bot")``; unless halted or its
  data is stale, now and then a small working order through ``trading.order(...,
  client_order_id=..., decision_price=...)`` (REST 202 = accepted, status ``new``). Orders without
  an ack after :data:`CANCEL_AFTER` s are given up (``order_done(..., "cancelled")``).
* **user data**: one WebSocket of execution reports, each handled in a ``ws.user_event`` span:
  ``NEW`` → ``trading.order_acked``, ``TRADE`` → ``trading.order_filled`` (the order is done at
  its full quantity), balances and exposure updated.

Risk state: limits ``daily_loss`` (200 USDT below the trading day's opening equity; the day
rolls at midnight UTC or on ``POST /bot/new-day``), ``exposure`` (50,000 USDT, read at export) and
``position_size`` (20,000 USDT per asset), halt reasons ``kill_switch`` and ``daily_loss``
registered at start, balances per asset. Control endpoints (used by :mod:`.scenario` and the
alert tests): ``POST /bot/halt?reason=``, ``POST /bot/resume``, ``POST /bot/block?seconds=`` (a
synchronous call on the loop, inside a span, to show the blocked-loop warning),
``POST /bot/pause?seconds=`` (no decisions, not halted), ``POST /bot/risk?limit=&used=&maximum=``,
``POST /bot/new-day``, ``GET /bot/status``.

``DEMO_BOT=false`` leaves the bot out of the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import random
import time
import uuid
from typing import Any

from fastapi import APIRouter, Query

import otel_trader
from otel_trader import trading

__all__ = ["CANCEL_AFTER", "STALE_AFTER", "STREAMS", "TICK", "DemoBot", "attach_bot"]

STREAMS = ("BTC-USDT@trade", "ETH-USDT@trade")
EXCHANGE = "mock"
STRATEGY = "demo-bot"
TICK = 0.1
#: Seconds without market data after which the bot reconnects (and does not trade).
STALE_AFTER = 1.0
#: Seconds after which an order without an ack is given up.
CANCEL_AFTER = 2.5
ACK_TIMEOUT = 1.0
START_BALANCE_USDT = 10_000.0
DAILY_LOSS_LIMIT_USDT = 200.0
ORDER_NOTIONAL = 300.0

logger = logging.getLogger("otel_trader.demo.bot")


class DemoBot:
    """The bot's tasks and state; :meth:`start` in the lifespan, :meth:`stop` at its end."""

    def __init__(self, exchange_url: str, *, seed: int | None = None) -> None:
        self.exchange_url = exchange_url.rstrip("/")
        self.ws_url = "ws" + self.exchange_url[len("http") :]
        self.rng = random.Random(seed)
        self.prices: dict[str, float] = {}
        self.balances: dict[str, float] = {"USDT": START_BALANCE_USDT}
        #: The trading day's opening equity: the daily loss is measured from it. Every fill costs
        #: the taker a few bps, so without a day boundary a long run would drift into the limit.
        self.day_open_equity = START_BALANCE_USDT
        self.day = _utc_today()
        self.feeds = {stream: trading.feed(EXCHANGE, stream) for stream in STREAMS}
        self.reconnects = 0
        self.orders_sent = 0
        self.blocks = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._http: Any = None
        self._loop_monitor: Any = None
        #: Until then the strategy loop does not run (``POST /bot/pause``): a bot stuck without halting.
        self.paused_until = 0.0
        self.router = self._routes()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the risk state and start the three tasks."""
        import httpx

        self._http = httpx.AsyncClient(base_url=self.exchange_url, timeout=5.0)
        self._loop_monitor = trading.monitor_event_loop()  # also when the app's lifespan is its own
        trading.register_halt_reasons("kill_switch", "daily_loss")
        trading.risk_limit("daily_loss", maximum=DAILY_LOSS_LIMIT_USDT, halt_on_breach=False)
        trading.risk_limit("exposure", maximum=50_000.0, read=self.gross_exposure)
        trading.risk_limit("position_size", maximum=20_000.0, read=self.largest_position)
        self._publish_balances()
        for name, coro in (
            ("market-data", self._market()),
            ("user-data", self._user()),
            ("strategy", self._strategy()),
        ):
            self._tasks.append(asyncio.create_task(coro, name=f"demo-bot {name}"))

    async def stop(self) -> None:
        """Cancel the tasks and close the HTTP client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._http is not None:
            await self._http.aclose()
        if self._loop_monitor is not None:
            self._loop_monitor.stop()

    # -- state --------------------------------------------------------------------------------

    def equity(self) -> float:
        """USDT value of the balances at the last prices."""
        total = self.balances.get("USDT", 0.0)
        for asset, amount in self.balances.items():
            if asset != "USDT":
                total += amount * self.prices.get(f"{asset}-USDT", 0.0)
        return total

    def gross_exposure(self) -> float:
        """Sum of the absolute USDT value of the non-USDT balances."""
        return sum(abs(self._exposure(asset)) for asset in self.balances if asset != "USDT")

    def largest_position(self) -> float:
        """The largest absolute position, in USDT."""
        return max((abs(self._exposure(a)) for a in self.balances if a != "USDT"), default=0.0)

    def _exposure(self, asset: str) -> float:
        return self.balances.get(asset, 0.0) * self.prices.get(f"{asset}-USDT", 0.0)

    def daily_loss(self) -> float:
        """USDT lost since the trading day opened (0 when up); the day rolls at midnight UTC."""
        if not self.prices:
            return 0.0
        if (today := _utc_today()) != self.day:
            self.new_day(today)
        return max(0.0, self.day_open_equity - self.equity())

    def new_day(self, day: datetime.date | None = None) -> None:
        """Open a trading day: the daily loss is measured from the equity now."""
        self.day = day or _utc_today()
        if self.prices:
            self.day_open_equity = self.equity()
        self._publish_balances()

    def _publish_balances(self) -> None:
        for asset, amount in self.balances.items():
            trading.set_balance(asset, amount)
            if asset != "USDT":
                trading.set_exposure(asset, self._exposure(asset))
        trading.risk_limit("daily_loss", maximum=DAILY_LOSS_LIMIT_USDT).set(self.daily_loss())

    def stale(self) -> bool:
        """Whether any feed has been silent for longer than :data:`STALE_AFTER`."""
        return any(feed.age() > STALE_AFTER for feed in self.feeds.values())

    # -- market data --------------------------------------------------------------------------

    async def _market(self) -> None:
        from websockets.asyncio.client import connect

        url = f"{self.ws_url}/ws/market?streams={','.join(STREAMS)}"
        connected_before = False
        while True:
            try:
                async with connect(url, open_timeout=3) as ws:
                    if connected_before:
                        self.reconnects += 1
                        for each in self.feeds.values():
                            each.reconnected()
                    connected_before = True
                    while True:
                        async with asyncio.timeout(STALE_AFTER):
                            raw = await ws.recv()
                        message = json.loads(raw)
                        feed = self.feeds.get(message.get("stream"))
                        if feed is None:
                            continue
                        feed.message(event_time=message["E"], sequence=message["u"])
                        self.prices[message["stream"].split("@")[0]] = float(message["p"])
            except TimeoutError:
                logger.info("no market data for %.1f s: reconnecting", STALE_AFTER)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the exchange restarting, refusing: retry
                logger.debug("market data connection failed: %s", exc)
                await asyncio.sleep(0.5)

    # -- user data ----------------------------------------------------------------------------

    async def _user(self) -> None:
        from websockets.asyncio.client import connect

        while True:
            try:
                async with connect(f"{self.ws_url}/ws/user", open_timeout=3) as ws:
                    async for raw in ws:
                        self._on_execution(json.loads(raw))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("user data connection failed: %s", exc)
                await asyncio.sleep(0.5)

    def _on_execution(self, event: dict[str, Any]) -> None:
        coid = str(event.get("c", ""))
        kind = event.get("x")
        with otel_trader.trace_operation("ws.user_event", attributes={"exchange.event": str(kind)}):
            if kind == "NEW":
                trading.order_acked(coid, exchange_order_id=str(event.get("i")))
            elif kind == "TRADE":
                price, quantity = float(event["L"]), float(event["l"])
                if trading.order_filled(coid, price=price, quantity=quantity, exchange=EXCHANGE):
                    base = str(event.get("s", "")).split("-")[0]
                    signed = quantity if event.get("S") == "BUY" else -quantity
                    self.balances[base] = self.balances.get(base, 0.0) + signed
                    self.balances["USDT"] -= signed * price
                    self._publish_balances()
            elif kind in ("CANCELED", "EXPIRED", "REJECTED"):
                trading.order_done(coid, {"CANCELED": "cancelled"}.get(kind, kind.lower()))

    # -- strategy -----------------------------------------------------------------------------

    async def _strategy(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            if time.monotonic() < self.paused_until:
                continue
            trading.decision(STRATEGY)
            for state in trading.open_orders():
                if not state.acked and state.age_seconds > CANCEL_AFTER:
                    trading.order_done(state.client_order_id, "cancelled")
            if trading.is_halted() or self.stale() or len(self.prices) < len(STREAMS):
                continue
            if self.rng.random() < 0.35:
                with contextlib.suppress(Exception):  # a failed order is counted by trading.order
                    await self._place()

    async def _place(self) -> None:
        symbol = self.rng.choice(STREAMS).split("@")[0]
        base = symbol.split("-")[0]
        price = self.prices[symbol]
        # Lean back towards flat so positions stay small.
        holding = self.balances.get(base, 0.0) * price
        side = "sell" if holding > ORDER_NOTIONAL or (holding > 0 and self.rng.random() < 0.5) else "buy"
        quantity = round(ORDER_NOTIONAL / price, 6)
        coid = f"bot-{uuid.uuid4().hex[:16]}"
        self.orders_sent += 1
        async with trading.order(
            strategy=STRATEGY,
            side=side,
            exchange=EXCHANGE,
            symbol=symbol,
            client_order_id=coid,
            quantity=quantity,
            decision_price=price,
            ack_timeout=ACK_TIMEOUT,
        ) as order:
            reply = await self._http.post(
                "/api/v3/bot/order",
                json={"client_order_id": coid, "symbol": symbol, "side": side, "quantity": quantity},
            )
            order.set_status("new" if reply.status_code == 202 else "rejected")

    # -- control ------------------------------------------------------------------------------

    def _routes(self) -> APIRouter:
        router = APIRouter(prefix="/bot", tags=["demo bot"])

        @router.post("/halt", summary="Trip the kill switch")
        async def halt(reason: str = Query("kill_switch", pattern=r"^[a-z_]{1,32}$")) -> dict[str, Any]:
            changed = trading.halt(reason, message="from POST /bot/halt")
            return {"halted": trading.halt_reasons(), "changed": changed}

        @router.post("/resume", summary="Reset the kill switch")
        async def resume(reason: str | None = Query(None, pattern=r"^[a-z_]{1,32}$")) -> dict[str, Any]:
            return {"resumed": trading.resume(reason, message="from POST /bot/resume")}

        @router.post("/block", summary="Hold the event loop (a synchronous call in a coroutine)")
        async def block(seconds: float = Query(0.3, gt=0, le=5)) -> dict[str, float]:
            with otel_trader.trace_operation("bot.recompute_indicators"):
                self.blocks += 1
                time.sleep(seconds)  # on purpose: what the loop monitor is there to catch
            return {"blocked": seconds}

        @router.post("/pause", summary="Stop evaluating the strategy for a while (without halting)")
        async def pause(seconds: float = Query(5.0, gt=0, le=600)) -> dict[str, float]:
            self.paused_until = time.monotonic() + seconds
            return {"paused_for": seconds}

        @router.post("/risk", summary="Set a risk limit's usage (registering it if new)")
        async def risk(
            limit: str = Query(..., pattern=r"^[a-z_]{1,32}$"),
            used: float = Query(...),
            maximum: float = Query(..., gt=0),
        ) -> dict[str, float]:
            return {"utilization": trading.risk_limit(limit, maximum=maximum).set(used)}

        @router.post("/new-day", summary="Open a trading day: the daily loss counts from the equity now")
        async def new_day() -> dict[str, float]:
            self.new_day()
            return {"day_open_equity": round(self.day_open_equity, 2), "daily_loss": self.daily_loss()}

        @router.get("/status", summary="The bot's state")
        async def status() -> dict[str, Any]:
            return {
                "halted": trading.halt_reasons(),
                "halt_events": [
                    {"reason": e.reason, "halted": e.halted, "at": e.at, "message": e.message}
                    for e in trading.halt_events()
                ],
                "open_orders": len(trading.open_orders()),
                "orders_sent": self.orders_sent,
                "reconnects": self.reconnects,
                "blocks": self.blocks,
                "stale": self.stale(),
                "feeds": {s: round(f.age(), 3) for s, f in self.feeds.items()},
                "equity": round(self.equity(), 2),
                "day_open_equity": round(self.day_open_equity, 2),
                "daily_loss": round(self.daily_loss(), 2),
            }

        return router


def _utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def attach_bot(app: Any, exchange_url: str) -> DemoBot | None:
    """Run a :class:`DemoBot` with ``app``'s lifespan and serve its ``/bot`` routes; None with ``DEMO_BOT=false``."""
    import os

    if os.environ.get("DEMO_BOT", "true").strip().lower() in ("false", "0", "no", "off"):
        return None
    bot = DemoBot(exchange_url)
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(lifespan_app: Any) -> Any:
        async with original(lifespan_app) as state:
            await bot.start()
            try:
                yield state
            finally:
                await bot.stop()

    app.router.lifespan_context = lifespan
    app.include_router(bot.router)
    return bot
