# Long because enough of Binance's spot REST API (signing, orders, balances, rate-limit headers)
# for an unmodified ccxt client to trade; one mock venue.
"""The mock exchange's Binance spot REST API: enough of it that an unmodified ccxt ``binance`` trades.

Pointed at it with a ``urls`` override (:func:`ccxt_config`), ``ccxt.binance`` and
``ccxt.async_support.binance`` load markets, read the server time, place, query, list and
cancel orders and read balances exactly as against the real venue:

==========================  ======  ======  ===========================================
endpoint                    method  weight  notes
==========================  ======  ======  ===========================================
``/api/v3/ping``            GET     1
``/api/v3/time``            GET     1       ``serverTime`` (the mock's clock, see below)
``/api/v3/exchangeInfo``    GET     20      symbols with filters, ``rateLimits``
``/api/v3/ticker/price``    GET     2       random-walk prices
``/api/v3/ticker/24hr``     GET     2
``/api/v3/order``           POST    1       signed; MARKET fills, LIMIT rests unless marketable
``/api/v3/order``           GET     4       signed
``/api/v3/order``           DELETE  1       signed
``/api/v3/openOrders``      GET     6       signed
``/api/v3/account``         GET     20      signed; balances move with fills
==========================  ======  ======  ===========================================

Signed endpoints check ``X-MBX-APIKEY`` (else 401, ``-2015``), the HMAC-SHA256 ``signature``
over query string + body with the secret (else 400, ``-1022``) and ``timestamp`` against
``recvWindow`` (default 5000 ms; more than 1000 ms ahead of the server is refused too: 400,
``-1021``). Every response carries ``X-MBX-USED-WEIGHT-1M`` (weight used in the current
minute); order placements also ``X-MBX-ORDER-COUNT-10S`` and ``-1D``. Past the weight limit
(``MOCK_EXCHANGE_WEIGHT_LIMIT``, default 1200 per minute) requests get 429, ``-1003``, with
``Retry-After``; more than ``MOCK_EXCHANGE_ORDERS_PER_10S`` (100) orders in 10 s get 429, ``-1015``.

Failures a bot must survive, at configurable rates: ``MOCK_EXCHANGE_RATE_LIMIT_RATE`` (default
0.01) random 429s, ``MOCK_EXCHANGE_TIMESTAMP_ERROR_RATE`` (0.01) random ``-1021`` on signed
requests, ``MOCK_EXCHANGE_ERROR_RATE`` (0.02) 503 ``-1001`` on order placement. The mock's
clock runs ``MOCK_EXCHANGE_CLOCK_OFFSET_SECONDS`` (default 0) ahead of the host's, so clock
skew is visible (also in the ``Date`` header it sends: serve it with ``uvicorn --no-date-header``,
or uvicorn adds a second one from the host's clock). Orders worth more than 50,000 USDT are refused (``-2010``, insufficient
balance); ``XRPUSDT`` is listed but halted (``-1013``, market is closed). Credentials:
``MOCK_EXCHANGE_API_KEY`` / ``MOCK_EXCHANGE_API_SECRET`` (demo defaults below).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import math
import os
import random
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = [
    "DEMO_API_KEY",
    "DEMO_API_SECRET",
    "BinanceError",
    "MockBinance",
    "ccxt_exchange",
    "install",
    "point_at",
    "symbol_id",
]

DEMO_API_KEY = "demo-mock-binance-key-0001"
DEMO_API_SECRET = "demo-mock-binance-secret-0001"
MAX_NOTIONAL = 50_000.0
#: Listed markets: base, quote, opening price, LOT_SIZE step, PRICE_FILTER tick.
MARKETS: dict[str, tuple[str, str, float, str, str]] = {
    "BTCUSDT": ("BTC", "USDT", 65_000.0, "0.00001", "0.01"),
    "ETHUSDT": ("ETH", "USDT", 3_200.0, "0.0001", "0.01"),
    "SOLUSDT": ("SOL", "USDT", 150.0, "0.001", "0.01"),
    "DOGEUSDT": ("DOGE", "USDT", 0.15, "1", "0.00001"),
    "XRPUSDT": ("XRP", "USDT", 0.5, "0.1", "0.0001"),
}
HALTED = frozenset({"XRPUSDT"})
WEIGHTS = {
    ("GET", "ping"): 1,
    ("GET", "time"): 1,
    ("GET", "exchangeInfo"): 20,
    ("GET", "ticker/price"): 2,
    ("GET", "ticker/24hr"): 2,
    ("POST", "order"): 1,
    ("GET", "order"): 4,
    ("DELETE", "order"): 1,
    ("GET", "openOrders"): 6,
    ("GET", "account"): 20,
}


def symbol_id(symbol: str) -> str:
    """``BTC-USDT`` / ``BTC/USDT`` → Binance's ``BTCUSDT``."""
    return symbol.replace("-", "").replace("/", "").upper()


class BinanceError(Exception):
    """An error response in Binance's format: ``{"code": -1021, "msg": "..."}``."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg
        self.headers = headers or {}


@dataclass
class _Window:
    """A fixed window counter (weight per minute, orders per 10 s / per day)."""

    seconds: float
    start: float = 0.0
    used: int = 0

    def add(self, now: float, amount: int) -> int:
        start = math.floor(now / self.seconds) * self.seconds
        if start != self.start:
            self.start, self.used = start, 0
        self.used += amount
        return self.used

    def peek(self, now: float) -> int:
        return self.used if math.floor(now / self.seconds) * self.seconds == self.start else 0


@dataclass
class MockBinance:
    """The venue's state: prices, orders, balances, rate-limit windows, failure rates."""

    api_key: str = DEMO_API_KEY
    api_secret: str = DEMO_API_SECRET
    weight_limit: int = 1200
    orders_per_10s: int = 100
    orders_per_day: int = 200_000
    rate_limit_rate: float = 0.01
    timestamp_error_rate: float = 0.01
    error_rate: float = 0.02
    clock_offset: float = 0.0
    max_latency: float = 0.06
    #: Added to every response (a slow venue; tests use it for timeouts).
    extra_latency: float = 0.0
    seed: int | None = None
    rng: random.Random = field(init=False)
    prices: dict[str, float] = field(init=False)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    balances: dict[str, float] = field(default_factory=dict)
    weight: _Window = field(default_factory=lambda: _Window(60.0))
    orders_10s: _Window = field(default_factory=lambda: _Window(10.0))
    orders_1d: _Window = field(default_factory=lambda: _Window(86_400.0))
    ids: Any = field(default_factory=lambda: itertools.count(1_000_001))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.prices = {s: m[2] for s, m in MARKETS.items()}
        if not self.balances:
            self.balances = {
                "USDT": 10_000_000.0,
                "BTC": 100.0,
                "ETH": 1_000.0,
                "SOL": 20_000.0,
                "DOGE": 10_000_000.0,
            }

    @classmethod
    def from_env(cls) -> MockBinance:
        """Configured from the ``MOCK_EXCHANGE_*`` variables (see the module docstring)."""
        env = os.environ.get
        return cls(
            api_key=env("MOCK_EXCHANGE_API_KEY", DEMO_API_KEY),
            api_secret=env("MOCK_EXCHANGE_API_SECRET", DEMO_API_SECRET),
            weight_limit=int(env("MOCK_EXCHANGE_WEIGHT_LIMIT", "1200")),
            orders_per_10s=int(env("MOCK_EXCHANGE_ORDERS_PER_10S", "100")),
            rate_limit_rate=float(env("MOCK_EXCHANGE_RATE_LIMIT_RATE", "0.01")),
            timestamp_error_rate=float(env("MOCK_EXCHANGE_TIMESTAMP_ERROR_RATE", "0.01")),
            error_rate=float(env("MOCK_EXCHANGE_ERROR_RATE", "0.02")),
            clock_offset=float(env("MOCK_EXCHANGE_CLOCK_OFFSET_SECONDS", "0")),
            max_latency=float(env("MOCK_EXCHANGE_MAX_LATENCY", "0.06")),
        )

    # -- clock, prices, limits ----------------------------------------------------------------

    def now(self) -> float:
        """The venue's clock, in seconds."""
        return time.time() + self.clock_offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def tick(self, symbol: str) -> float:
        # A 0.4 % random step per event: fills at a loss and at a profit both happen.
        self.prices[symbol] *= 1.0 + self.rng.gauss(0.0, 0.004)
        return self.prices[symbol]

    def rate_limits(self) -> list[dict[str, Any]]:
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.weight_limit,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 10,
                "limit": self.orders_per_10s,
            },
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": self.orders_per_day},
        ]

    def weight_headers(self, order: bool = False) -> dict[str, str]:
        now = self.now()
        # The venue's own clock (serve with uvicorn --no-date-header, or there are two).
        headers = {"Date": formatdate(now, usegmt=True), "X-MBX-USED-WEIGHT-1M": str(self.weight.peek(now))}
        if order:
            headers["X-MBX-ORDER-COUNT-10S"] = str(self.orders_10s.peek(now))
            headers["X-MBX-ORDER-COUNT-1D"] = str(self.orders_1d.peek(now))
        return headers

    def charge(self, method: str, endpoint: str) -> None:
        """Count the request's weight; 429 past the limit (or at random, as a busy venue does)."""
        now = self.now()
        used = self.weight.add(now, WEIGHTS.get((method, endpoint), 1))
        if used > self.weight_limit or self.rng.random() < self.rate_limit_rate:
            retry = max(1, int(60 - now % 60)) if used > self.weight_limit else 1
            raise BinanceError(
                429,
                -1003,
                f"Too much request weight used; current limit is {self.weight_limit} request weight per 1 "
                "MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                {"Retry-After": str(retry)},
            )

    # -- authentication -----------------------------------------------------------------------

    def signed_params(self, request: Request, body: bytes) -> dict[str, str]:
        """The parameters of a signed request, after checking key, signature and timestamp."""
        if request.headers.get("x-mbx-apikey") != self.api_key:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        query = request.url.query
        text = body.decode("utf-8", "replace")
        total = query + text
        pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(text, keep_blank_values=True)
        params = dict(pairs)
        signature = params.pop("signature", "")
        payload = (
            "&".join(part for part in (_without_signature(query), _without_signature(text)) if part)
            if "signature=" in total
            else total
        )
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        try:
            stamp = int(params.get("timestamp", ""))
            window = int(params.get("recvWindow", "5000"))
        except ValueError:
            raise BinanceError(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            ) from None
        server = self.now_ms()
        if stamp > server + 1000 or server - stamp > window or self.rng.random() < self.timestamp_error_rate:
            raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return params

    # -- orders -------------------------------------------------------------------------------

    def place(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = params.get("symbol", "")
        if symbol not in MARKETS:
            raise BinanceError(400, -1121, "Invalid symbol.")
        if symbol in HALTED:
            raise BinanceError(400, -1013, "Market is closed.")
        side, kind = params.get("side", "").upper(), params.get("type", "").upper()
        if side not in ("BUY", "SELL") or kind not in ("MARKET", "LIMIT"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        try:
            quantity = float(params.get("quantity", "nan"))
        except ValueError:
            quantity = math.nan
        if not quantity > 0:
            raise BinanceError(400, -1013, "Invalid quantity.")
        now = self.now()
        if (
            self.orders_10s.add(now, 1) > self.orders_per_10s
            or self.orders_1d.add(now, 1) > self.orders_per_day
        ):
            raise BinanceError(429, -1015, "Too many new orders.")
        if self.rng.random() < self.error_rate:
            raise BinanceError(
                503, -1001, "Internal error; unable to process your request. Please try again."
            )
        market = self.tick(symbol)
        price = market if kind == "MARKET" else float(params.get("price", "0") or 0)
        if price * quantity > MAX_NOTIONAL:
            raise BinanceError(400, -2010, "Account has insufficient balance for requested action.")
        marketable = (
            kind == "MARKET" or (side == "BUY" and price >= market) or (side == "SELL" and price <= market)
        )
        order_id = next(self.ids)
        order = {
            "symbol": symbol,
            "orderId": order_id,
            "orderListId": -1,
            "clientOrderId": params.get("newClientOrderId") or f"mock{order_id}",
            "transactTime": self.now_ms(),
            "price": f"{price:.8f}" if kind == "LIMIT" else "0.00000000",
            "origQty": f"{quantity:.8f}",
            "executedQty": "0.00000000",
            "cummulativeQuoteQty": "0.00000000",
            "status": "NEW",
            "timeInForce": params.get("timeInForce", "GTC"),
            "type": kind,
            "side": side,
            "workingTime": self.now_ms(),
            "fills": [],
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if marketable:
            self._fill(order, price if kind == "LIMIT" else market, quantity)
        self.orders[order_id] = order
        if len(self.orders) > 10_000:  # bounded: the oldest orders are forgotten
            self.orders.pop(next(iter(self.orders)))
        return order

    def _fill(self, order: dict[str, Any], price: float, quantity: float) -> None:
        base, quote = MARKETS[order["symbol"]][:2]
        signed = quantity if order["side"] == "BUY" else -quantity
        self.balances[base] = self.balances.get(base, 0.0) + signed
        self.balances[quote] = self.balances.get(quote, 0.0) - signed * price
        order.update(
            status="FILLED",
            executedQty=f"{quantity:.8f}",
            cummulativeQuoteQty=f"{price * quantity:.8f}",
            fills=[
                {
                    "price": f"{price:.8f}",
                    "qty": f"{quantity:.8f}",
                    "commission": "0.00000000",
                    "commissionAsset": quote,
                    "tradeId": order["orderId"],
                }
            ],
        )

    def find(self, params: dict[str, str]) -> dict[str, Any]:
        order = None
        if params.get("orderId", "").isdigit():
            order = self.orders.get(int(params["orderId"]))
        elif params.get("origClientOrderId"):
            order = next(
                (o for o in self.orders.values() if o["clientOrderId"] == params["origClientOrderId"]), None
            )
        if order is None or order["symbol"] != params.get("symbol"):
            raise BinanceError(400, -2013, "Order does not exist.")
        return order

    def cancel(self, params: dict[str, str]) -> dict[str, Any]:
        order = self.find(params)
        if order["status"] != "NEW":
            raise BinanceError(400, -2011, "Unknown order sent.")
        order["status"] = "CANCELED"
        return order

    def exchange_info(self) -> dict[str, Any]:
        symbols = []
        for symbol, (base, quote, _, step, tick) in MARKETS.items():
            symbols.append(
                {
                    "symbol": symbol,
                    "status": "BREAK" if symbol in HALTED else "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "quoteOrderQtyMarketAllowed": True,
                    "allowTrailingStop": True,
                    "cancelReplaceAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": tick,
                            "maxPrice": "1000000.00",
                            "tickSize": tick,
                        },
                        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000000.00", "stepSize": step},
                        {
                            "filterType": "NOTIONAL",
                            "minNotional": "1.00",
                            "applyMinToMarket": True,
                            "maxNotional": "9000000.00",
                            "applyMaxToMarket": False,
                            "avgPriceMins": 5,
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": [
                        "NONE",
                        "EXPIRE_TAKER",
                        "EXPIRE_MAKER",
                        "EXPIRE_BOTH",
                    ],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": self.rate_limits(),
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def account(self) -> dict[str, Any]:
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "updateTime": self.now_ms(),
            "accountType": "SPOT",
            "balances": [
                {"asset": asset, "free": f"{max(amount, 0.0):.8f}", "locked": "0.00000000"}
                for asset, amount in sorted(self.balances.items())
            ],
            "permissions": ["SPOT"],
        }


def _without_signature(part: str) -> str:
    return "&".join(p for p in part.split("&") if p and not p.startswith("signature="))


def install(app: FastAPI, venue: MockBinance | None = None) -> MockBinance:
    """Serve the Binance spot subset on ``app`` under ``/api/v3``; returns the venue state."""
    venue = venue or MockBinance.from_env()
    router = APIRouter(prefix="/api/v3")

    @app.exception_handler(BinanceError)
    async def binance_error(_request: Request, exc: BinanceError) -> JSONResponse:
        return JSONResponse(
            {"code": exc.code, "msg": exc.msg},
            status_code=exc.status,
            headers={**venue.weight_headers(), **exc.headers},
        )

    def reply(body: Any, order: bool = False) -> JSONResponse:
        return JSONResponse(body, headers=venue.weight_headers(order))

    async def charge(method: str, endpoint: str) -> None:
        if venue.extra_latency > 0:
            await asyncio.sleep(venue.extra_latency)
        venue.charge(method, endpoint)

    async def signed(request: Request, method: str, endpoint: str) -> dict[str, str]:
        await charge(method, endpoint)
        return venue.signed_params(request, await request.body())

    @router.get("/ping")
    async def ping() -> JSONResponse:
        await charge("GET", "ping")
        return reply({})

    @router.get("/time")
    async def server_time() -> JSONResponse:
        await charge("GET", "time")
        return reply({"serverTime": venue.now_ms()})

    @router.get("/exchangeInfo")
    async def exchange_info() -> JSONResponse:
        await charge("GET", "exchangeInfo")
        return reply(venue.exchange_info())

    @router.get("/ticker/price")
    async def ticker_price(symbol: str) -> JSONResponse:
        await charge("GET", "ticker/price")
        if symbol not in MARKETS:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return reply({"symbol": symbol, "price": f"{venue.tick(symbol):.8f}"})

    @router.get("/ticker/24hr")
    async def ticker_24hr(symbol: str) -> JSONResponse:
        await charge("GET", "ticker/24hr")
        if symbol not in MARKETS:
            raise BinanceError(400, -1121, "Invalid symbol.")
        price = venue.tick(symbol)
        now = venue.now_ms()
        return reply(
            {
                "symbol": symbol,
                "priceChange": "0.00000000",
                "priceChangePercent": "0.000",
                "weightedAvgPrice": f"{price:.8f}",
                "lastPrice": f"{price:.8f}",
                "bidPrice": f"{price * 0.9999:.8f}",
                "askPrice": f"{price * 1.0001:.8f}",
                "openPrice": f"{MARKETS[symbol][2]:.8f}",
                "highPrice": f"{max(price, MARKETS[symbol][2]):.8f}",
                "lowPrice": f"{min(price, MARKETS[symbol][2]):.8f}",
                "volume": "1000.00000000",
                "quoteVolume": f"{1000 * price:.8f}",
                "openTime": now - 86_400_000,
                "closeTime": now,
                "count": 1000,
            }
        )

    @router.post("/order")
    async def new_order(request: Request) -> JSONResponse:
        params = await signed(request, "POST", "order")
        await asyncio.sleep(venue.rng.uniform(0.002, max(0.002, venue.max_latency)))  # matching engine
        return reply(venue.place(params), order=True)

    @router.get("/order")
    async def query_order(request: Request) -> JSONResponse:
        return reply(venue.find(await signed(request, "GET", "order")))

    @router.delete("/order")
    async def cancel_order(request: Request) -> JSONResponse:
        return reply(venue.cancel(await signed(request, "DELETE", "order")))

    @router.get("/openOrders")
    async def open_orders(request: Request) -> JSONResponse:
        params = await signed(request, "GET", "openOrders")
        symbol = params.get("symbol")
        return reply(
            [o for o in venue.orders.values() if o["status"] == "NEW" and symbol in (None, o["symbol"])]
        )

    @router.get("/account")
    async def account(request: Request) -> JSONResponse:
        await signed(request, "GET", "account")
        return reply(venue.account())

    app.include_router(router)
    return venue


def ccxt_exchange(
    exchange_class: Any,
    base_url: str,
    *,
    api_key: str = DEMO_API_KEY,
    secret: str = DEMO_API_SECRET,
    **config: Any,
) -> Any:
    """An unmodified ccxt ``binance`` (sync or async class) whose every request goes to ``base_url``.

    Every API URL keeps its path and gets the mock's scheme and host, so nothing can leave the
    machine. Only spot markets are loaded (the mock has no futures API), currencies are not
    fetched and margin pairs are not loaded (those need Binance's wallet and margin APIs), and ccxt's own rate limiter is off: the mock's
    429s and weight headers are what the demo shows. ``config`` is merged into ccxt's options.
    """
    options = {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "defaultType": "spot",
        "warnOnFetchOpenOrdersWithoutSymbol": False,
        **config.pop("options", {}),
    }
    settings = {"apiKey": api_key, "secret": secret, "enableRateLimit": False, "timeout": 10_000, **config}
    exchange = exchange_class({**settings, "options": options})
    return point_at(exchange, base_url)


def point_at(exchange: Any, base_url: str) -> Any:
    """Rewrite every API URL of a ccxt exchange to ``base_url``'s scheme and host (paths kept)."""
    base = urlsplit(base_url)

    def moved(url: Any) -> Any:
        if isinstance(url, dict):
            return {k: moved(v) for k, v in url.items()}
        if isinstance(url, str) and url.startswith(("http://", "https://", "ws://", "wss://")):
            parts = urlsplit(url)
            return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, parts.fragment))
        return url

    exchange.urls = {**exchange.urls, "api": moved(exchange.urls["api"])}
    for key in ("test", "demo", "apiBackup"):
        if key in exchange.urls:
            exchange.urls[key] = moved(exchange.urls[key])
    return exchange
