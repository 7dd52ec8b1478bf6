"""Exchange credentials never reach the collector: ccxt sync and async, through otelcol-trader to the sink.

The bot (tests/e2e/apps/ccxt_bot.py) trades with the mock Binance venue with every request and
response header captured on its HTTP spans and ccxt's DEBUG log exported: the worst a user can
configure. The sink's file is the SigNoz stand-in; :8889 is what Prometheus scrapes.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest

from otel_trader.collector import http_get

from .conftest import E2EStack, app_env, wait_until
from .test_secrets import redacted

_HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.mark.timeout(180)
def test_no_api_key_secret_or_signature_reaches_the_sink(stack: E2EStack) -> None:
    sink = stack.sink()
    collector = stack.collector(sink)
    otlp = collector.endpoints.otlp_grpc
    key, secret = f"vk{secrets.token_hex(16)}", f"vs{secrets.token_hex(24)}"
    credentials = {"MOCK_EXCHANGE_API_KEY": key, "MOCK_EXCHANGE_API_SECRET": secret}
    quiet = {"MOCK_EXCHANGE_ERROR_RATE": "0", "MOCK_EXCHANGE_RATE_LIMIT_RATE": "0", "MOCK_EXCHANGE_TIMESTAMP_ERROR_RATE": "0"}
    venue = stack.app("venue", "otel_trader.demo.exchange:create_app",
                      app_env("e2e-venue", otlp, **credentials, **quiet))
    bot = stack.app("bot", "tests.e2e.apps.ccxt_bot:create_app", app_env(
        "e2e-bot", otlp, EXCHANGE_URL=venue.url, TELEMETRY_LOG_LEVEL="DEBUG",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST=".*",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE=".*",
        **credentials))
    status, body = bot.get("/trade", timeout=60)
    assert status == 200, body

    def arrived() -> bool:
        names = {s["name"] for s in sink.spans()}
        metrics = {m["name"] for m in sink.metrics()}
        logs = [r for r in sink.logs() if "Request:" in str(r["body_value"])]
        wanted = {"ccxt.binance.create_order", "ccxt.binance.fetch_order", "ccxt.binance.fetch_balance",
                  "POST /api/v3/order", "GET /api/v3/order", "GET /api/v3/account"}
        return wanted <= names and {"exchange_requests_total", "exchange_rate_limit_used_ratio"} <= metrics and bool(logs)

    wait_until(arrived, 60, "the bot's ccxt spans, exchange metrics and ccxt debug logs in the sink")

    raw = sink.raw()
    scraped = http_get(collector.endpoints.prometheus)[1]
    for where, text in {"sink": raw, "collector :8889": scraped}.items():
        assert key not in text, f"the API key reached the {where}"
        assert secret not in text, f"the API secret reached the {where}"
        assert not _HEX64.search(text), f"a 64-hex-digit value (a signature) reached the {where}"
    # The values were replaced, not the data dropped (tests/integrations/test_ccxt.py checks the
    # process alone).
    spans = sink.spans()
    order = next(s for s in spans if s["name"] == "POST /api/v3/order" and s["resource"]["service.name"] == "e2e-bot")
    # Headers were captured (the worst case really ran); the key's header was REDACTED in the
    # process (tests/integrations/test_ccxt.py), which the collector passes on as it is.
    assert "http.request.header.content_type" in order["attrs"]
    assert order["attrs"]["http.request.header.x_mbx_apikey"] == "REDACTED"
    fetched = next(s for s in spans if s["name"] == "GET /api/v3/order" and s["resource"]["service.name"] == "e2e-bot")
    assert redacted(fetched["attrs"]["url.full"].split("?", 1)[1], "signature"), fetched["attrs"]["url.full"]
    served = [s for s in spans if s["resource"]["service.name"] == "e2e-venue" and s["name"] == "GET /api/v3/order"]
    assert served and all(redacted(s["attrs"]["url.query"], "signature") for s in served)
    debug = " ".join(str(r["body_value"]) for r in sink.logs() if "Request:" in str(r["body_value"]))
    assert re.search(r"'X-MBX-APIKEY': '\[?REDACTED\]?'", debug) and re.search(r"signature=\[?REDACTED\]?", debug)
    # The trace goes bot -> ccxt span -> aiohttp span -> venue server span (loopback is ours).
    parent_ids = {s["spanId"] for s in spans if s["name"] == "POST /api/v3/order" and s["resource"]["service.name"] == "e2e-bot"}
    assert any(s.get("parentSpanId") in parent_ids for s in spans if s["resource"]["service.name"] == "e2e-venue")
    assert json.loads(body)["sync"] and json.loads(body)["async"]
