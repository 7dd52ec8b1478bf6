"""A trading bot that reaches its venue through real ccxt, sync and async, run by uvicorn (``--factory``).

``EXCHANGE_URL`` is the mock Binance venue (``otel_trader.demo.exchange``); ``MOCK_EXCHANGE_API_KEY``
/ ``MOCK_EXCHANGE_API_SECRET`` are the credentials both sides use. ``GET /trade`` places and
queries orders with ``ccxt.async_support.binance``, asks for an order that does not exist (its
error names the signed URL), reads balances and places an order with the sync ``ccxt.binance``
in a worker thread, and logs through ccxt's own DEBUG logger (request headers and signed
bodies). ``GET /health`` is readiness.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

import otel_trader
from otel_trader.demo.binance import ccxt_exchange


def create_app() -> FastAPI:
    """The bot's API."""
    app = FastAPI()
    otel_trader.instrument_app(app)
    logging.getLogger("ccxt").setLevel(logging.DEBUG)
    url = os.environ["EXCHANGE_URL"]
    key, secret = os.environ["MOCK_EXCHANGE_API_KEY"], os.environ["MOCK_EXCHANGE_API_SECRET"]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/trade")
    async def trade() -> dict[str, Any]:
        import ccxt
        import ccxt.async_support

        venue = ccxt_exchange(ccxt.async_support.binance, url, api_key=key, secret=secret)
        try:
            order = await venue.create_order("BTC/USDT", "market", "buy", 0.01)
            await venue.fetch_order(order["id"], "BTC/USDT")
            with contextlib.suppress(ccxt.OrderNotFound):
                await venue.fetch_order("424242", "BTC/USDT")
            await venue.fetch_time()
        finally:
            await venue.close()

        def sync_side() -> str:
            desk = ccxt_exchange(ccxt.binance, url, api_key=key, secret=secret)
            desk.fetch_balance()
            return str(desk.create_order("ETH/USDT", "market", "sell", 0.1)["id"])

        return {"async": order["id"], "sync": await run_in_threadpool(sync_side)}

    return app
