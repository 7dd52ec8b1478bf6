"""The ccxt integration with real ccxt (sync over requests, async over aiohttp) against the mock venue."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel_trader.demo.binance import ccxt_exchange
from otel_trader.demo.summary import parse
from otel_trader.trading import exchanges
from tests.conftest import free_port

from .conftest import Exported, Venue, by_name, children

FLAVORS = ["sync", "async"]


class Bot:
    """The same ccxt calls through ``ccxt.binance`` or ``ccxt.async_support.binance``."""

    def __init__(self, flavor: str, venue: Venue, **config: Any) -> None:
        import ccxt
        import ccxt.async_support

        self.flavor = flavor
        self.loop = asyncio.new_event_loop() if flavor == "async" else None
        cls = ccxt.binance if flavor == "sync" else ccxt.async_support.binance
        config.setdefault("api_key", venue.api_key)
        config.setdefault("secret", venue.secret)
        self.exchange = ccxt_exchange(cls, venue.url, **config)

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.exchange, method)(*args, **kwargs)
        if inspect.isawaitable(result):
            assert self.loop is not None
            result = self.loop.run_until_complete(result)
        return result

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.exchange.close())
            self.loop.close()


@pytest.fixture
def bots() -> Iterator[list[Bot]]:
    made: list[Bot] = []
    yield made
    for bot in made:
        bot.close()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in parse(text) if s.name == name}


def value(text: str, name: str, **labels: str) -> float | None:
    for s in parse(text):
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def ccxt_spans(exported: Exported) -> list[Any]:
    return [s for s in exported.finished_spans() if s.name.startswith("ccxt.")]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_unified_calls_are_spans_with_their_http_children_and_metrics(
    exported: Exported, venue: Venue, bots: list[Bot], flavor: str
) -> None:
    bot = Bot(flavor, venue)
    bots.append(bot)
    # The first call loads the markets inside create_order: one span, two HTTP children.
    placed = bot("create_order", "BTC/USDT", "market", "buy", 0.01)
    assert placed["status"] == "closed"
    bot("fetch_order", placed["id"], "BTC/USDT")
    resting = bot("create_order", "ETH/USDT", "limit", "buy", 0.5, 100.0)
    assert [o["id"] for o in bot("fetch_open_orders", "ETH/USDT")] == [resting["id"]]
    bot("cancel_order", resting["id"], "ETH/USDT")
    bot("fetch_balance")
    bot("fetch_ticker", "SOL/USDT")

    spans = exported.finished_spans()
    names = [s.name for s in ccxt_spans(exported)]
    assert names == [
        "ccxt.binance.create_order",
        "ccxt.binance.fetch_order",
        "ccxt.binance.create_order",
        "ccxt.binance.fetch_open_orders",
        "ccxt.binance.cancel_order",
        "ccxt.binance.fetch_balance",
        "ccxt.binance.fetch_ticker",
    ]
    first = by_name(spans, "ccxt.binance.create_order")[0]
    assert first.kind == SpanKind.INTERNAL and first.parent is None
    assert dict(first.attributes) == {
        "ccxt.exchange": "binance",
        "ccxt.method": "create_order",
        "ccxt.symbol": "BTC/USDT",
        "ccxt.order.type": "market",
        "ccxt.order.side": "buy",
    }
    http = children(spans, first)
    assert [(s.name, s.kind) for s in http] == [
        ("GET /api/v3/exchangeInfo", SpanKind.CLIENT),
        ("POST /api/v3/order", SpanKind.CLIENT),
    ]
    assert http[1].attributes["url.template"] == "/api/v3/order"
    assert http[1].attributes["http.response.status_code"] == 200
    fetched = by_name(spans, "ccxt.binance.fetch_order")[0]
    assert fetched.attributes["ccxt.order.id"] == placed["id"]
    (get_order,) = children(spans, fetched)
    assert get_order.name == "GET /api/v3/order"
    assert "signature=REDACTED" in get_order.attributes["url.full"]
    assert not by_name(spans, "ccxt.binance.load_markets")  # nested: measured by the outer call

    text = exported.scrape()
    assert samples(text, "exchange_requests_total") == {
        (("exchange", "binance"), ("method", m), ("outcome", "success")): n
        for m, n in {
            "create_order": 2.0,
            "fetch_order": 1.0,
            "fetch_open_orders": 1.0,
            "cancel_order": 1.0,
            "fetch_balance": 1.0,
            "fetch_ticker": 1.0,
        }.items()
    }
    buckets = [
        float(s.labels["le"])
        for s in parse(text)
        if s.name == "exchange_request_duration_seconds_bucket" and s.labels["method"] == "fetch_balance"
    ]
    assert buckets == [*exchanges.EXCHANGE_BUCKETS, float("inf")]
    assert value(text, "exchange_request_duration_seconds_count", method="create_order") == 2.0
    assert samples(text, "exchange_errors_total") == {}
    last = value(text, "exchange_last_success_timestamp_seconds", exchange="binance")
    assert last is not None and abs(last - __import__("time").time()) < 60


def _fails(bot: Bot, method: str, *args: Any) -> str:
    with pytest.raises(Exception) as raised:
        bot(method, *args)
    return type(raised.value).__name__


@pytest.mark.parametrize("flavor", FLAVORS)
def test_ccxt_error_classes_become_outcomes_and_error_labels(
    exported: Exported, venue: Venue, bots: list[Bot], flavor: str
) -> None:
    bot = Bot(flavor, venue, timeout=300)
    bots.append(bot)
    bot("load_markets")
    expected: list[tuple[str, str, str]] = []  # (method, outcome, error)

    venue.state.rate_limit_rate = 1.0
    expected.append(("fetch_balance", "error", _fails(bot, "fetch_balance")))
    venue.state.rate_limit_rate = 0.0
    venue.state.timestamp_error_rate = 1.0
    expected.append(("fetch_balance", "error", _fails(bot, "fetch_balance")))
    venue.state.timestamp_error_rate = 0.0
    venue.state.error_rate = 1.0
    expected.append(("create_order", "error", _fails(bot, "create_order", "BTC/USDT", "market", "buy", 0.01)))
    venue.state.error_rate = 0.0
    expected.append(("create_order", "rejected", _fails(bot, "create_order", "BTC/USDT", "market", "buy", 50)))
    expected.append(("create_order", "rejected", _fails(bot, "create_order", "XRP/USDT", "market", "buy", 10)))
    expected.append(("fetch_order", "rejected", _fails(bot, "fetch_order", "999", "BTC/USDT")))
    venue.state.extra_latency = 1.0
    expected.append(("fetch_ticker", "error", _fails(bot, "fetch_ticker", "BTC/USDT")))
    venue.state.extra_latency = 0.0
    venue.state.api_secret = "rotated-secret"
    expected.append(("fetch_balance", "error", _fails(bot, "fetch_balance")))

    assert [e[2] for e in expected] == [
        "DDoSProtection",  # 429
        "InvalidNonce",  # -1021
        "OperationFailed",  # 503, -1001
        "InsufficientFunds",  # -2010
        "MarketClosed",  # -1013
        "OrderNotFound",  # -2013
        "RequestTimeout",
        "AuthenticationError",  # -1022
    ]
    failed = [s for s in ccxt_spans(exported) if s.name != "ccxt.binance.load_markets"]
    assert [(s.attributes["ccxt.method"], s.attributes["ccxt.outcome"], s.attributes["error.type"]) for s in failed] == [
        (m, o, e) for m, o, e in expected
    ]
    for span in failed:
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes["ccxt.error"] == span.attributes["error.type"]
        assert any(e.name == "exception" for e in span.events)
    text = exported.scrape()
    errors = samples(text, "exchange_errors_total")
    for method, _, error in expected:
        assert errors[(("error", error), ("exchange", "binance"), ("method", method))] >= 1
    assert value(text, "exchange_requests_total", method="create_order", outcome="rejected") == 2.0
    assert value(text, "exchange_requests_total", method="fetch_balance", outcome="error") == 3.0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_unreachable_venue(exported: Exported, venue: Venue, bots: list[Bot], flavor: str) -> None:
    bot = Bot(flavor, venue)
    bots.append(bot)
    bot.exchange.urls["api"] = {k: f"http://127.0.0.1:{free_port()}/api/v3" for k in bot.exchange.urls["api"]}
    error = _fails(bot, "fetch_time")
    assert error in ("NetworkError", "ExchangeNotAvailable")
    (span,) = ccxt_spans(exported)
    assert span.attributes["error.type"] == error
    text = exported.scrape()
    assert value(text, "exchange_errors_total", method="fetch_time", error=error) == 1.0
    # No call ever succeeded: the "last success" clock starts at the first attempt.
    assert value(text, "exchange_last_success_timestamp_seconds", exchange="binance") is not None


def test_cancelled_call_is_its_own_outcome(exported: Exported, venue: Venue, bots: list[Bot]) -> None:
    bot = Bot("async", venue)
    bots.append(bot)
    bot("load_markets")
    venue.state.extra_latency = 0.5
    assert bot.loop is not None
    with pytest.raises(TimeoutError):
        bot.loop.run_until_complete(asyncio.wait_for(bot.exchange.fetch_balance(), 0.05))
    venue.state.extra_latency = 0.0
    (span,) = by_name(exported.finished_spans(), "ccxt.binance.fetch_balance")
    assert span.attributes["ccxt.outcome"] == "cancelled"
    assert span.status.status_code == StatusCode.UNSET
    text = exported.scrape()
    assert value(text, "exchange_requests_total", method="fetch_balance", outcome="cancelled") == 1.0
    assert value(text, "exchange_errors_total", method="fetch_balance", error="CancelledError") == 1.0


def _last_weight(venue: Venue) -> int:
    headers = [s.response_headers for s in venue.seen if "x-mbx-used-weight-1m" in s.response_headers]
    return int(headers[-1]["x-mbx-used-weight-1m"])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_rate_limit_headroom_follows_the_weight_headers(
    exported: Exported, venue: Venue, bots: list[Bot], flavor: str
) -> None:
    venue.state.weight_limit = 400  # published in exchangeInfo: Binance's default (6000) must not be used
    bot = Bot(flavor, venue)
    bots.append(bot)
    seen = []
    for step in range(3):
        if step == 0:
            bot("load_markets")
        else:
            bot("fetch_balance")
            bot("create_order", "BTC/USDT", "market", "buy", 0.001)
        ratio = exchanges.rate_limit_usage()[("binance", "weight_1m")]
        assert ratio == pytest.approx(_last_weight(venue) / 400)
        seen.append(ratio)
    assert seen[1] > seen[0] or seen[2] > seen[1]  # (a minute boundary resets the venue's count once)
    text = exported.scrape()
    assert value(text, "exchange_rate_limit_used_ratio", exchange="binance", limit="weight_1m") == pytest.approx(seen[-1])
    orders = value(text, "exchange_rate_limit_used_ratio", exchange="binance", limit="orders_10s")
    assert orders is not None and 0 < orders <= 2 / 100
    assert value(text, "exchange_rate_limit_used_ratio", exchange="binance", limit="orders_1d") == pytest.approx(
        orders * 100 / 200_000
    )


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("offset", [2.5, -1.5])
def test_clock_skew_from_fetch_time(
    exported: Exported, venue: Venue, bots: list[Bot], flavor: str, offset: float
) -> None:
    venue.state.clock_offset = offset
    bot = Bot(flavor, venue)
    bots.append(bot)
    bot("fetch_time")
    assert exchanges.clock_skew("binance") == pytest.approx(offset, abs=0.1)
    assert value(exported.scrape(), "exchange_clock_skew_seconds", exchange="binance") == pytest.approx(offset, abs=0.1)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_clock_skew_from_the_date_header_without_fetch_time(
    exported: Exported, venue: Venue, bots: list[Bot], flavor: str
) -> None:
    venue.state.clock_offset = 3.0
    bot = Bot(flavor, venue)
    bots.append(bot)
    bot("load_markets")
    # Date has whole seconds: the estimate is within half a second (plus the round trip).
    skew = exchanges.clock_skew("binance")
    assert skew is not None and abs(skew - 3.0) <= 0.6


@pytest.mark.parametrize("flavor", FLAVORS)
def test_implicit_endpoints_are_measured_too(exported: Exported, venue: Venue, bots: list[Bot], flavor: str) -> None:
    bot = Bot(flavor, venue)
    bots.append(bot)
    bot("public_get_time")
    bot("privateGetAccount")
    spans = ccxt_spans(exported)
    assert [s.name for s in spans] == ["ccxt.binance.public_get_time", "ccxt.binance.private_get_account"]
    assert [c.name for c in children(exported.finished_spans(), spans[1])] == ["GET /api/v3/account"]
    text = exported.scrape()
    assert value(text, "exchange_requests_total", method="private_get_account", outcome="success") == 1.0


def test_instances_made_before_telemetry_and_subclasses(start_telemetry: Any, venue: Venue, bots: list[Bot]) -> None:
    import ccxt

    early = Bot("sync", venue)  # created while telemetry is off
    bots.append(early)

    class DeskBinance(ccxt.binance):  # type: ignore[misc,name-defined]
        def fetch_balance(self, params: dict[str, Any] | None = None) -> Any:
            return super().fetch_balance(params or {})

    exported = start_telemetry()
    early("fetch_time")
    desk = ccxt_exchange(DeskBinance, venue.url, api_key=venue.api_key, secret=venue.secret)
    desk.fetch_balance()
    assert [s.name for s in ccxt_spans(exported)] == ["ccxt.binance.fetch_time", "ccxt.binance.fetch_balance"]


def test_shutdown_restores_ccxt(start_telemetry: Any, venue: Venue) -> None:
    import ccxt
    import ccxt.async_support

    exported = start_telemetry()
    assert getattr(ccxt.binance.create_order, "_otel_trader_wrapped", False)
    assert getattr(ccxt.async_support.binance.create_order, "_otel_trader_wrapped", False)
    exported.manager.shutdown(timeout=5)
    for cls in (ccxt.binance, ccxt.async_support.binance):
        assert not getattr(cls.create_order, "_otel_trader_wrapped", False)
        assert not getattr(cls.fetch2, "_otel_trader_wrapped", False)
        assert not getattr(cls.on_rest_response, "_otel_trader_wrapped", False)
    exchange = ccxt_exchange(ccxt.binance, venue.url, api_key=venue.api_key, secret=venue.secret)
    exchange.fetch_time()
    assert ccxt_spans(exported) == []


def test_switched_off_keeps_the_http_spans(start_telemetry: Any, venue: Venue, bots: list[Bot]) -> None:
    exported = start_telemetry(disabled_instrumentations=["ccxt"])
    bot = Bot("sync", venue)
    bots.append(bot)
    bot("fetch_time")
    spans = exported.finished_spans()
    assert [s.name for s in spans] == ["GET /api/v3/time"]
    assert "exchange_requests_total" not in exported.scrape()


_HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_no_key_secret_or_signature_leaves_the_process(
    start_telemetry: Any, venue: Venue, bots: list[Bot], flavor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worst case a user can configure: every request and response header on the HTTP spans,
    # ccxt's own DEBUG log (request headers and signed bodies) exported.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", ".*")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE", ".*")
    exported = start_telemetry(log_level="DEBUG")
    ccxt_logger = logging.getLogger("ccxt")
    monkeypatch.setattr(ccxt_logger, "level", logging.DEBUG)
    bot = Bot(flavor, venue)
    bots.append(bot)
    order = bot("create_order", "BTC/USDT", "market", "buy", 0.01)
    bot("fetch_order", order["id"], "BTC/USDT")
    with pytest.raises(Exception):  # noqa: B017 - OrderNotFound, its message has the signed URL
        bot("fetch_order", "424242", "BTC/USDT")
    bot("fetch_balance")

    signatures = venue.signatures()
    assert len(signatures) >= 4 and all(_HEX64.fullmatch(s) for s in signatures)
    spans = "\n".join(s.to_json() for s in exported.finished_spans())
    logs = "\n".join(r.to_json() for r in exported.finished_logs())
    metrics = exported.scrape()
    for where, text in {"spans": spans, "logs": logs, "metrics": metrics}.items():
        for secret in (venue.api_key, venue.secret, *signatures):
            assert secret not in text, f"{secret[:10]}… in the exported {where}"
        assert not _HEX64.search(text), f"a 64-hex-digit value (a signature) in the exported {where}"
    # What was exported is still useful: values replaced, not data dropped.
    client = next(s for s in exported.finished_spans() if s.name == "POST /api/v3/order")
    assert client.attributes["http.request.header.x_mbx_apikey"] in ("REDACTED", ("REDACTED",))
    assert "x-mbx-used-weight-1m" in json.dumps(dict(client.attributes)).replace("_", "-")
    assert "signature=REDACTED" in logs and "'X-MBX-APIKEY': 'REDACTED'" in logs
    failed = next(s for s in exported.finished_spans() if s.attributes.get("ccxt.error") == "OrderNotFound")
    event = next(e for e in failed.events if e.name == "exception")
    assert "Order does not exist" in str(event.attributes["exception.message"])
    if flavor == "sync":  # requests' HTTPError (chained in the stack trace) names the signed URL
        assert "signature=REDACTED" in str(event.attributes["exception.stacktrace"])


def test_labels_are_bounded(exported: Exported) -> None:
    for i in range(60):
        exchanges.record_call(f"venue{i:02d}", "fetch_time", 0.01)
    for i in range(210):
        exchanges.record_call("venue00", f"private_get_endpoint_{i}", 0.01)
    text = exported.scrape()
    venues = {s.labels["exchange"] for s in parse(text) if s.name == "exchange_requests_total"}
    assert len(venues) == 51 and "__other__" in venues
    methods = {s.labels["method"] for s in parse(text) if s.name == "exchange_requests_total"}
    assert len(methods) == 201 and "__other__" in methods
    assert value(text, "otel_trader_label_overflow_total", label="exchange") == 10.0
    assert value(text, "exchange_requests_total", exchange="__other__", method="fetch_time") == 10.0
