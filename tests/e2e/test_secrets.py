"""Credentials a trading bot handles never reach SigNoz (the sink) nor :8889."""

from __future__ import annotations

import http.client
import json
import re
import secrets

import pytest

from otel_trader.collector import http_get

from .apps.secrets_app import leaked, leaky_requests, make_markers
from .conftest import E2EStack, app_env, traceparent, wait_until


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
    # Scrubbed in the process; the collector's rules are for senders without otel-trader.
    assert operation["attrs"]["exchange.api_key"] == "REDACTED"
    assert operation["attrs"]["request.auth"] == "Authorization: Bearer REDACTED"
    assert operation["attrs"]["symbol"] == "BTCUSDT"
    (log,) = logs
    assert "REDACTED" in log["body_value"] and log["traceId"] == trace_id


@pytest.mark.timeout(150)
def test_marker_secrets_from_every_entry_point_reach_no_exit(stack: E2EStack) -> None:
    """Markers planted through every entry point of a real app under uvicorn appear nowhere.

    Searched: the sink (what SigNoz would store), the collector's Prometheus endpoint and log,
    the app's own /metrics, and the stdout/stderr of the app and the exchange (uvicorn prints
    the traceback of the unhandled exception there).
    """
    m = make_markers()
    sink = stack.sink()
    collector = stack.collector(sink)
    exchange = stack.exchange(collector.endpoints.otlp_grpc)
    env = app_env(
        "e2e-leaky", collector.endpoints.otlp_grpc, SECRET_MARKERS=json.dumps(m), EXCHANGE_URL=exchange.url
    )
    api = stack.app("leaky", "tests.e2e.apps.secrets_app:create_app", env)
    for method, path, status in leaky_requests(m):
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            response.read()
            assert response.status == status, path
        finally:
            conn.close()
    own_metrics = http_get(f"{api.url}/metrics")[1]

    wanted_spans = {"GET /orders/{symbol}", "place_order", "GET /bot{token}/sendMessage",
                    "POST /webhook/{secret}", "GET /db", "GET /fail", "GET /fetch"}  # fmt: skip

    def arrived() -> bool:
        names = {s["name"] for s in sink.spans() if s["resource"].get("service.name") == "e2e-leaky"}
        bodies = " ".join(str(r["body_value"]) for r in sink.logs())
        metric_names = {x["name"] for x in sink.metrics()}
        return (
            wanted_spans <= names
            and all(
                b in bodies for b in ("order placed for BTCUSDT", "database unavailable", "HTTP Request: GET")
            )
            and "leaky_orders_total" in metric_names
            and "leaky_orders_total" in http_get(collector.endpoints.prometheus)[1]
        )

    wait_until(arrived, 40, "the leaky app's spans, logs and metrics in the sink")
    prometheus = http_get(collector.endpoints.prometheus)[1]
    api.stop()
    exchange.stop()
    exits = {
        "sink": sink.raw(),
        "collector :8889": prometheus,
        "collector log": (stack.workdir / "collector.log").read_text(errors="replace"),
        "app /metrics": own_metrics,
        "app stdout": api.out.read_text(errors="replace"),
        "app stderr": api.stderr(),
        "exchange stderr": exchange.stderr(),
    }
    leaks = {where: leaked(m, text) for where, text in exits.items()}
    assert {where: names for where, names in leaks.items() if names} == {}
    assert "Telegram rejected token REDACTED" in exits["app stderr"]  # the traceback, scrubbed
    spans = {s["name"]: s for s in sink.spans() if s["resource"].get("service.name") == "e2e-leaky"}
    assert spans["POST /webhook/{secret}"]["attrs"]["url.path"] == "/webhook/REDACTED"
    assert "qty=2" in spans["GET /orders/{symbol}"]["attrs"]["url.query"]


@pytest.mark.timeout(120)
def test_collector_second_line_scrubs_bybit_sign_and_array_keys(stack: E2EStack) -> None:
    """What an app without otel-trader sends: the collector alone must scrub these pairs."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    sink = stack.sink()
    collector = stack.collector(sink)
    sign, key, raw_key = (secrets.token_hex(12) for _ in range(3))
    provider = TracerProvider(resource=Resource({"service.name": "raw-sender"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.endpoints.otlp_grpc, insecure=True))
    )
    with provider.get_tracer("raw").start_as_current_span("GET /v5/order") as span:
        span.set_attribute(
            "url.query", f"category=spot&X-BAPI-SIGN={sign}&api_key%5B%5D={key}&api_key[]={raw_key}"
        )
    provider.shutdown()

    def arrived() -> list[dict] | None:
        spans = [s for s in sink.spans() if s["resource"].get("service.name") == "raw-sender"]
        return spans or None

    (span_out,) = wait_until(arrived, 30, "the raw span in the sink")
    raw = sink.raw()
    assert sign not in raw and key not in raw and raw_key not in raw
    assert span_out["attrs"]["url.query"] == (
        "category=spot&X-BAPI-SIGN=[REDACTED]&api_key%5B%5D=[REDACTED]&api_key[]=[REDACTED]"
    )
