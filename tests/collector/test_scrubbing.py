"""Secrets sent by an app never reach SigNoz (the sink) nor the Prometheus endpoint.

Each check looks at the raw sink file, so a secret cannot hide in a field the test did not
think of, and also at the scrubbed values, so scrubbing cannot "pass" by dropping the data.
"""

from __future__ import annotations

import difflib
import re

import pytest

pytestmark = pytest.mark.timeout(120)

BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
BINANCE_SIG = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
BEARER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ0cmFkZXIifQ.sig0123456789"
TG_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
OKX_SIGN = "Zm9vYmFyYmF6cXV4c2lnbmF0dXJlMTIzNDU2Nzg5MA=="
OKX_PASSPHRASE = "my-okx-passphrase-42"
DB_PASSWORD = "pg-s3cr3t-pass"
COOKIE = "sessionid=abc123def456ghi789"
SHORT_TG = "42:shorttesttoken"  # fake tokens in dev configs are short; the /bot path rule still applies

SECRETS = [
    BINANCE_KEY,
    BINANCE_SIG,
    BEARER,
    TG_TOKEN,
    OKX_SIGN,
    OKX_PASSPHRASE,
    DB_PASSWORD,
    COOKIE,
    SHORT_TG,
    "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
    "abc123def456ghi789",
]

BINANCE_URL = f"https://api.binance.com/api/v3/order?symbol=BTCUSDT&side=BUY&api_key={BINANCE_KEY}&timestamp=1700000000000&signature={BINANCE_SIG}"
TG_URL = f"https://api.telegram.org/bot{TG_TOKEN}/sendMessage"


def _assert_clean(text: str, where: str):
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"secrets leaked into {where}: {leaked}"


def test_span_attributes_events_and_status_are_scrubbed(collector, sink, otlp):
    otlp.send_spans(
        collector.otlp_grpc_endpoint,
        [
            {
                "name": "POST /api/v3/order",
                "attributes": {
                    "http.request.method": "POST",
                    "url.full": BINANCE_URL,
                    "http.url": BINANCE_URL,
                    "url.query": f"symbol=BTCUSDT&api_key={BINANCE_KEY}&signature={BINANCE_SIG}",
                    "http.target": f"/api/v3/order?symbol=BTCUSDT&signature={BINANCE_SIG}",
                    # Header capture by instrumentations: values are string arrays.
                    "http.request.header.authorization": [f"Bearer {BEARER}"],
                    "http.request.header.x-mbx-apikey": [BINANCE_KEY],
                    "http.request.header.ok-access-sign": [OKX_SIGN],
                    "http.request.header.ok-access-passphrase": [OKX_PASSPHRASE],
                    "http.request.header.cookie": [COOKIE],
                    "http.response.header.set-cookie": [COOKIE],
                    "http.request.header.accept": ["application/json"],
                    "exchange.api_key": BINANCE_KEY,
                    "order.symbol": "BTCUSDT",
                },
            },
            {
                "name": "telegram.send",
                "attributes": {
                    "url.full": TG_URL,
                    "http.url": f"https://api.telegram.org/bot{SHORT_TG}/getMe",
                },
                "status_error": f"POST {TG_URL} failed: 502",
            },
            {
                "name": "SELECT",
                "attributes": {
                    "db.statement": f"ALTER USER trader WITH PASSWORD '{DB_PASSWORD}'",
                    "db.connection_string": f"postgresql://trader:{DB_PASSWORD}@db:5432/trades",
                    "exception.context": f"headers={{'Authorization': 'Bearer {BEARER}', 'OK-ACCESS-SIGN': '{OKX_SIGN}'}}",
                },
                "events": [
                    {
                        "name": "exception",
                        "attributes": {
                            "exception.type": "httpx.HTTPStatusError",
                            "exception.message": f"Client error '401' for url '{BINANCE_URL}'",
                            "http.request.header.authorization": f"Bearer {BEARER}",
                        },
                    }
                ],
            },
        ],
        resource=otlp.resource(exchange__api_secret=BINANCE_SIG, bot__telegram_url=TG_URL),
    )

    spans = {
        s["name"]: s
        for s in sink.wait_for_spans(lambda s: s["resource"].get("test.run_id") == otlp.run_id, 3)
    }
    _assert_clean(sink.raw(), "the sink (traces)")

    order = spans["POST /api/v3/order"]["attrs"]
    # Query strings keep their shape; only secret values are replaced.
    assert order["url.full"] == (
        "https://api.binance.com/api/v3/order?symbol=BTCUSDT&side=BUY&api_key=[REDACTED]"
        "&timestamp=1700000000000&signature=[REDACTED]"
    )
    assert order["http.url"] == order["url.full"]
    assert order["url.query"] == "symbol=BTCUSDT&api_key=[REDACTED]&signature=[REDACTED]"
    assert order["http.target"] == "/api/v3/order?symbol=BTCUSDT&signature=[REDACTED]"
    # Credential headers and credential-named attributes are removed; harmless ones stay.
    for gone in (
        "http.request.header.authorization",
        "http.request.header.x-mbx-apikey",
        "http.request.header.ok-access-sign",
        "http.request.header.ok-access-passphrase",
        "http.request.header.cookie",
        "http.response.header.set-cookie",
        "exchange.api_key",
    ):
        assert gone not in order, gone
    assert order["http.request.header.accept"] == ["application/json"]
    assert order["order.symbol"] == "BTCUSDT"

    tg = spans["telegram.send"]
    assert tg["attrs"]["url.full"] == "https://api.telegram.org/bot[REDACTED]/sendMessage"
    assert tg["attrs"]["http.url"] == "https://api.telegram.org/bot[REDACTED]/getMe"
    assert tg["status"]["message"] == "POST https://api.telegram.org/bot[REDACTED]/sendMessage failed: 502"

    db = spans["SELECT"]
    assert db["attrs"]["db.statement"] == "ALTER USER trader WITH PASSWORD '[REDACTED]'"
    assert db["attrs"]["db.connection_string"] == "postgresql://[REDACTED]@db:5432/trades"
    assert (
        db["attrs"]["exception.context"]
        == "headers={'Authorization': '[REDACTED]', 'OK-ACCESS-SIGN': '[REDACTED]'}"
    )
    (event,) = db["events"]
    ev_attrs = {kv["key"]: kv["value"].get("stringValue") for kv in event.get("attributes", [])}
    assert "http.request.header.authorization" not in ev_attrs
    assert ev_attrs["exception.message"].startswith(
        "Client error '401' for url 'https://api.binance.com/api/v3/order?symbol=BTCUSDT"
    )
    assert "api_key=[REDACTED]" in ev_attrs["exception.message"]

    res = spans["SELECT"]["resource"]
    assert "exchange.api_secret" not in res
    assert res["bot.telegram_url"] == "https://api.telegram.org/bot[REDACTED]/sendMessage"
    assert res["service.name"] == "otel-trader-test"


def test_log_bodies_and_attributes_are_scrubbed(collector, sink, otlp, wait_until):
    otlp.send_logs(
        collector.otlp_grpc_endpoint,
        [
            {"body": f"telegram send failed: POST {TG_URL} -> 429", "attributes": {"url.full": TG_URL}},
            {
                "body": f"order rejected for {BINANCE_URL}",
                "attributes": {
                    "http.request.header.authorization": f"Bearer {BEARER}",
                    "exchange.passphrase": OKX_PASSPHRASE,
                    "order.id": "o-7",
                },
            },
            {
                "body": f"using config {{'api_key': '{BINANCE_KEY}', 'passphrase': '{OKX_PASSPHRASE}', 'symbol': 'ETHUSDT'}}"
            },
        ],
    )

    def three_records():
        mine = [r for r in sink.logs() if r["resource"].get("test.run_id") == otlp.run_id]
        return mine if len(mine) >= 3 else None

    logs = wait_until(three_records, 30, what="3 log records")
    _assert_clean(sink.raw(), "the sink (logs)")
    bodies = sorted(r["body_value"] for r in logs)
    assert bodies == sorted(
        [
            "telegram send failed: POST https://api.telegram.org/bot[REDACTED]/sendMessage -> 429",
            "order rejected for https://api.binance.com/api/v3/order?symbol=BTCUSDT&side=BUY&api_key=[REDACTED]"
            "&timestamp=1700000000000&signature=[REDACTED]",
            "using config {'api_key': '[REDACTED]', 'passphrase': '[REDACTED]', 'symbol': 'ETHUSDT'}",
        ]
    )
    rejected = next(r for r in logs if r["body_value"].startswith("order rejected"))
    assert rejected["attrs"] == {"order.id": "o-7"}
    tg = next(r for r in logs if r["body_value"].startswith("telegram"))
    assert tg["attrs"]["url.full"] == "https://api.telegram.org/bot[REDACTED]/sendMessage"


def test_metric_attributes_are_scrubbed_before_sink_and_prometheus(collector, sink, otlp, wait_until):
    mp = otlp.meter_provider(collector.otlp_grpc_endpoint)
    c = mp.get_meter("otel_trader").create_counter("exchange_requests_total")
    # Careless labels an app might put on a metric.
    c.add(1, {"url": BINANCE_URL, "api_key": BINANCE_KEY, "endpoint": "/api/v3/order"})
    assert mp.force_flush(10_000)
    mp.shutdown()

    fams = collector.wait_for_families("exchange_requests")
    (sample,) = [
        s for s in fams["exchange_requests"].samples if s.labels.get("instance") == f"inst-{otlp.run_id}"
    ]
    assert sample.labels["endpoint"] == "/api/v3/order"
    assert "api_key" not in sample.labels
    assert sample.labels["url"].endswith("&api_key=[REDACTED]&timestamp=1700000000000&signature=[REDACTED]")
    _assert_clean(collector.scrape(), "the Prometheus endpoint")

    wait_until(
        lambda: any(
            m["name"] == "exchange_requests_total" and m["resource"].get("test.run_id") == otlp.run_id
            for m in sink.metrics()
        ),
        30,
        what="metric at sink",
    )
    _assert_clean(sink.raw(), "the sink (metrics)")


#: Values with secrets of every kind the collector's value rules know, as apps put them in spans.
PARITY_ATTRIBUTES = {
    "url.full": BINANCE_URL,
    "url.query": f"symbol=BTCUSDT&api_key={BINANCE_KEY}&signature={BINANCE_SIG}",
    "http.target": f"/api/v3/order?symbol=BTCUSDT&signature={BINANCE_SIG}",
    "bybit.query": f"category=spot&X-BAPI-SIGN={BINANCE_SIG}&api_key%5B%5D={BINANCE_KEY}&api_key[]={OKX_SIGN}",
    "tg.url": TG_URL,
    "tg.short": f"https://api.telegram.org/bot{SHORT_TG}/getMe",
    "tg.bare": f"token {TG_TOKEN} rejected",
    "db.statement": f"ALTER USER trader WITH PASSWORD '{DB_PASSWORD}'",
    "db.connection_string": f"postgresql://trader:{DB_PASSWORD}@db:5432/trades",
    "exception.context": f"headers={{'Authorization': 'Bearer {BEARER}', 'OK-ACCESS-SIGN': '{OKX_SIGN}'}}",
    "request.auth": f"Authorization: Bearer {BEARER}",
    "cookie.line": f"Cookie: {COOKIE}",
    "okx.headers": f"OK-ACCESS-PASSPHRASE: {OKX_PASSPHRASE}",
    "exchange.api_key": BINANCE_KEY,
    "http.request.header.authorization": f"Bearer {BEARER}",
    "order.symbol": "BTCUSDT",
}


def test_the_collector_rules_find_nothing_left_in_what_the_sdk_exports(collector, sink, otlp):
    """Why the collector may skip its value regexes for otel-trader's spans (collector/otelcol-config.yaml).

    The values as the SDK's scrubbing exports them are sent as any other sender would (no
    otel-trader marker), so every rule of the collector runs on them: it must find nothing to
    replace (the SDK's ``REDACTED`` rewritten to ``[REDACTED]`` is the same value) and may only
    delete keys whose value the SDK already replaced.
    """
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Status, StatusCode

    from otel_trader.sdk.scrubbing import scrub_span

    status = f"POST {TG_URL} failed: 502, Authorization: Bearer {BEARER}"
    name = f"POST /bot{TG_TOKEN}/sendMessage"

    original = ReadableSpan(name=name, attributes=PARITY_ATTRIBUTES, status=Status(StatusCode.ERROR, status))
    scrubbed = scrub_span(original)
    exported = dict(scrubbed.attributes)
    assert exported != PARITY_ATTRIBUTES and not [s for s in SECRETS if s in str(exported)]
    otlp.send_spans(
        collector.otlp_grpc_endpoint,
        [{"name": scrubbed.name, "attributes": exported, "status_error": scrubbed.status.description}],
    )
    (span,) = sink.wait_for_spans(lambda s: s["resource"].get("test.run_id") == otlp.run_id, 1)

    def removed_only_markers(sent: str, arrived: str) -> bool:
        """Whether what the collector took out of ``sent`` is REDACTED markers, separators and
        auth scheme words (it writes ``user:pass@`` as one marker and takes ``Bearer`` too)."""
        ops = difflib.SequenceMatcher(None, sent, arrived, autojunk=False).get_opcodes()
        taken = [sent[i1:i2] for tag, i1, i2, _, _ in ops if tag in ("replace", "delete")]
        return not any(re.sub(r"(?i)REDACTED|bearer|basic|digest|[^a-z0-9]", "", t) for t in taken)

    assert removed_only_markers(scrubbed.name, span["name"]), span["name"]
    assert removed_only_markers(scrubbed.status.description, span["status"]["message"]), span["status"]
    for key, value in exported.items():
        if key in span["attrs"]:
            assert removed_only_markers(value, span["attrs"][key]), (key, value, span["attrs"][key])
        else:  # deleted by its key: the SDK had replaced the whole value
            assert value == "REDACTED", key
    assert [k for k in exported if k not in span["attrs"]] == ["exchange.api_key", "http.request.header.authorization"]


def test_spans_from_the_otel_trader_sdk_skip_the_value_rules_others_do_not(collector, sink, otlp):
    marked = otlp.resource(telemetry__distro__name="otel-trader")
    attributes = {"url.query": "symbol=BTCUSDT&api_key=REDACTED", "exchange.api_key": "REDACTED"}
    otlp.send_spans(collector.otlp_grpc_endpoint, [{"name": "from otel-trader", "attributes": attributes}], resource=marked)
    otlp.send_spans(collector.otlp_grpc_endpoint, [{"name": "from another SDK", "attributes": attributes}])
    spans = {s["name"]: s for s in sink.wait_for_spans(lambda s: s["resource"].get("test.run_id") == otlp.run_id, 2)}
    assert spans["from otel-trader"]["attrs"] == attributes  # exported by the SDK as it is
    assert spans["from another SDK"]["attrs"] == {"url.query": "symbol=BTCUSDT&api_key=[REDACTED]"}
