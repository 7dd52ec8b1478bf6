"""The whole product end to end: instrumented FastAPI apps → otelcol-trader → sink / :8889."""

from __future__ import annotations

import pytest

from .conftest import E2EStack, traceparent, wait_until

# OTLP/JSON span kinds (the file exporter writes the enum numbers).
INTERNAL, SERVER, CLIENT = 1, 2, 3


@pytest.mark.timeout(120)
def test_one_trace_across_services_db_and_redis(stack: E2EStack) -> None:
    sink = stack.sink()
    collector = stack.collector(sink)
    exchange = stack.exchange(collector.endpoints.otlp_grpc)
    api = stack.api(collector.endpoints.otlp_grpc, exchange)

    trace_id, header = traceparent()
    status, body = api.get("/orders/BTCUSDT", headers={"traceparent": header})
    assert status == 200, body
    assert b'"orders":1' in body and b'"cached":"101.5"' in body

    def whole_trace() -> list[dict] | None:
        spans = [s for s in sink.spans() if s["traceId"] == trace_id]
        names = {s["name"] for s in spans}
        wanted = {"GET /orders/{symbol}", "place_order", "GET /ticker/{symbol}"}
        redis = [s for s in spans if s["attrs"].get("db.system") == "redis" or s["attrs"].get("db.system.name") == "redis"]
        return spans if wanted <= names and len(redis) >= 2 else None

    spans = wait_until(whole_trace, 30, f"trace {trace_id} in the sink")
    by_id = {s["spanId"]: s for s in spans}
    # Nothing of this trace arrives twice.
    assert len(by_id) == len(spans)

    (server,) = [s for s in spans if s["name"] == "GET /orders/{symbol}"]
    assert server["kind"] == SERVER
    assert server["resource"]["service.name"] == "e2e-api"
    assert server["resource"]["deployment.environment"] == "e2e"  # the app's, not the collector default
    assert server["resource"]["deployment.environment.name"] == "e2e"
    assert server["attrs"]["http.route"] == "/orders/{symbol}"
    assert server["attrs"]["http.response.status_code"] == 200

    (operation,) = [s for s in spans if s["name"] == "place_order"]
    assert operation["kind"] == INTERNAL
    assert operation["parentSpanId"] == server["spanId"]
    assert operation["attrs"]["symbol"] == "BTCUSDT"

    children = [s for s in spans if s.get("parentSpanId") == operation["spanId"]]
    (http_client,) = [s for s in children if s["kind"] == CLIENT and "http.request.method" in s["attrs"]]
    assert http_client["resource"]["service.name"] == "e2e-api"
    assert http_client["attrs"]["url.full"].startswith(f"{exchange.url}/ticker/BTCUSDT")
    assert http_client["attrs"]["http.response.status_code"] == 200

    (exchange_server,) = [s for s in spans if s["name"] == "GET /ticker/{symbol}"]
    assert exchange_server["kind"] == SERVER
    assert exchange_server["parentSpanId"] == http_client["spanId"]  # W3C context crossed the hop
    assert exchange_server["resource"]["service.name"] == "e2e-exchange"
    assert exchange_server["resource"]["deployment.environment"] == "e2e"

    def statement(span: dict) -> str:
        return str(span["attrs"].get("db.statement") or span["attrs"].get("db.query.text") or "")

    sql = [s for s in children if (s["attrs"].get("db.system") or s["attrs"].get("db.system.name")) == "sqlite"]
    assert any(statement(s).startswith("INSERT INTO orders") for s in sql), [statement(s) for s in sql]
    assert any(statement(s).startswith("SELECT COUNT(*) FROM orders") for s in sql)
    assert all(s["kind"] == CLIENT for s in sql)

    redis = sorted(statement(s) for s in children if (s["attrs"].get("db.system") or s["attrs"].get("db.system.name")) == "redis")
    assert redis == ["GET ?", "SET ? ?"]
    # Every span is in the one trace the client started, and all of them reached the sink.
    assert {s["traceId"] for s in spans} == {trace_id}
    assert server["parentSpanId"]  # the client's span id from traceparent: the trace was continued


def _families(text: str, **labels: str) -> dict[str, set[str]]:
    """Family name → sample names, for families with a sample carrying ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        samples = {s.name for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())}
        if samples:
            out[family.name] = samples
    return out


def _otel_families(text: str, **labels: str) -> dict[str, set[str]]:
    """The app's OpenTelemetry metrics: families whose samples carry ``otel_scope_name``.

    Excludes the collector's span metrics (scope ``spanmetricsconnector``): they are derived
    from the spans by the collector, not sent by the app.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        samples = {
            s.name
            for s in family.samples
            if s.labels.get("otel_scope_name", "spanmetricsconnector") != "spanmetricsconnector"
            and all(s.labels.get(k) == v for k, v in labels.items())
        }
        if samples:
            out[family.name] = samples
    return out


def _sample_sum(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


#: Names that legitimately differ between the in-process exporter (Python) and the collector's
#: (Go), in-process name → collector name. Only a third-party metric: the SQLAlchemy
#: instrumentation's gauge ``db.client.connections.usage`` has unit ``connections`` (not a UCUM
#: unit); Python appends it as a suffix, the collector's translator keeps only the units it
#: knows. Every otel_trader metric (http_*, process_*, python_*, quotes_total, SDK self-metrics)
#: has the same name on both paths.
KNOWN_NAME_DIFFERENCES = {"db_client_connections_usage_connections": "db_client_connections_usage"}


@pytest.mark.timeout(120)
def test_metrics_reach_sink_and_collector_prometheus_with_in_process_names(stack: E2EStack) -> None:
    from otel_trader.collector import http_get

    sink = stack.sink()
    collector = stack.collector(sink)
    exchange = stack.exchange(collector.endpoints.otlp_grpc)
    api = stack.api(collector.endpoints.otlp_grpc, exchange)

    n_quotes, n_orders = 23, 4
    for i in range(n_quotes):
        assert api.get(f"/quote/SYM{i % 3}")[0] == 200
    for _ in range(n_orders):
        assert api.get("/orders/BTCUSDT")[0] == 200
    n = n_quotes + n_orders

    # :8889 — the app's counter, through OTLP, equals the number of requests sent.
    def collector_count() -> float | None:
        text = http_get(collector.endpoints.prometheus)[1]
        api_total = _sample_sum(text, "http_requests_total", job="e2e-api")
        # The two services export on their own schedules: wait for both, not just the API.
        exchange_total = _sample_sum(text, "http_requests_total", job="e2e-exchange")
        return api_total if api_total == n and exchange_total == n_orders else None

    wait_until(collector_count, 30, f"http_requests_total == {n} (e2e-api) and {n_orders} (e2e-exchange) on :8889")
    text = http_get(collector.endpoints.prometheus)[1]
    assert _sample_sum(text, "http_requests_total", job="e2e-api", path="/quote/{symbol}", status="200") == n_quotes
    assert _sample_sum(text, "http_requests_total", job="e2e-api", path="/orders/{symbol}", status="200") == n_orders
    assert _sample_sum(text, "http_request_duration_seconds_count", job="e2e-api") == n
    # The exchange served one ticker call per order; its own counter says so.
    assert _sample_sum(text, "http_requests_total", job="e2e-exchange", path="/ticker/{symbol}") == n_orders

    # The sink (SigNoz stand-in) got the same counter over OTLP: the latest cumulative points.
    def sink_count() -> float | None:
        latest: dict[tuple, tuple[int, float]] = {}
        for metric in sink.metrics():
            if metric["name"] != "http_requests_total" or metric["resource"].get("service.name") != "e2e-api":
                continue
            for point in metric.get("sum", {}).get("dataPoints", []):
                key = tuple(sorted((kv["key"], str(kv["value"])) for kv in point.get("attributes", [])))
                t = int(point["timeUnixNano"])
                value = float(point.get("asDouble", point.get("asInt", 0)))
                if key not in latest or t >= latest[key][0]:
                    latest[key] = (t, value)
        total = sum(v for _, v in latest.values())
        return total if total == n else None

    wait_until(sink_count, 30, f"http_requests_total == {n} in the sink")
    counters = [m for m in sink.metrics() if m["name"] == "http_requests_total"]
    assert counters and all(m["sum"]["isMonotonic"] is True for m in counters)

    # Same metric names in-process (/metrics) and on the collector's :8889, for the app's metrics.
    def same_names() -> tuple[dict, dict] | None:
        in_process = _otel_families(http_get(f"{api.url}/metrics")[1])
        via_collector = _otel_families(http_get(collector.endpoints.prometheus)[1], job="e2e-api")
        renamed = {KNOWN_NAME_DIFFERENCES.get(k, k) for k in in_process}
        return (in_process, via_collector) if renamed == set(via_collector) else None

    try:
        in_process, via_collector = wait_until(same_names, 20, "the same metric families on both paths", interval=0.5)
    except AssertionError:
        in_process = _otel_families(http_get(f"{api.url}/metrics")[1])
        via_collector = _otel_families(http_get(collector.endpoints.prometheus)[1], job="e2e-api")
        raise AssertionError(
            f"only in-process: {sorted(set(in_process) - set(via_collector))}, "
            f"only on :8889: {sorted(set(via_collector) - set(in_process))}"
        ) from None
    # Sample names too (what PromQL sees: _total, _bucket/_sum/_count), family by family.
    for family, samples in in_process.items():
        other = KNOWN_NAME_DIFFERENCES.get(family, family)
        expected = {s.replace(family, other, 1) for s in samples}
        assert via_collector[other] == expected, family
    contract = {"http_requests", "http_request_duration_seconds", "process_cpu_seconds", "python_gc_collections", "quotes"}
    assert contract <= set(in_process), sorted(in_process)
    assert via_collector["http_requests"] == {"http_requests_total"}
    assert via_collector["http_request_duration_seconds"] == {
        "http_request_duration_seconds_bucket", "http_request_duration_seconds_sum", "http_request_duration_seconds_count"
    }
