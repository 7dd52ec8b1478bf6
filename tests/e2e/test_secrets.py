"""Credentials a trading bot handles never reach SigNoz (the sink) nor :8889."""

from __future__ import annotations

import re
import secrets

import pytest

from otel_trader.collector import http_get

from .conftest import E2EStack, traceparent, wait_until


def redacted(text: str, key: str) -> bool:
    """``key=REDACTED`` (the app's scrubbing) or ``key=[REDACTED]`` (the collector's on top)."""
    return re.search(rf"(^|[?&]){key}=\[?REDACTED\]?(&|$)", text) is not None


@pytest.mark.timeout(120)
def test_api_key_signature_and_authorization_never_reach_the_sink(stack: E2EStack) -> None:
    sink = stack.sink()
    collector = stack.collector(sink)
    exchange = stack.exchange(collector.endpoints.otlp_grpc)
    api = stack.api(collector.endpoints.otlp_grpc, exchange)

    api_key = f"AKe2e{secrets.token_hex(12)}"
    signature = secrets.token_hex(32)
    bearer = f"tok{secrets.token_hex(16)}"
    trace_id, header = traceparent()
    status, _ = api.get(
        f"/orders/BTCUSDT?api_key={api_key}&signature={signature}&qty=2",
        headers={"Authorization": f"Bearer {bearer}", "traceparent": header},
    )
    assert status == 200

    def arrived() -> tuple[list[dict], list[dict]] | None:
        spans = [s for s in sink.spans() if s["traceId"] == trace_id]
        logs = [r for r in sink.logs() if "order for BTCUSDT" in str(r["body_value"])]
        names = {s["name"] for s in spans}
        wanted = {"GET /orders/{symbol}", "place_order", "GET /ticker/{symbol}", "GET"}
        return (spans, logs) if wanted <= names and logs else None

    spans, logs = wait_until(arrived, 30, "the signed order's trace and log in the sink")

    raw = sink.raw()
    for secret in (api_key, signature, bearer):
        assert secret not in raw, f"{secret[:8]}… reached the sink"
        assert secret not in http_get(collector.endpoints.prometheus)[1]
    # The telemetry is still there and useful: the secrets were replaced, not the data dropped.
    server = next(s for s in spans if s["name"] == "GET /orders/{symbol}")
    query = server["attrs"]["url.query"]
    assert redacted(query, "api_key") and redacted(query, "signature") and "qty=2" in query, query
    client = next(s for s in spans if s["name"] == "GET")
    assert redacted(client["attrs"]["url.full"].split("?", 1)[1], "signature"), client["attrs"]["url.full"]
    ticker = next(s for s in spans if s["name"] == "GET /ticker/{symbol}")
    assert redacted(ticker["attrs"]["url.query"], "api_key"), ticker["attrs"]["url.query"]
    operation = next(s for s in spans if s["name"] == "place_order")
    assert "exchange.api_key" not in operation["attrs"]  # deleted by key (collector attributes/scrub)
    assert operation["attrs"]["request.auth"] == "Authorization: [REDACTED]"  # value scrubbed
    assert operation["attrs"]["symbol"] == "BTCUSDT"
    (log,) = logs
    assert "REDACTED" in log["body_value"] and log["traceId"] == trace_id
