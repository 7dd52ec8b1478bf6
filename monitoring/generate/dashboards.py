"""The trading, API, FastAPI and pipeline dashboards, each panel written once for Grafana and SigNoz.

Metric names are catalog keys (Prometheus names); the dialect turns them into each backend's
names and refuses labels the catalog does not list for a metric.
"""

from __future__ import annotations

from .dialect import Dialect
from .model import (
    BUY,
    COLLECTOR_SERVICE,
    DATASOURCE,
    DROPPED,
    ERROR_STEPS,
    FILLED,
    LATENCY_STEPS,
    LIMITED,
    NO_LOGS,
    SERVER_ERROR,
    UP_MAPPINGS,
    Builder,
    BuilderQuery,
    Dashboard,
    Panel,
    Query,
    Variable,
    avg_time,
    gauge,
    increase_sum,
    percent_of,
    q,
    quantile,
    rate_sum,
    row,
)


def trading_overview() -> Dashboard:
    orders = "orders_total"

    def orders_24h(label: str) -> Builder:
        # increase per step, summed over the last day's steps = orders of the last 24 hours
        return Builder((BuilderQuery(orders, "increase", "sum", "sum", (label,)),), window="LAST_1_DAY")

    panels = [
        row("Trading overview"),
        Panel("Orders (24h)", "stat", lambda d: [q(increase_sum(d, orders))],
              decimals=0, w=6, h=5, description="Orders placed in the last 24 hours, all sides and statuses."),
        Panel("Open Positions", "stat", lambda d: [q(gauge(d, "positions_open"))],
              w=6, h=5, decimals=0, description="Open positions over all symbols."),
        Panel("Realized Profit", "stat", lambda d: [q(gauge(d, "realized_pnl"))],
              w=6, h=5, decimals=2, thresholds=((None, "red"), (0.0, "green")),
              description="Realized PnL in quote currency since the app's last reset_realized_pnl() (the day boundary) "
                          "or start; negative is a loss. A gauge: a counter could not go negative."),
        Panel("WebSocket Connections", "stat", lambda d: [q(gauge(d, "websocket_connections"))],
              w=6, h=5, decimals=0, description="Currently open WebSocket connections (gauge websocket_connections)."),
        Panel("Orders by Side", "piechart", lambda d: [q(increase_sum(d, orders, by=("side",)), d.legend("side"))],
              w=8, description="Buy/sell split of the last 24 hours.", signoz=orders_24h("side")),
        Panel("Orders by Status", "piechart", lambda d: [q(increase_sum(d, orders, by=("status",)), d.legend("status"))],
              w=8, description="Final order status (filled, rejected, cancelled, ...) over the last 24 hours.",
              signoz=orders_24h("status")),
        Panel("Orders by Exchange", "piechart", lambda d: [q(increase_sum(d, orders, by=("exchange",)), d.legend("exchange"))],
              w=8, description="Orders per exchange over the last 24 hours.", signoz=orders_24h("exchange")),
        Panel("PnL Over Time", "timeseries", lambda d: [q(gauge(d, "realized_pnl", by=("symbol",)), d.legend("symbol"))],
              decimals=2, description="Realized PnL per symbol."),
        Panel("Open Positions by Symbol", "bargauge", lambda d: [q(gauge(d, "positions_open", by=("symbol",)), d.legend("symbol"))],
              decimals=0, description="Open positions per symbol, now.",
              signoz=Builder((BuilderQuery("positions_open", "latest", "sum", "last", ("symbol",)),))),
        Panel("WebSocket Connections Over Time", "timeseries", lambda d: [q(gauge(d, "websocket_connections"), "connections")],
              w=24, decimals=0,
              description="Open WebSocket connections; the WebSocketConnectionsDrop alert fires on a drop of more than 10 "
                          "from the 5-minute peak."),
        row("Orders and execution"),
        Panel("Buy Ratio (1h)", "stat", lambda d: [q(percent_of(d, orders, BUY, "1h"))],
              unit="percent", w=6, h=5, decimals=1, description="Share of buy orders in the last hour."),
        Panel("Fill Rate (1h)", "stat", lambda d: [q(percent_of(d, orders, FILLED, "1h"))],
              unit="percent", w=6, h=5, decimals=1, thresholds=((None, "red"), (80.0, "yellow"), (95.0, "green")),
              description="Share of orders that were filled in the last hour."),
        Panel("Rate Limited (5m)", "stat", lambda d: [q(percent_of(d, "rate_limit_requests_total", LIMITED, "5m"))],
              unit="percent", w=6, h=5, decimals=1, thresholds=((None, "green"), (1.0, "yellow"), (10.0, "red")),
              description="Share of requests the rate limiter refused in the last 5 minutes."),
        Panel("Execution P95", "stat", lambda d: [q(quantile(d, "0.95", "trading_execution_duration_seconds", window="5m"))],
              unit="s", w=6, h=5, thresholds=((None, "green"), (1.0, "yellow"), (5.0, "red")),
              description="95th percentile of order execution time over the last 5 minutes (trading_execution_duration_seconds)."),
        Panel("Executions by Result", "timeseries", lambda d: [q(
            rate_sum(d, "trading_orders_executed_total", by=("strategy", "result")), d.legend("strategy", "result"))],
              unit="ops", stack=True,
              description="Order executions per second by strategy and result (success, rejected, error)."),
        Panel("Execution Latency by Exchange", "timeseries", lambda d: [
            q(quantile(d, "0.5", "trading_execution_duration_seconds", ("exchange",)), "p50 " + d.legend("exchange")),
            q(quantile(d, "0.95", "trading_execution_duration_seconds", ("exchange",)), "p95 " + d.legend("exchange"))],
              unit="s", description="Execution time percentiles (p50, p95) per exchange."),
        Panel("Positions by Strategy", "timeseries", lambda d: [q(
            gauge(d, "trading_current_positions", by=("strategy", "symbol")), d.legend("strategy", "symbol"))],
              decimals=0, description="Current positions per strategy and symbol (trading_current_positions)."),
        Panel("Rate Limiter", "timeseries", lambda d: [q(
            rate_sum(d, "rate_limit_requests_total", by=("status",)), d.legend("status"))],
              unit="reqps", stack=True,
              description="Requests allowed and limited per second (the RateLimitExceeded alert fires above 10 limited/s)."),
    ]
    return Dashboard("trading-overview", "otel-trader-trading", "Trading Overview",
                     "Orders, positions, PnL and WebSocket connections, plus order execution (results, latency, positions per "
                     "strategy) and the rate limiter.",
                     ["otel-trader", "trading"], panels, app_variables())


def api_performance() -> Dashboard:
    req = "http_requests_total"
    hist = "http_request_duration_seconds"
    panels = [
        row("API performance"),
        Panel("API Status", "stat", lambda d: [q('min(up{job="$job", via="direct"})')],
              w=4, h=5, mappings=UP_MAPPINGS, thresholds=((None, "red"), (1.0, "green")), grafana_only=True,
              description="Prometheus' direct scrape of the app's /metrics (job trader-api); the TraderAPIDown alert uses "
                          "the same up series. The collector path has no per-app `up`."),
        Panel("Request Rate", "stat", lambda d: [q(f"{rate_sum(d, req)} * 60")],
              unit="reqpm", w=4, h=5, decimals=1, description="Requests per minute."),
        Panel("P50 Latency", "stat", lambda d: [q(quantile(d, "0.50", hist))], unit="s", w=4, h=5, thresholds=LATENCY_STEPS),
        Panel("P95 Latency", "stat", lambda d: [q(quantile(d, "0.95", hist))], unit="s", w=4, h=5, thresholds=LATENCY_STEPS,
              description="The HighLatency alert fires when this stays above 1 s for 5 minutes."),
        Panel("P99 Latency", "stat", lambda d: [q(quantile(d, "0.99", hist))], unit="s", w=4, h=5, thresholds=LATENCY_STEPS),
        Panel("Error Rate", "gauge", lambda d: [q(percent_of(d, req, SERVER_ERROR, d.rate))],
              unit="percent", w=4, h=5, min=0, max=100, decimals=2, thresholds=ERROR_STEPS,
              description="Share of 5xx responses. With no 5xx at all there is no 5xx series: `or vector(0)` shows 0 % "
                          "rather than No data. An idle API shows No data rather than NaN (0/0)."),
        Panel("Latency by Endpoint", "timeseries", lambda d: [q(quantile(d, "0.95", hist, ("path",)), "p95 " + d.legend("path"))],
              unit="s", description="95th percentile per route template."),
        Panel("Request Rate by Endpoint", "timeseries", lambda d: [q(rate_sum(d, req, by=("path",)), d.legend("path"))],
              unit="reqps", stack=True),
        Panel("Request Rate by Method", "timeseries", lambda d: [q(rate_sum(d, req, by=("method",)), d.legend("method"))],
              unit="reqps", stack=True),
        Panel("Response Status Codes", "timeseries", lambda d: [q(rate_sum(d, req, by=("status",)), d.legend("status"))],
              unit="reqps", stack=True,
              description="Responses per second by status code (4xx are client errors, including 429 from the rate limiter)."),
        Panel("P95 Latency Bar Gauge", "bargauge", lambda d: [q(quantile(d, "0.95", hist, ("path",), window="5m"), d.legend("path"))],
              unit="s", w=24, thresholds=LATENCY_STEPS, description="P95 over the last 5 minutes per route template.",
              # SigNoz: the mean of the per-minute p95 over the last 5 minutes (its own mapping of a
              # histogram quantile to a table: reduceTo avg)
              signoz=Builder((BuilderQuery(hist, "", "p95", "avg", ("path",), part="bucket"),), window="LAST_5_MIN")),
    ]
    return Dashboard("api-performance", "otel-trader-api", "API Performance",
                     "Request rate, latency percentiles, errors and status codes of the FastAPI app.",
                     ["otel-trader", "api"], panels, app_variables())


def fastapi_metrics() -> Dashboard:
    req = "http_requests_total"
    hist = "http_request_duration_seconds"
    panels = [
        row("Requests and responses"),
        Panel("Requests per Minute by Path", "timeseries",
              lambda d: [q(f"{rate_sum(d, req, by=('path',), window='1m')} * 60", d.legend("path"))],
              unit="reqpm", description="Requests per minute by route template (http_requests_total by path)."),
        Panel("Responses per Minute by Status", "timeseries",
              lambda d: [q(f"{rate_sum(d, req, by=('status',), window='1m')} * 60", d.legend("status"))],
              unit="reqpm", description="Responses per minute by status code (the status label of http_requests_total)."),
        Panel("Total Requests", "stat", lambda d: [q(increase_sum(d, req, window="$__range"))],
              decimals=0, w=8, h=6, grafana_only=True,
              description="Requests in the selected time range (increase(), so app restarts do not reset it)."),
        Panel("Request Share by Path", "piechart",
              lambda d: [q(increase_sum(d, req, by=("path",), window="$__range"), d.legend("path"))],
              w=8, h=6, grafana_only=True),
        Panel("Requests per Second (5m avg)", "stat", lambda d: [q(rate_sum(d, req, window="5m"))],
              unit="reqps", decimals=2, w=8, h=6),
        row("Performance"),
        Panel("Average Processing Time by Path", "timeseries", lambda d: [q(avg_time(d, hist, d.rate), d.legend("path"))],
              unit="s", description="Average processing time per path: _sum / _count of http_request_duration_seconds (0/0 filtered out)."),
        Panel("Average Response Time by Path (5m)", "bargauge", lambda d: [q(avg_time(d, hist, "5m"), d.legend("path"))],
              unit="s", thresholds=LATENCY_STEPS,
              # mean rate of _sum / mean rate of _count over the same 5 minutes = sum / count
              signoz=Builder((BuilderQuery(hist, "rate", "sum", "avg", ("path",), part="sum", hidden=True),
                              BuilderQuery(hist, "rate", "sum", "avg", ("path",), part="count", hidden=True)),
                             formula="A / B", window="LAST_5_MIN")),
        Panel("Requests per Hour by Path", "timeseries",
              lambda d: [q(increase_sum(d, req, by=("path",), window="1h"), d.legend("path"))],
              w=24, description="Requests per path over the preceding hour."),
        row("FastAPI application metrics"),
        Panel("Request Rate", "timeseries",
              lambda d: [q(rate_sum(d, req, by=("method", "path"), window="5m"), d.legend("method", "path"))],
              unit="reqps", description="Requests per second over 5 minutes, per method and endpoint."),
        Panel("Request Duration", "timeseries", lambda d: [
            q(quantile(d, "0.95", hist, window="5m"), "p95"),
            q(quantile(d, "0.50", hist, window="5m"), "p50")],
              unit="s", description="p95 and p50 request latency over 5 minutes."),
        Panel("Total Requests per Second", "gauge", lambda d: [q(rate_sum(d, req, window="1m"))],
              unit="reqps", w=8, min=0, decimals=2),
        Panel("Response Status Codes", "piechart",
              lambda d: [q(increase_sum(d, req, by=("status",), window="1h"), d.legend("status"))],
              w=8, description="Status code distribution over the last hour.",
              signoz=Builder((BuilderQuery(req, "increase", "sum", "sum", ("status",)),), window="LAST_1_HR")),
        Panel("Requests by Endpoint", "bargauge",
              lambda d: [q(increase_sum(d, req, by=("path",), window="1h"), d.legend("path"))],
              w=8, decimals=0, description="Requests per endpoint over the last hour.",
              signoz=Builder((BuilderQuery(req, "increase", "sum", "sum", ("path",)),), window="LAST_1_HR")),
        row("Python runtime"),
        Panel("Resident Memory (RSS)", "timeseries",
              lambda d: [q(gauge(d, "process_resident_memory_bytes", by=("instance",)), "RSS " + d.legend("instance"))],
              unit="bytes", w=8,
              description="Resident memory of each app process (process_resident_memory_bytes)."),
        Panel("Virtual Memory (VMS)", "timeseries",
              lambda d: [q(gauge(d, "process_virtual_memory_bytes", by=("instance",)), "VMS " + d.legend("instance"))],
              unit="bytes", w=8),
        Panel("CPU", "timeseries",
              lambda d: [q(rate_sum(d, "process_cpu_seconds_total", by=("instance",)), d.legend("instance"))],
              unit="percentunit", w=8, description="CPU seconds per second (1 = one core)."),
        Panel("GC Collections", "timeseries",
              lambda d: [q(rate_sum(d, "python_gc_collections_total", by=("generation",)), "gen " + d.legend("generation"))],
              unit="ops"),
        Panel("Open File Descriptors", "timeseries",
              lambda d: [q(gauge(d, "process_open_fds", by=("instance",)), d.legend("instance"))]),
        row("Redis connection pool"),
        Panel("Pool Utilization", "timeseries",
              lambda d: [q(gauge(d, "redis_pool_utilization_percent", by=("pool",), agg="max"), d.legend("pool"))],
              unit="percent", w=8, min=0, max=100, thresholds=((None, "green"), (70.0, "yellow"), (90.0, "red"))),
        Panel("Active / Max Connections", "timeseries", lambda d: [
            q(gauge(d, "redis_pool_active_connections", by=("pool",)), "active " + d.legend("pool")),
            q(gauge(d, "redis_pool_max_connections", by=("pool",)), "max " + d.legend("pool"))],
              w=8, decimals=0),
        Panel("Connection Latency", "timeseries",
              lambda d: [q(gauge(d, "redis_connection_latency_ms", by=("pool",), agg="max"), d.legend("pool"))],
              unit="ms", w=8),
        Panel("Redis Operation Errors", "timeseries", lambda d: [q(
            rate_sum(d, "redis_operation_errors_total", by=("pool",)), d.legend("pool"),
            "redis_operation_errors_total only has a series once an operation failed")],
              unit="ops", w=24),
    ]
    return Dashboard("fastapi-metrics", "otel-trader-fastapi", "FastAPI Metrics",
                     "Requests, responses and processing time per path and status, FastAPI request rate and duration, "
                     "Python runtime (memory, CPU, GC, file descriptors) and the Redis connection pool.",
                     ["otel-trader", "fastapi"], panels, app_variables())


def _per_signal(d: Dialect, kind: str, group: str, prefix: str = "", empty: str | None = None) -> list[Query]:
    """One query per signal: rate() drops the metric name, so one regex selector over the
    three counters would fail with "vector cannot contain metrics with the same labelset"."""
    out = []
    for signal, suffix in (("spans", "spans"), ("metric points", "metric_points"), ("log records", "log_records")):
        why = empty or (NO_LOGS if suffix == "log_records" else None)
        out.append(q(rate_sum(d, f"otelcol_{kind}_{suffix}_total", by=(group,)), f"{prefix}{signal} {d.legend(group)}", why))
    return out


def pipeline_health() -> Dashboard:
    panels = [
        row("Collector"),
        Panel("Collector Up", "stat", lambda d: [q('min(up{job=~"otel-collector|otel-collector-self"})')],
              w=4, h=5, mappings=UP_MAPPINGS, thresholds=((None, "red"), (1.0, "green")), grafana_only=True,
              description="Both collector endpoints scraped: :8889 (app metrics) and :8888 (self-metrics)."),
        Panel("Collector Memory (RSS)", "stat", lambda d: [q(gauge(d, "otelcol_process_memory_rss_bytes", agg="max"))],
              unit="bytes", w=4, h=5),
        Panel("Collector CPU", "stat", lambda d: [q(rate_sum(d, "otelcol_process_cpu_seconds_total"))],
              unit="percentunit", w=4, h=5, decimals=2),
        Panel("Export Queue Fill", "gauge", lambda d: [q(
            f"100 * max({d.sel('otelcol_exporter_queue_size')} / {d.sel('otelcol_exporter_queue_capacity')})")],
              unit="percent", w=6, h=5, min=0, max=100, thresholds=((None, "green"), (50.0, "yellow"), (80.0, "red")),
              description="Fullest sending queue. It grows while SigNoz is unreachable (the exporter retries forever); "
                          "when full, new data is dropped."),
        Panel("Collector Uptime", "stat", lambda d: [q(gauge(d, "otelcol_process_uptime_seconds_total", agg="max"))],
              unit="s", w=6, h=5),
        Panel("Received (accepted) per Second", "timeseries", lambda d: _per_signal(d, "receiver_accepted", "receiver"),
              unit="ops", description="Items the OTLP receiver accepted from apps."),
        Panel("Exported (sent) per Second", "timeseries", lambda d: _per_signal(d, "exporter_sent", "exporter"),
              unit="ops", description="Items exporters delivered (SigNoz over OTLP, Prometheus :8889)."),
        Panel("Export Failures and Drops per Second", "timeseries", lambda d: [
            *_per_signal(d, "exporter_send_failed", "exporter", "send failed ",
                         "send_failed_* counts sends that failed after all retries; ours retries forever, so it stays 0"),
            *_per_signal(d, "exporter_enqueue_failed", "exporter", "enqueue failed ", DROPPED)],
              unit="ops", description="Data the collector gave up on (retries exhausted, or the queue was full). "
                                      "Anything above 0 is data loss."),
        Panel("Refused by Receiver per Second", "timeseries", lambda d: _per_signal(
            d, "receiver_refused", "receiver", "refused ", "refused_* is > 0 only while the memory_limiter refuses data"),
              unit="ops", description="The memory_limiter refuses data when the collector is near its memory limit."),
        Panel("Sending Queue Size", "timeseries", lambda d: [q(
            gauge(d, "otelcol_exporter_queue_size", by=("exporter", "data_type")), d.legend("exporter", "data_type"))],
              decimals=0, description="Batches waiting to be exported (persistent queue, survives a collector restart)."),
        row("Application SDK"),
        Panel("Spans Processed by the SDK", "timeseries", lambda d: [q(
            rate_sum(d, "otel_sdk_processor_span_processed_total", 'error_type=""', by=("job",)), "exported " + d.legend("job"))],
              unit="ops", description="Spans the app's BatchSpanProcessor handed to the exporter."),
        Panel("Spans Dropped by the SDK", "timeseries", lambda d: [q(
            rate_sum(d, "otel_sdk_processor_span_processed_total", 'error_type="queue_full"', by=("job",)),
            "dropped " + d.legend("job"), DROPPED)],
              unit="ops", description="Spans dropped in the app because the export queue was full (OtelSdkSpansDropped alert)."),
        Panel("Log Records Dropped by the SDK", "timeseries", lambda d: [q(
            rate_sum(d, "otel_sdk_processor_log_processed_total", 'error_type="queue_full"', by=("job",)),
            "dropped " + d.legend("job"), DROPPED)],
              unit="ops"),
        Panel("SDK Span Queue", "timeseries", lambda d: [
            q(gauge(d, "otel_sdk_processor_span_queue_size", by=("job",), agg="max"), "queued " + d.legend("job")),
            q(gauge(d, "otel_sdk_processor_span_queue_capacity", by=("job",), agg="max"), "capacity " + d.legend("job"))],
              decimals=0),
        row("Error reports (Telegram)"),
        Panel("Error Reports", "timeseries", lambda d: [q(
            rate_sum(d, "otel_trader_error_reports_total", by=("level", "result")), d.legend("level", "result"),
            "the reporter counts only reported errors; a healthy app reports none")],
              unit="ops", description="Error reports sent, suppressed (deduplicated) or failed."),
        Panel("Error Reports Dropped", "timeseries", lambda d: [q(
            rate_sum(d, "otel_trader_error_reports_dropped_total", by=("job",)), d.legend("job"), DROPPED)],
              unit="ops", description="Reports lost because the reporter's queue was full (ErrorReportsDropped alert)."),
    ]
    variables = [*app_variables(), Variable(
        "collector", "Collector",
        grafana=_query_var("collector", "Collector", 'up{job="otel-collector-self"}', "instance", multi=True),
        signoz=_textbox_var("collector_service", "service.name of the collector's own telemetry", COLLECTOR_SERVICE))]
    return Dashboard("telemetry-pipeline", "otel-trader-pipeline", "Telemetry Pipeline Health",
                     "The collector (receivers, exporters, sending queue, memory), what the app's SDK dropped, and the "
                     "Telegram error reporter.",
                     ["otel-trader", "opentelemetry"], panels, variables, time_from="now-3h")


# -- variables ----------------------------------------------------------------------------------


def _query_var(name: str, label: str, selector: str, label_name: str, multi: bool = False) -> dict:
    definition = f"label_values({selector}, {label_name})"
    out = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": definition,
        "query": {"query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": 0,
    }
    if multi:
        out["allValue"] = ".*"
    return out


def _textbox_var(name: str, description: str, value: str) -> dict:
    return {"name": name, "description": description, "type": "TEXTBOX", "textboxValue": value, "selectedValue": value}


def app_variables() -> list[Variable]:
    via = {
        "name": "via",
        "label": "Scrape path",
        "type": "custom",
        "query": "collector,direct",
        "current": {"selected": True, "text": "collector", "value": "collector"},
        "options": [
            {"selected": True, "text": "collector", "value": "collector"},
            {"selected": False, "text": "direct", "value": "direct"},
        ],
        "multi": False,
        "includeAll": False,
        "hide": 0,
        "description": "via=collector: app -> OTLP -> collector :8889 -> Prometheus; via=direct: Prometheus scrapes the app's /metrics.",
    }
    service_query = (
        "SELECT DISTINCT JSONExtractString(labels, 'service.name') AS service_name "
        "FROM signoz_metrics.distributed_time_series_v4_1day "
        "WHERE metric_name = 'http_requests_total' AND __normalized = false ORDER BY service_name"
    )
    return [
        Variable("via", "Scrape path", grafana=via),
        Variable("job", "Service", grafana=_query_var("job", "Service", 'target_info{via="$via"}', "job"),
                 signoz={"name": "service_name", "description": "service.name of the app", "type": "QUERY",
                         "queryValue": service_query, "selectedValue": "trader-api"}),
        Variable("instance", "Instance", grafana=_query_var("instance", "Instance", 'target_info{via="$via", job="$job"}', "instance", multi=True)),
    ]



def dashboards() -> list[Dashboard]:
    from .bot_dashboard import bot_health  # monitoring/generate/bot_dashboard.py
    from .exchange_dashboard import exchanges  # monitoring/generate/exchange_dashboard.py

    return [trading_overview(), api_performance(), fastapi_metrics(), pipeline_health(), bot_health(), exchanges()]
