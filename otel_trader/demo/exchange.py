"""A mock crypto exchange (the demo's second service): fills, rejects and sometimes fails orders.

Binance-like REST: ``POST /api/v3/order`` and ``GET /api/v3/ticker/price``. Prices follow a
random walk, so the demo's realized PnL goes both ways. Unlisted symbols and orders above
the notional limit are rejected with HTTP 400 (as an exchange does); a small share of orders
fail with 503 (``MOCK_EXCHANGE_ERROR_RATE``, default 0.02) so the demo shows errors too.

Run: ``uvicorn --factory otel_trader.demo.exchange:create_app`` (instrumented with
``otel_trader.instrument_app``, so its server spans continue the trading API's traces).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from typing import Any, Literal

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import otel_trader

__all__ = ["LISTED", "MAX_NOTIONAL", "create_app"]

#: Listed symbols and their opening prices (quote currency USDT).
LISTED: dict[str, float] = {"BTC-USDT": 65_000.0, "ETH-USDT": 3_200.0, "SOL-USDT": 150.0, "DOGE-USDT": 0.15}
#: Orders worth more than this are rejected ("insufficient balance").
MAX_NOTIONAL = 50_000.0


class ExchangeOrder(BaseModel):
    """An order as the trading API sends it."""

    symbol: str
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0)
    client_order_id: str | None = None


def create_app() -> FastAPI:
    """The mock exchange app; reads MOCK_EXCHANGE_ERROR_RATE and MOCK_EXCHANGE_MAX_LATENCY (seconds)."""
    error_rate = float(os.environ.get("MOCK_EXCHANGE_ERROR_RATE", "0.02"))
    max_latency = float(os.environ.get("MOCK_EXCHANGE_MAX_LATENCY", "0.06"))
    rng = random.Random()
    prices = dict(LISTED)
    order_ids = itertools.count(1_000_001)

    app = FastAPI(title="otel-trader mock exchange", version="1.0")
    otel_trader.instrument_app(app)

    def tick(symbol: str) -> float:
        # A 0.4 % random step per event: enough movement for fills at a loss and at a profit.
        prices[symbol] *= 1.0 + rng.gauss(0.0, 0.004)
        return prices[symbol]

    @app.get("/api/v3/ticker/price")
    async def ticker(symbol: str = Query(...)) -> Any:
        if symbol not in prices:
            return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
        return {"symbol": symbol, "price": round(tick(symbol), 8)}

    @app.post("/api/v3/order")
    async def place(order: ExchangeOrder) -> Any:
        await asyncio.sleep(rng.uniform(0.002, max_latency))  # matching-engine latency
        if order.symbol not in prices:
            return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
        price = tick(order.symbol)
        if price * order.quantity > MAX_NOTIONAL:
            return JSONResponse(
                {"code": -2010, "msg": "Account has insufficient balance for requested action."},
                status_code=400,
            )
        if rng.random() < error_rate:
            return JSONResponse(
                {"code": -1001, "msg": "Internal error; unable to process your request."}, status_code=503
            )
        return {
            "orderId": next(order_ids),
            "clientOrderId": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side.upper(),
            "status": "FILLED",
            "executedQty": order.quantity,
            "price": round(price, 8),
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    return app
