"""A trading API that leaks credentials through every entry point, run by uvicorn (``--factory``).

Used by the secret-marker tests in-process (tests/core/test_secret_markers.py) and end to end
(tests/e2e/test_secrets.py). The secrets come from ``SECRET_MARKERS`` (JSON: name → unique
marker, see :func:`make_markers`), so the test knows what to search for. ``EXCHANGE_URL`` is
the service the API calls with httpx, with user:password in the URL and the key in the query
(the mock exchange, or this app itself: it serves ``/ticker/{symbol}`` too).

Routes: ``GET /orders/{symbol}`` (attributes, span attribute, log extra, metric label; the test
adds secrets to its query string), ``GET /bot{token}/sendMessage``, ``POST /webhook/{secret}``,
``GET /db`` (``logger.exception`` with a DSN in the exception), ``GET /fail`` (an unhandled
exception with a bare bot token in its message), ``GET /fetch`` (the httpx call),
``GET /health`` (readiness, excluded from telemetry). :func:`leaky_requests` lists the requests
that plant every marker.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI

import otel_trader

logger = logging.getLogger("e2e.secrets")

_NAMES = (
    "q_api_key", "q_access_token", "q_api_secret", "q_key", "q_api_key_array", "q_mbx", "q_bybit_sign",
    "q_signature", "attr_api_key", "span_password", "log_extra", "dsn_password", "httpx_password",
    "httpx_api_key", "metric_api_key", "webhook",
)  # fmt: skip


def _bot_token() -> str:
    """A fresh token in the Bot API's format: bot id, colon, 35 characters."""
    return f"{secrets.randbelow(9 * 10**8) + 10**8}:AA{secrets.token_hex(16)}x"


def make_markers() -> dict[str, str]:
    """Unique marker secrets, one per entry point (name → value)."""
    markers = {name: f"mk{i}x{secrets.token_hex(8)}" for i, name in enumerate(_NAMES)}
    markers["path_bot_token"] = _bot_token()
    markers["exception_bot_token"] = _bot_token()
    return markers


def leaked(markers: dict[str, str], text: str) -> list[str]:
    """Names of the markers found in ``text`` (a bot token counts when its secret part is there)."""
    return [name for name, value in markers.items() if value.split(":")[-1] in text]


def leaky_requests(m: dict[str, str]) -> list[tuple[str, str, int]]:
    """(method, path, expected status) of the requests that plant every marker."""
    query = (
        f"api_key={m['q_api_key']}&accessToken={m['q_access_token']}&apiSecret={m['q_api_secret']}"
        f"&key={m['q_key']}&api_key%5B%5D={m['q_api_key_array']}&X-MBX-APIKEY={m['q_mbx']}"
        f"&X-BAPI-SIGN={m['q_bybit_sign']}&signature={m['q_signature']}&qty=2"
    )
    return [
        ("GET", f"/orders/BTCUSDT?{query}", 200),
        ("GET", f"/bot{m['path_bot_token']}/sendMessage", 200),
        ("POST", f"/webhook/{m['webhook']}", 200),
        ("GET", "/db", 200),
        ("GET", "/fail", 500),
        ("GET", "/fetch", 200),
    ]


def create_app() -> FastAPI:
    """The leaking API."""
    m: dict[str, str] = json.loads(os.environ["SECRET_MARKERS"])
    exchange = urlsplit(os.environ["EXCHANGE_URL"])
    app = FastAPI()
    otel_trader.instrument_app(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/orders/{symbol}")
    async def order(symbol: str) -> dict[str, Any]:
        with otel_trader.trace_operation(
            "place_order", attributes={"symbol": symbol, "api_key": m["attr_api_key"]}
        ):
            otel_trader.add_span_attribute("password", m["span_password"])
            otel_trader.record_counter(
                "leaky_orders_total", attributes={"api_key": m["metric_api_key"], "side": "buy"}
            )
            logger.warning("order placed for %s", symbol, extra={"api_key": m["log_extra"]})
        return {"ok": True}

    @app.get("/bot{token}/sendMessage")
    async def send_message(token: str) -> dict[str, bool]:
        return {"ok": True}

    @app.post("/webhook/{secret}")
    async def webhook(secret: str) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/db")
    async def db() -> dict[str, bool]:
        try:
            raise ConnectionError(
                f"could not connect to postgresql://trader:{m['dsn_password']}@db:5432/trades"
            )
        except ConnectionError:
            logger.exception("database unavailable")
        return {"ok": False}

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError(f"Telegram rejected token {m['exception_bot_token']}")

    @app.get("/ticker/{symbol}")
    async def ticker(symbol: str) -> dict[str, Any]:
        return {"symbol": symbol, "price": 101.5}

    @app.get("/fetch")
    async def fetch() -> dict[str, Any]:
        url = (
            f"http://trader:{m['httpx_password']}@{exchange.netloc}/ticker/BTCUSDT"
            f"?api_key={m['httpx_api_key']}&qty=1"
        )
        async with httpx.AsyncClient(timeout=10) as client:
            return (await client.get(url)).json()  # type: ignore[no-any-return]

    return app
