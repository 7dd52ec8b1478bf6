"""The venue-specific rules: rate-limit headers, exchangeInfo limits, credential names, templates, hosts."""

from __future__ import annotations

import time

import pytest

from otel_trader.integrations.http_client import PropagationPolicy, path_template
from otel_trader.redaction import is_sensitive_key, redact_url
from otel_trader.trading import exchanges


def usage() -> dict[tuple[str, str], float]:
    return exchanges.rate_limit_usage()


def test_binance_families_have_their_own_limits() -> None:
    exchanges.observe_response_headers("binance", {"x-mbx-used-weight-1m": "600"}, "/api/v3/account")
    exchanges.observe_response_headers(
        "binance", {"X-MBX-USED-WEIGHT-1M": "1200", "X-MBX-ORDER-COUNT-1M": "60"}, "/fapi/v1/order"
    )
    exchanges.observe_response_headers("binance", {"X-SAPI-USED-IP-WEIGHT-1M": "3000"}, "/sapi/v1/capital/config/getall")
    assert usage() == {
        ("binance", "weight_1m"): pytest.approx(600 / 6000),
        ("binance", "fapi_weight_1m"): pytest.approx(1200 / 2400),
        ("binance", "fapi_orders_1m"): pytest.approx(60 / 1200),
        ("binance", "sapi_ip_weight_1m"): pytest.approx(3000 / 12_000),
    }


def test_exchange_info_limits_replace_the_defaults() -> None:
    body = (
        '{"timezone":"UTC","rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,'
        '"limit":1200},{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":50}],"symbols":[]}'
    )
    exchanges.learn_binance_limits("binance", "/api/v3/exchangeInfo", body)
    exchanges.observe_response_headers(
        "binance", {"x-mbx-used-weight-1m": "300", "x-mbx-order-count-10s": "5"}, "/api/v3/order"
    )
    assert usage()[("binance", "weight_1m")] == pytest.approx(0.25)
    assert usage()[("binance", "orders_10s")] == pytest.approx(0.1)


def test_bybit_and_gate_report_the_busiest_open_endpoint_window() -> None:
    later = int((time.time() + 30) * 1000)
    exchanges.observe_response_headers(
        "bybit",
        {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "1", "X-Bapi-Limit-Reset-Timestamp": str(later)},
        "/v5/order/create",
    )
    exchanges.observe_response_headers(
        "bybit",
        {"X-Bapi-Limit": "50", "X-Bapi-Limit-Status": "45", "X-Bapi-Limit-Reset-Timestamp": str(later)},
        "/v5/position/list",
    )
    past = int((time.time() - 1) * 1000)
    exchanges.observe_response_headers(
        "gate",
        {
            "X-Gate-RateLimit-Limit": "100",
            "X-Gate-RateLimit-Requests-Remain": "0",
            "X-Gate-RateLimit-Reset-Timestamp": str(past),
        },
        "/api/v4/spot/orders",
    )
    assert usage()[("bybit", "endpoint")] == pytest.approx(0.9)  # order/create: 9 of 10 used
    assert usage()[("gate", "endpoint")] == 0.0  # its window already ended


def test_kucoin_and_generic_ratelimit_headers() -> None:
    exchanges.observe_response_headers(
        "kucoin", {"gw-ratelimit-limit": "2000", "gw-ratelimit-remaining": "500", "gw-ratelimit-reset": "20000"}
    )
    exchanges.observe_response_headers(
        "bitstamp", {"RateLimit-Limit": "100, 100;w=60", "RateLimit-Remaining": "25", "RateLimit-Reset": "30"}
    )
    assert usage()[("kucoin", "requests")] == pytest.approx(0.75)
    assert usage()[("bitstamp", "requests")] == pytest.approx(0.75)


def test_windows_expire_to_zero() -> None:
    exchanges.record_rate_limit_usage("okx-like", "requests", 9, 10, expires_in=0.05)
    assert usage()[("okx-like", "requests")] == pytest.approx(0.9)
    time.sleep(0.1)
    assert usage()[("okx-like", "requests")] == 0.0


def test_headers_without_limits_change_nothing() -> None:
    exchanges.observe_response_headers("okx", {"Content-Type": "application/json", "x-request-id": "abc"})
    exchanges.observe_response_headers("binance", {"x-mbx-used-weight": "12"}, "/api/v3/time")  # no interval
    assert usage() == {}


@pytest.mark.parametrize(
    "name",
    [
        "X-MBX-APIKEY",
        "signature",
        "OK-ACCESS-KEY",
        "OK-ACCESS-SIGN",
        "OK-ACCESS-PASSPHRASE",
        "X-BAPI-API-KEY",
        "X-BAPI-SIGN",
        "API-Key",
        "API-Sign",
        "CB-ACCESS-KEY",
        "CB-ACCESS-SIGN",
        "CB-ACCESS-PASSPHRASE",
        "KC-API-KEY",
        "KC-API-SIGN",
        "KC-API-PASSPHRASE",
        "ACCESS-KEY",
        "ACCESS-SIGN",
        "KEY",
        "SIGN",
        "X-BM-KEY",
        "X-BM-SIGN",
        "X-MEXC-APIKEY",
        "bfx-apikey",
        "bfx-signature",
        "X-Auth",
        "X-Auth-Signature",
        "Authent",
        "AccessKeyId",
        "http.request.header.x_mbx_apikey",
        "http.request.header.ok_access_sign",
    ],
)
def test_venue_credential_names_are_sensitive(name: str) -> None:
    assert is_sensitive_key(name)


@pytest.mark.parametrize(
    "name", ["timestamp", "recvWindow", "X-BAPI-TIMESTAMP", "OK-ACCESS-TIMESTAMP", "symbol", "X-Request-Id"]
)
def test_request_fields_stay_readable(name: str) -> None:
    assert not is_sensitive_key(name)


def test_signed_urls_keep_their_shape() -> None:
    url = "https://api.binance.com/api/v3/order?symbol=BTCUSDT&timestamp=1700000000000&recvWindow=5000&signature=ab12"
    assert redact_url(url) == (
        "https://api.binance.com/api/v3/order?symbol=BTCUSDT&timestamp=1700000000000&recvWindow=5000&signature=REDACTED"
    )
    huobi = "https://api.huobi.pro/v1/order/orders?AccessKeyId=e2xxxxxx-99xxxxxx&SignatureMethod=HmacSHA256&Signature=4F65x5A2bLyMWVQj3Aqp%2BB4w%2BivaA7n5Oi2SuYtCJ9o%3D"
    assert "e2xxxxxx" not in redact_url(huobi) and "4F65x5A2" not in redact_url(huobi)


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/v3/order", "/api/v3/order"),
        ("/orders/8231/fills", "/orders/{id}/fills"),
        ("/v1/orders/c0ffee00-1111-2222-3333-444455556666", "/v1/orders/{id}"),
        ("/api/v3/brokerage/products/BTC-USD/ticker", "/api/v3/brokerage/products/BTC-USD/ticker"),
        ("/ws/pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1", "/ws/{id}"),
        ("/bot123456:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0/sendMessage", "/bot{token}/sendMessage"),
        ("/accounts/a1b2c3d4e5/balances", "/accounts/{id}/balances"),
        ("/0/private/AddOrder", "/{id}/private/AddOrder"),
    ],
)
def test_path_templates(path: str, template: str) -> None:
    assert path_template(path) == template


def test_propagation_policy() -> None:
    ours = PropagationPolicy()
    for host in ("127.0.0.1", "::1", "localhost", "10.1.2.3", "192.168.0.7", "exchange", "risk.svc", "db.internal"):
        assert ours.allows(host), host
    for host in ("api.binance.com", "8.8.8.8", "api.telegram.org", "", None):
        assert not ours.allows(host), host
    listed = PropagationPolicy(["*.desk.example", "gateway.example"])
    assert listed.allows("oms.desk.example") and listed.allows("gateway.example")
    assert not listed.allows("desk.example.evil.com")
    assert PropagationPolicy(["*"]).allows("api.binance.com")
