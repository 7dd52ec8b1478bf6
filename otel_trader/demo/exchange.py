"""A mock crypto exchange (the demo's second service), speaking Binance's spot REST API.

An unmodified ``ccxt.binance`` / ``ccxt.async_support.binance`` pointed at it
(:func:`otel_trader.demo.binance.ccxt_exchange`) loads markets, places, queries and cancels
orders and reads balances, signed with HMAC like the real venue, with Binance's weight headers,
429s past the weight limit and, at configurable rates, random 429s, ``-1021`` timestamp errors
and 503s (see :mod:`otel_trader.demo.binance` for the endpoints and ``MOCK_EXCHANGE_*``
variables). Prices follow a random walk, so the demo's realized PnL goes both ways; orders
above 50,000 USDT are refused as insufficient balance, ``XRPUSDT`` is halted.

Run: ``uvicorn --factory otel_trader.demo.exchange:create_app`` (instrumented with
``otel_trader.instrument_app``, so its server spans continue the trading API's traces).
"""

from __future__ import annotations

from fastapi import FastAPI

import otel_trader
from otel_trader.demo.binance import MAX_NOTIONAL, install
from otel_trader.demo.bot_exchange import install_bot_streams

__all__ = ["LISTED", "MAX_NOTIONAL", "create_app"]

#: Listed (tradable) symbols and their opening prices (quote currency USDT), as the API names them.
LISTED: dict[str, float] = {"BTC-USDT": 65_000.0, "ETH-USDT": 3_200.0, "SOL-USDT": 150.0, "DOGE-USDT": 0.15}


def create_app() -> FastAPI:
    """The mock exchange app, configured from the ``MOCK_EXCHANGE_*`` variables."""
    app = FastAPI(title="otel-trader mock exchange (Binance spot API)", version="1.0")
    otel_trader.instrument_app(app)
    install(app)
    install_bot_streams(app)  # the demo bot's market/user WebSockets (.bot_exchange)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    return app
