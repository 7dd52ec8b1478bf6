#!/usr/bin/env python3
"""Generate otel-trader's dashboards and SigNoz alert rules from one description.

    python monitoring/grafana/build_dashboards.py           # (re)write the committed JSON
    python monitoring/grafana/build_dashboards.py --check   # exit 1 if the committed JSON is stale
    python monitoring/grafana/build_dashboards.py --out DIR # write under DIR instead of the repo

Writes, relative to the repository root (or DIR):

    monitoring/grafana/dashboards/<slug>.json   Grafana dashboards (Prometheus datasource)
    signoz/dashboards/<slug>.json               SigNoz dashboards (v5: PromQL widgets, query-builder tables and pies)
    signoz/alerts/<slug>.json                   SigNoz alert rules (one v5 PostableRule each)

The SigNoz formats are those SigNoz v0.119.0 accepts (see signoz/README.md, "What SigNoz
v0.119.0 accepts"; tests/monitoring/signoz_schema.py checks them against its source).

Every panel is written once, as a function of a :class:`Dialect`. The Prometheus dialect
produces the names our Prometheus scrapes (``http_request_duration_seconds_bucket``,
``process_cpu_seconds_total``, labels ``job``/``instance``); the SigNoz dialect produces the
names SigNoz stores, which are the OpenTelemetry instrument names unchanged: histograms get
``.bucket``/``.count``/``.sum``, counters get no ``_total``, dots stay dots (quoted in PromQL:
``{"otel.sdk.processor.span.processed"}``), and resource attributes are labels
(``"service.name"`` instead of ``job``). See signoz/README.md.

Plain Python and the standard library only, so the output is deterministic (sorted keys,
ids derived from titles) and the test can regenerate it and compare byte for byte.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRAFANA_DIR = Path("monitoring/grafana/dashboards")
SIGNOZ_DASHBOARD_DIR = Path("signoz/dashboards")
SIGNOZ_ALERT_DIR = Path("signoz/alerts")

#: uid of the datasource in provisioning/datasources/prometheus.yml; every panel names it.
DATASOURCE_UID = "otel-trader-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
#: Grafana 10.4 / 11 dashboard JSON.
SCHEMA_VERSION = 39
#: The collector's service.name (its ocb build name); its self-metrics carry it in SigNoz.
COLLECTOR_SERVICE = "otelcol-trader"
_NS = uuid.UUID("6f1e0b52-5d3c-4f7a-9a57-0e1f3c2b7d10")


# -- metric names ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One metric under its Prometheus name and the name SigNoz stores it under."""

    prom: str  # Prometheus exposition name; for histograms the base name (without _bucket)
    otel: str  # OpenTelemetry instrument name = SigNoz metric name
    kind: str  # counter | gauge | histogram
    scope: str = "app"  # app | collector


def _m(prom: str, kind: str, otel: str | None = None, scope: str = "app") -> Metric:
    if otel is None:
        # Our own instruments are named like Prometheus metrics already (seed 001's names),
        # so the exposition name is the instrument name.
        otel = prom
    return Metric(prom, otel, kind, scope)


METRICS = {
    m.prom: m
    for m in [
        # HTTP RED metrics (MonitoringMiddleware)
        _m("http_requests_total", "counter"),
        _m("http_request_duration_seconds", "histogram"),
        # trading (otel_trader.trading)
        _m("orders_total", "counter"),
        _m("positions_open", "gauge"),
        _m("realized_pnl", "gauge"),
        _m("websocket_connections", "gauge"),
        _m("rate_limit_requests_total", "counter"),
        _m("trading_orders_executed_total", "counter"),
        _m("trading_current_positions", "gauge"),
        _m("trading_execution_duration_seconds", "histogram"),
        # Redis pool monitor (seed 000)
        _m("redis_pool_utilization_percent", "gauge"),
        _m("redis_pool_active_connections", "gauge"),
        _m("redis_pool_max_connections", "gauge"),
        _m("redis_connection_latency_ms", "gauge"),
        _m("redis_operation_errors_total", "counter"),
        # runtime: prometheus_client's family names as OTel instruments; the Prometheus
        # exporters append _total to counters, SigNoz keeps the instrument name.
        _m("process_cpu_seconds_total", "counter", "process_cpu_seconds"),
        _m("process_resident_memory_bytes", "gauge"),
        _m("process_virtual_memory_bytes", "gauge"),
        _m("process_open_fds", "gauge"),
        _m("python_gc_collections_total", "counter", "python_gc_collections"),
        # SDK self-metrics (semantic-convention names with dots)
        _m("otel_sdk_processor_span_processed_total", "counter", "otel.sdk.processor.span.processed"),
        _m("otel_sdk_processor_log_processed_total", "counter", "otel.sdk.processor.log.processed"),
        _m("otel_sdk_processor_span_queue_size", "gauge", "otel.sdk.processor.span.queue.size"),
        _m("otel_sdk_processor_span_queue_capacity", "gauge", "otel.sdk.processor.span.queue.capacity"),
        # Telegram error reporter
        _m("otel_trader_error_reports_total", "counter"),
        _m("otel_trader_error_reports_dropped_total", "counter"),
        # collector self-metrics: Prometheus :8888 names vs the names the collector pushes over
        # OTLP (measured on v0.145.0; see signoz/otelcol-telemetry.yaml)
        _m("otelcol_receiver_accepted_spans_total", "counter", "otelcol_receiver_accepted_spans", "collector"),
        _m("otelcol_receiver_accepted_metric_points_total", "counter", "otelcol_receiver_accepted_metric_points", "collector"),
        _m("otelcol_receiver_accepted_log_records_total", "counter", "otelcol_receiver_accepted_log_records", "collector"),
        _m("otelcol_receiver_refused_spans_total", "counter", "otelcol_receiver_refused_spans", "collector"),
        _m("otelcol_receiver_refused_metric_points_total", "counter", "otelcol_receiver_refused_metric_points", "collector"),
        _m("otelcol_receiver_refused_log_records_total", "counter", "otelcol_receiver_refused_log_records", "collector"),
        _m("otelcol_exporter_sent_spans_total", "counter", "otelcol_exporter_sent_spans", "collector"),
        _m("otelcol_exporter_sent_metric_points_total", "counter", "otelcol_exporter_sent_metric_points", "collector"),
        _m("otelcol_exporter_sent_log_records_total", "counter", "otelcol_exporter_sent_log_records", "collector"),
        _m("otelcol_exporter_send_failed_spans_total", "counter", "otelcol_exporter_send_failed_spans", "collector"),
        _m("otelcol_exporter_send_failed_metric_points_total", "counter", "otelcol_exporter_send_failed_metric_points", "collector"),
        _m("otelcol_exporter_send_failed_log_records_total", "counter", "otelcol_exporter_send_failed_log_records", "collector"),
        _m("otelcol_exporter_enqueue_failed_spans_total", "counter", "otelcol_exporter_enqueue_failed_spans", "collector"),
        _m("otelcol_exporter_enqueue_failed_metric_points_total", "counter", "otelcol_exporter_enqueue_failed_metric_points", "collector"),
        _m("otelcol_exporter_enqueue_failed_log_records_total", "counter", "otelcol_exporter_enqueue_failed_log_records", "collector"),
        _m("otelcol_exporter_queue_size", "gauge", "otelcol_exporter_queue_size", "collector"),
        _m("otelcol_exporter_queue_capacity", "gauge", "otelcol_exporter_queue_capacity", "collector"),
        _m("otelcol_process_memory_rss_bytes", "gauge", "otelcol_process_memory_rss", "collector"),
        _m("otelcol_process_cpu_seconds_total", "counter", "otelcol_process_cpu_seconds", "collector"),
        _m("otelcol_process_uptime_seconds_total", "counter", "otelcol_process_uptime", "collector"),
    ]
}

#: Prometheus label -> OpenTelemetry attribute, where SigNoz keeps the OTel key.
SIGNOZ_LABELS = {
    "job": "service.name",
    "instance": "service.instance.id",
    "error_type": "error.type",
    "otel_signal": "otel.signal",
}

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(".*")\s*$')
_LEGACY_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")


def _quote_label(name: str) -> str:
    return name if _LEGACY_NAME.match(name) and ":" not in name else json.dumps(name)


class Dialect:
    """Writes selectors, groupings and legends for one backend."""

    name: str
    #: range for rate()/increase() in panels
    rate: str

    def sel(self, metric: str, *matchers: str, part: str = "", base: bool = True) -> str:
        raise NotImplementedError

    def label(self, name: str) -> str:
        raise NotImplementedError

    def by(self, *labels: str) -> str:
        return ", ".join(self.label(label) for label in labels)

    def legend(self, *labels: str) -> str:
        return " ".join("{{" + self.label_key(label) + "}}" for label in labels)

    def label_key(self, name: str) -> str:
        raise NotImplementedError


def _split(matcher: str) -> tuple[str, str, str]:
    found = _MATCHER.match(matcher)
    if not found:
        raise ValueError(f"matcher {matcher!r} is not name<op>\"value\"")
    return found.group(1), found.group(2), found.group(3)


class PrometheusDialect(Dialect):
    """Our Prometheus: app metrics filtered by the dashboard's via/job/instance variables."""

    name = "prometheus"
    rate = "$__rate_interval"

    APP_BASE = ('job="$job"', 'via="$via"', 'instance=~"$instance"')
    COLLECTOR_BASE = ('job="otel-collector-self"', 'instance=~"$collector"')

    def sel(self, metric: str, *matchers: str, part: str = "", base: bool = True) -> str:
        m = METRICS[metric]
        name = f"{m.prom}_{part}" if part else m.prom
        base_matchers = (self.APP_BASE if m.scope == "app" else self.COLLECTOR_BASE) if base else ()
        inner = [*base_matchers, *(_joined(x) for x in matchers)]
        return name + "{" + ", ".join(inner) + "}" if inner else name

    def label(self, name: str) -> str:
        return name

    def label_key(self, name: str) -> str:
        return name


def _joined(matcher: str) -> str:
    label, op, value = _split(matcher)
    return f"{label}{op}{value}"


class SignozDialect(Dialect):
    """SigNoz: OTel names, resource attributes as labels, UTF-8 quoting where needed."""

    name = "signoz"
    # SigNoz has no $__rate_interval; the app pushes every 15 s, SigNoz steps by 60 s.
    rate = "5m"

    def sel(self, metric: str, *matchers: str, part: str = "", base: bool = True) -> str:
        m = METRICS[metric]
        name = f"{m.otel}.{part}" if part else m.otel
        if base:
            service = "$service_name" if m.scope == "app" else "$collector_service"
            base_matchers = [f'"service.name"="{service}"']
        else:
            base_matchers = []
        rest = []
        for x in matchers:
            label, op, value = _split(x)
            rest.append(f"{_quote_label(SIGNOZ_LABELS.get(label, label))}{op}{value}")
        inner = [*base_matchers, *rest]
        if _LEGACY_NAME.match(name):
            return name + "{" + ", ".join(inner) + "}" if inner else name
        return "{" + ", ".join([json.dumps(name), *inner]) + "}"

    def label(self, name: str) -> str:
        return _quote_label(SIGNOZ_LABELS.get(name, name))

    def label_key(self, name: str) -> str:
        return SIGNOZ_LABELS.get(name, name)


PROM = PrometheusDialect()
SIGNOZ = SignozDialect()


# -- panels -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    #: Why this query is empty while everything works (it only shows a problem); None = it
    #: must return data under the demo load. Read by tests/monitoring.
    empty_when_healthy: str | None = None


QueryFn = Callable[[Dialect], list[Query]]


@dataclass(frozen=True)
class BuilderQuery:
    """One metric query of SigNoz's query builder (a widget's ``builder.queryData`` entry).

    SigNoz computes it per 60 s step (``time`` within a step, then ``space`` across series
    grouped by ``by``) and reduces the steps of the widget's window to one value per group
    with ``reduce``: a table row or a pie slice.
    """

    metric: str  # key of METRICS
    time: str  # time aggregation: latest | increase | rate | "" (histogram percentiles: SigNoz uses rate)
    space: str  # space aggregation: sum | max | p95 | ...
    reduce: str  # reduceTo: sum | last | avg | ...
    by: tuple[str, ...] = ()  # Prometheus label names; SIGNOZ_LABELS maps them
    part: str = ""  # histogram series: bucket | sum | count
    hidden: bool = False  # disabled: it only feeds the formula


@dataclass(frozen=True)
class Builder:
    """A SigNoz query-builder widget: its queries (named A, B, ...), an optional formula over
    them, and the widget's own time window (``timePreferance``) where the Grafana query has a
    fixed range (``increase(...[24h])`` -> ``LAST_1_DAY``)."""

    queries: tuple[BuilderQuery, ...]
    formula: str = ""
    window: str = "GLOBAL_TIME"  # GLOBAL_TIME | LAST_5_MIN | LAST_1_HR | LAST_1_DAY | ...


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries | stat | gauge | piechart | bargauge | row
    queries: QueryFn | None = None
    unit: str = "short"
    description: str = ""
    w: int = 12
    h: int = 8
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    mappings: tuple[dict, ...] = ()
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    stack: bool = False
    #: only in Grafana (a Prometheus-only concept such as `up`, or Grafana-only variables)
    grafana_only: bool = False
    #: The SigNoz widget as query-builder queries instead of `queries`' PromQL: SigNoz's panel
    #: editor offers no PromQL for tables and pies, so those panels need it.
    signoz: Builder | None = None


def row(title: str) -> Panel:
    return Panel(title=title, kind="row", w=24, h=1)


@dataclass
class Variable:
    name: str
    label: str
    grafana: dict
    signoz: dict | None = None


@dataclass
class Dashboard:
    slug: str
    uid: str
    title: str
    description: str
    tags: list[str]
    panels: list[Panel]
    variables: list[Variable] = field(default_factory=list)
    refresh: str = "30s"
    time_from: str = "now-1h"


def q(expr: str, legend: str = "", empty_when_healthy: str | None = None) -> Query:
    return Query(expr, legend, empty_when_healthy)


# Expression helpers. Matchers are plain strings ('status=~"5.."') that the dialect writes, so
# each expression below exists once for both backends.


def _agg(d: Dialect, inner: str, by: tuple[str, ...], agg: str = "sum") -> str:
    return f"{agg} by ({d.by(*by)}) ({inner})" if by else f"{agg}({inner})"


def rate_sum(d: Dialect, metric: str, *matchers: str, by: tuple[str, ...] = (), window: str | None = None) -> str:
    return _agg(d, f"rate({d.sel(metric, *matchers)}[{window or d.rate}])", by)


def increase_sum(d: Dialect, metric: str, *matchers: str, by: tuple[str, ...] = (), window: str = "24h") -> str:
    return _agg(d, f"increase({d.sel(metric, *matchers)}[{window}])", by)


def gauge(d: Dialect, metric: str, *matchers: str, by: tuple[str, ...] = (), agg: str = "sum") -> str:
    return _agg(d, d.sel(metric, *matchers), by, agg)


def percent_of(d: Dialect, metric: str, matcher: str, window: str) -> str:
    """100 * part / whole of a counter's rate.

    `or vector(0)`: while nothing matched yet (no 5xx at all) the part has no series, and the
    seed's expression shows No data instead of 0 %. `> 0` on the whole: an idle service gives
    No data instead of 0/0 = NaN.
    """
    part = rate_sum(d, metric, matcher, window=window)
    whole = rate_sum(d, metric, window=window)
    return f"100 * ({part} or vector(0)) / ({whole} > 0)"


def quantile(d: Dialect, phi: str, metric: str, by: tuple[str, ...] = (), window: str | None = None) -> str:
    buckets = f"rate({d.sel(metric, part='bucket')}[{window or d.rate}])"
    return f"histogram_quantile({phi}, sum by ({d.by(*by, 'le')}) ({buckets}))"


def avg_time(d: Dialect, metric: str, window: str) -> str:
    """Seed 002's average: _sum / _count per path; an idle path is filtered out (not 0/0)."""
    total = f"sum by ({d.by('path')}) (rate({d.sel(metric, part='sum')}[{window}]))"
    count = f"sum by ({d.by('path')}) (rate({d.sel(metric, part='count')}[{window}]))"
    return f"{total} / ({count} > 0)"


ERROR_STEPS = ((None, "green"), (1.0, "yellow"), (5.0, "red"))
LATENCY_STEPS = ((None, "green"), (0.5, "yellow"), (1.0, "red"))
UP_MAPPINGS = (
    {"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0},
                                  "1": {"text": "UP", "color": "green", "index": 1}}},
)
DROPPED = "only non-zero while data is being dropped: a healthy pipeline has no such series"
NO_LOGS = "no logs flow under the demo load (spans and metrics only); logs need TELEMETRY_LOGS_ENABLED"
BUY = 'side="buy"'
FILLED = 'status="filled"'
LIMITED = 'status="limited"'
SERVER_ERROR = 'status=~"5.."'


def trading_overview() -> Dashboard:
    orders = "orders_total"

    def orders_24h(label: str) -> Builder:
        # increase per step, summed over the last day's steps = orders of the last 24 hours
        return Builder((BuilderQuery(orders, "increase", "sum", "sum", (label,)),), window="LAST_1_DAY")

    panels = [
        row("Trading overview (seed 001)"),
        Panel("Orders (24h)", "stat", lambda d: [q(increase_sum(d, orders))],
              decimals=0, w=6, h=5, description="Orders placed in the last 24 hours, all sides and statuses."),
        Panel("Open Positions", "stat", lambda d: [q(gauge(d, "positions_open"))],
              w=6, h=5, decimals=0, description="Open positions over all symbols."),
        Panel("Realized Profit", "stat", lambda d: [q(gauge(d, "realized_pnl"))],
              w=6, h=5, decimals=2, thresholds=((None, "red"), (0.0, "green")),
              description="Realized PnL in quote currency since the app's last reset_realized_pnl() (the day boundary) "
                          "or start; negative is a loss. A gauge: seed 001's realized_pnl_total counter could not go negative."),
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
        row("Orders and execution (seed 000/001 PromQL)"),
        Panel("Buy Ratio (1h)", "stat", lambda d: [q(percent_of(d, orders, BUY, "1h"))],
              unit="percent", w=6, h=5, decimals=1, description="Seed 001: share of buy orders in the last hour."),
        Panel("Fill Rate (1h)", "stat", lambda d: [q(percent_of(d, orders, FILLED, "1h"))],
              unit="percent", w=6, h=5, decimals=1, thresholds=((None, "red"), (80.0, "yellow"), (95.0, "green")),
              description="Seed 001: share of orders that were filled in the last hour."),
        Panel("Rate Limited (5m)", "stat", lambda d: [q(percent_of(d, "rate_limit_requests_total", LIMITED, "5m"))],
              unit="percent", w=6, h=5, decimals=1, thresholds=((None, "green"), (1.0, "yellow"), (10.0, "red")),
              description="Seed 001: share of requests the rate limiter refused."),
        Panel("Execution P95", "stat", lambda d: [q(quantile(d, "0.95", "trading_execution_duration_seconds", window="5m"))],
              unit="s", w=6, h=5, thresholds=((None, "green"), (1.0, "yellow"), (5.0, "red")),
              description="Seed 000: 95th percentile of order execution time (trading_execution_duration_seconds)."),
        Panel("Executions by Result", "timeseries", lambda d: [q(
            rate_sum(d, "trading_orders_executed_total", by=("strategy", "result")), d.legend("strategy", "result"))],
              unit="ops", stack=True,
              description="Seed 000: order executions per second by strategy and result (success, rejected, error)."),
        Panel("Execution Latency by Exchange", "timeseries", lambda d: [
            q(quantile(d, "0.5", "trading_execution_duration_seconds", ("exchange",)), "p50 " + d.legend("exchange")),
            q(quantile(d, "0.95", "trading_execution_duration_seconds", ("exchange",)), "p95 " + d.legend("exchange"))],
              unit="s", description="Seed 000: execution time percentiles per exchange."),
        Panel("Positions by Strategy", "timeseries", lambda d: [q(
            gauge(d, "trading_current_positions", by=("strategy", "symbol")), d.legend("strategy", "symbol"))],
              decimals=0, description="Seed 000: trading_current_positions per strategy and symbol."),
        Panel("Rate Limiter", "timeseries", lambda d: [q(
            rate_sum(d, "rate_limit_requests_total", by=("status",)), d.legend("status"))],
              unit="reqps", stack=True,
              description="Requests allowed and limited per second (the RateLimitExceeded alert fires above 10 limited/s)."),
    ]
    return Dashboard("trading-overview", "otel-trader-trading", "Trading Overview",
                     "Orders, positions, PnL and WebSocket connections (seed 001), plus seed 000's execution metrics.",
                     ["otel-trader", "trading"], panels, app_variables())


def api_performance() -> Dashboard:
    req = "http_requests_total"
    hist = "http_request_duration_seconds"
    panels = [
        row("API performance (seed 001)"),
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
                          "where the seed's expression showed No data. An idle API shows No data rather than NaN (0/0)."),
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
                     "Request rate, latency percentiles, errors and status codes of the FastAPI app (seed 001).",
                     ["otel-trader", "api"], panels, app_variables())


def fastapi_metrics() -> Dashboard:
    req = "http_requests_total"
    hist = "http_request_duration_seconds"
    panels = [
        row("Requests and responses (seed 002)"),
        Panel("Requests per Minute by Path", "timeseries",
              lambda d: [q(f"{rate_sum(d, req, by=('path',), window='1m')} * 60", d.legend("path"))],
              unit="reqpm", description="Seed 002's app_requests_total by path; here http_requests_total by route template."),
        Panel("Responses per Minute by Status", "timeseries",
              lambda d: [q(f"{rate_sum(d, req, by=('status',), window='1m')} * 60", d.legend("status"))],
              unit="reqpm", description="Seed 002's app_responses_total by status code; here the status label of http_requests_total."),
        Panel("Total Requests", "stat", lambda d: [q(increase_sum(d, req, window="$__range"))],
              decimals=0, w=8, h=6, grafana_only=True,
              description="Requests in the selected time range (increase(), so app restarts do not reset it)."),
        Panel("Request Share by Path", "piechart",
              lambda d: [q(increase_sum(d, req, by=("path",), window="$__range"), d.legend("path"))],
              w=8, h=6, grafana_only=True),
        Panel("Requests per Second (5m avg)", "stat", lambda d: [q(rate_sum(d, req, window="5m"))],
              unit="reqps", decimals=2, w=8, h=6),
        row("Performance (seed 002)"),
        Panel("Average Processing Time by Path", "timeseries", lambda d: [q(avg_time(d, hist, d.rate), d.legend("path"))],
              unit="s", description="Seed 002's app_requests_processing_time_seconds: _sum / _count per path (0/0 filtered out)."),
        Panel("Average Response Time by Path (5m)", "bargauge", lambda d: [q(avg_time(d, hist, "5m"), d.legend("path"))],
              unit="s", thresholds=LATENCY_STEPS,
              # mean rate of _sum / mean rate of _count over the same 5 minutes = sum / count
              signoz=Builder((BuilderQuery(hist, "rate", "sum", "avg", ("path",), part="sum", hidden=True),
                              BuilderQuery(hist, "rate", "sum", "avg", ("path",), part="count", hidden=True)),
                             formula="A / B", window="LAST_5_MIN")),
        Panel("Requests per Hour by Path", "timeseries",
              lambda d: [q(increase_sum(d, req, by=("path",), window="1h"), d.legend("path"))],
              w=24, description="Seed 002: hourly request increase per path."),
        row("FastAPI application metrics (seed 003)"),
        Panel("Request Rate", "timeseries",
              lambda d: [q(rate_sum(d, req, by=("method", "path"), window="5m"), d.legend("method", "path"))],
              unit="reqps", description="Seed 003's rate(fastapi_requests_total[5m]), per method and endpoint."),
        Panel("Request Duration", "timeseries", lambda d: [
            q(quantile(d, "0.95", hist, window="5m"), "p95"),
            q(quantile(d, "0.50", hist, window="5m"), "p50")],
              unit="s", description="Seed 003: p95 and p50 latency."),
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
        row("Python runtime (seed 002 exercise, seed 003 runtime metrics)"),
        Panel("Resident Memory (RSS)", "timeseries",
              lambda d: [q(gauge(d, "process_resident_memory_bytes", by=("instance",)), "RSS " + d.legend("instance"))],
              unit="bytes", w=8,
              description='Seed 002\'s app_memory_usage_bytes{type="rss"}; process_resident_memory_bytes here.'),
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
        row("Redis connection pool (seed 000)"),
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
                     "Seed 002's FastAPI metrics dashboard and seed 003's five panels, on otel-trader's metric names; "
                     "Python runtime and Redis pool.",
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


# -- Grafana JSON -------------------------------------------------------------------------------


def _layout(panels: list[Panel]) -> list[tuple[Panel, dict]]:
    """Left-to-right, top-to-bottom on Grafana's 24-column grid; a row starts a new line."""
    placed = []
    x = y = line_h = 0
    for panel in panels:
        if panel.kind == "row" or x + panel.w > 24:
            y += line_h
            x = line_h = 0
        placed.append((panel, {"h": panel.h, "w": panel.w, "x": x, "y": y}))
        if panel.kind == "row":
            y += panel.h
        else:
            x += panel.w
            line_h = max(line_h, panel.h)
    return placed


def _field_config(panel: Panel) -> dict:
    defaults: dict = {
        "unit": panel.unit,
        "color": {"mode": "thresholds" if panel.kind in ("stat", "gauge", "bargauge") else "palette-classic"},
        "thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in panel.thresholds]},
        "mappings": list(panel.mappings),
    }
    for key in ("min", "max", "decimals"):
        if getattr(panel, key) is not None:
            defaults[key] = getattr(panel, key)
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stack else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
    return {"defaults": defaults, "overrides": []}


_REDUCE = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def _options(panel: Panel) -> dict:
    if panel.kind == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"}}
    if panel.kind == "stat":
        return {"reduceOptions": _REDUCE, "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                "orientation": "auto", "textMode": "auto"}
    if panel.kind == "gauge":
        return {"reduceOptions": _REDUCE, "orientation": "auto", "showThresholdLabels": False, "showThresholdMarkers": True}
    if panel.kind == "bargauge":
        return {"reduceOptions": _REDUCE, "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True}
    if panel.kind == "piechart":
        return {"reduceOptions": _REDUCE, "pieType": "pie",
                "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["value", "percent"]},
                "tooltip": {"mode": "single", "sort": "none"}}
    raise ValueError(panel.kind)


def grafana_dashboard(dash: Dashboard) -> dict:
    panels = []
    for number, (panel, grid) in enumerate(_layout(dash.panels), start=1):
        if panel.kind == "row":
            panels.append({"id": number, "type": "row", "title": panel.title, "collapsed": False, "gridPos": grid, "panels": []})
            continue
        assert panel.queries is not None
        instant = panel.kind in ("piechart", "bargauge")
        targets = []
        for ref, query in enumerate(panel.queries(PROM)):
            targets.append({
                "refId": chr(ord("A") + ref),
                "datasource": DATASOURCE,
                "editorMode": "code",
                "expr": query.expr,
                "legendFormat": query.legend or "__auto",
                "range": not instant,
                "instant": instant,
            })
        panels.append({
            "id": number,
            "type": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "datasource": DATASOURCE,
            "gridPos": grid,
            "targets": targets,
            "fieldConfig": _field_config(panel),
            "options": _options(panel),
        })
    return {
        "id": None,
        "uid": dash.uid,
        "title": dash.title,
        "description": dash.description,
        "tags": dash.tags,
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": dash.refresh,
        "time": {"from": dash.time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [v.grafana for v in dash.variables]},
        "panels": panels,
    }


# -- SigNoz JSON --------------------------------------------------------------------------------

_SIGNOZ_PANEL = {"timeseries": "graph", "stat": "value", "gauge": "value", "piechart": "pie", "bargauge": "table"}
_SIGNOZ_UNIT = {"short": "none", "reqpm": "reqpm", "reqps": "reqps", "ops": "ops"}
#: Panel types whose editor offers PromQL in SigNoz v0.119.0 (PANEL_TYPE_TO_QUERY_TYPES in
#: frontend/src/container/NewWidget/utils.ts); a table or pie needs query-builder queries.
SIGNOZ_PROMQL_PANELS = frozenset({"graph", "value", "bar", "histogram", "trace"})
#: The dashboard JSON version: "v5" is the query-builder format the widgets are written in
#: (aggregations, filter expressions); SigNoz's import migrates anything else from v4 first.
SIGNOZ_DASHBOARD_VERSION = "v5"


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


#: The unused tabs of a widget's query (SigNoz's editor keeps one empty query per tab).
_EMPTY_QUERY = {"name": "A", "query": "", "legend": "", "disabled": False}


def _promql_query(queries: list[Query]) -> dict:
    return {
        "queryType": "promql",
        "promql": [{"name": chr(ord("A") + i), "query": qq.expr, "legend": qq.legend, "disabled": False}
                   for i, qq in enumerate(queries)],
        "builder": {"queryData": [], "queryFormulas": []},
        "clickhouse_sql": [dict(_EMPTY_QUERY)],
    }


def _group_key(label: str) -> dict:
    """A group-by key as the query builder stores it; resource attributes have their own context."""
    context = "resource" if label.startswith("service.") else "tag"
    return {"key": label, "dataType": "string", "type": context, "isColumn": False, "isJSON": False,
            "id": f"{label}--string--{context}--false"}


def _builder_query(spec: Builder) -> dict:
    """A widget's query in the v5 query-builder form (SigNoz's own v5 dashboards write the same)."""
    data = []
    for i, bq in enumerate(spec.queries):
        name = chr(ord("A") + i)
        m = METRICS[bq.metric]
        service = "$service_name" if m.scope == "app" else "$collector_service"
        labels = [SIGNOZ.label_key(label) for label in bq.by]
        data.append({
            "queryName": name,
            "expression": name,
            "dataSource": "metrics",
            "source": "",
            "aggregations": [{
                "metricName": f"{m.otel}.{bq.part}" if bq.part else m.otel,
                # empty: SigNoz looks the temporality up (ours are all cumulative)
                "temporality": "",
                "timeAggregation": bq.time,
                "spaceAggregation": bq.space,
                "reduceTo": bq.reduce,
            }],
            "filter": {"expression": f"service.name = {service}"},
            "groupBy": [_group_key(label) for label in labels],
            "having": {"expression": ""},
            "functions": [],
            "orderBy": [],
            "limit": None,
            "stepInterval": 60,
            "legend": " ".join("{{" + label + "}}" for label in labels),
            "disabled": bq.hidden,
        })
    formulas = []
    if spec.formula:
        legend = data[0]["legend"]
        formulas.append({"queryName": "F1", "expression": spec.formula, "legend": legend, "disabled": False})
    return {
        "queryType": "builder",
        "promql": [dict(_EMPTY_QUERY)],
        "builder": {"queryData": data, "queryFormulas": formulas},
        "clickhouse_sql": [dict(_EMPTY_QUERY)],
    }


def signoz_dashboard(dash: Dashboard) -> dict:
    widgets: list[dict] = []
    layout: list[dict] = []
    panel_map: dict[str, dict] = {}
    current_row: str | None = None
    x = y = line_h = 0
    for panel in dash.panels:
        if panel.grafana_only:
            continue
        # SigNoz's grid has 12 columns
        w, h = max(1, panel.w // 2), max(2, round(panel.h * 3 / 4))
        widget_id = _id(dash.slug, panel.title, str(len(widgets)))
        if panel.kind == "row" or x + w > 12:
            y += line_h
            x = line_h = 0
        if panel.kind == "row":
            widgets.append({"id": widget_id, "panelTypes": "row", "title": panel.title, "description": ""})
            layout.append({"i": widget_id, "x": 0, "y": y, "w": 12, "h": 1, "minW": 12, "minH": 1, "maxH": 1,
                           "moved": False, "static": False})
            panel_map[widget_id] = {"collapsed": False, "widgets": []}
            current_row = widget_id
            y += 1
            continue
        panel_type = _SIGNOZ_PANEL[panel.kind]
        if panel.signoz is not None:
            query = _builder_query(panel.signoz)
        elif panel_type in SIGNOZ_PROMQL_PANELS:
            assert panel.queries is not None
            query = _promql_query(panel.queries(SIGNOZ))
        else:
            raise ValueError(f"{dash.slug}: {panel.title!r}: a SigNoz {panel_type} panel has no PromQL; give it signoz=Builder(...)")
        query["id"] = _id(dash.slug, panel.title, "query")
        widgets.append({
            "id": widget_id,
            "title": panel.title,
            "description": panel.description,
            "panelTypes": panel_type,
            "query": query,
            "yAxisUnit": _SIGNOZ_UNIT.get(panel.unit, panel.unit),
            "decimalPrecision": panel.decimals if panel.decimals is not None else 2,
            "isStacked": panel.stack,
            "stackedBarChart": False,
            "fillSpans": False,
            "nullZeroValues": "zero",
            "opacity": "1",
            "timePreferance": panel.signoz.window if panel.signoz else "GLOBAL_TIME",
            "softMin": panel.min,
            "softMax": panel.max,
            "thresholds": [],
            "selectedLogFields": [],
            "selectedTracesFields": [],
        })
        item = {"i": widget_id, "x": x, "y": y, "w": w, "h": h, "moved": False, "static": False}
        layout.append(item)
        if current_row is not None:
            panel_map[current_row]["widgets"].append(dict(item))
        x += w
        line_h = max(line_h, h)
    variables = {}
    for order, var in enumerate(v for v in dash.variables if v.signoz):
        assert var.signoz is not None
        var_id = _id(dash.slug, "variable", var.signoz["name"])
        variables[var_id] = {
            "id": var_id,
            "key": var_id,
            "name": var.signoz["name"],
            "description": var.signoz.get("description", ""),
            "type": var.signoz["type"],
            "queryValue": var.signoz.get("queryValue", ""),
            "customValue": "",
            "textboxValue": var.signoz.get("textboxValue", ""),
            "selectedValue": var.signoz.get("selectedValue", ""),
            "multiSelect": False,
            "showALLOption": False,
            "allSelected": False,
            "sort": "ASC",
            "order": order,
            "modificationUUID": _id(dash.slug, "variable", var.signoz["name"], "modification"),
        }
    return {
        "title": dash.title,
        "description": dash.description + " (SigNoz: OpenTelemetry metric names; PromQL widgets, query-builder tables and pies.)",
        "tags": dash.tags,
        "version": SIGNOZ_DASHBOARD_VERSION,
        "uploadedGrafana": False,
        "variables": variables,
        "layout": layout,
        "panelMap": panel_map,
        "widgets": widgets,
    }


# -- SigNoz alert rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class SignozAlert:
    """A SigNoz PromQL alert: `query` is the value, op/target the condition (as in SigNoz's UI).

    `summary`/`description` are SigNoz templates: ``{{$service.name}}`` is the alert series'
    label ``service.name`` (SigNoz rewrites ``{{$x}}`` to ``{{index .Labels "x"}}``, so the
    Prometheus form ``{{$labels.x}}`` would look up a label named ``labels.x``).
    """

    name: str  # = the Prometheus alert's name in monitoring/prometheus/alerts/
    query: str
    op: str  # above | below
    target: float
    window: str  # evalWindow; with match "all the times" this is Prometheus' `for`
    severity: str
    summary: str
    description: str
    absent_minutes: int = 0  # > 0: also alert when the query has no data this long
    #: Why the query is empty while everything works (None = it has data under the demo load).
    empty_when_healthy: str | None = None


#: The codes SigNoz's alert editor writes (AlertThresholdOperator / AlertThresholdMatchType).
_OPS = {"above": "1", "below": "2"}
ALL_THE_TIMES = "2"  # the condition held for the whole evalWindow: Prometheus' `for`
#: Re-notification while an alert keeps firing: our Alertmanager's repeat_interval per severity
#: (monitoring/alertmanager/alertmanager.yml).
RENOTIFY = {"critical": "1h", "warning": "4h"}


def signoz_alerts() -> list[SignozAlert]:
    """The alerts of monitoring/prometheus/alerts/*.yml, for SigNoz (same names).

    SigNoz compares the query's value with op/target over evalWindow, so the queries carry no
    threshold and no `via` (SigNoz has one copy of each series). No Prometheus `up` exists in
    SigNoz: "down" is "no data for N minutes" (alertOnAbsent) on a metric that is pushed every
    export interval whatever the traffic.
    """
    d = SIGNOZ
    svc = d.label("job")
    collector = f'{svc}, {d.label("instance")}, exporter'

    def rate(metric: str, *matchers: str) -> str:
        return f"rate({d.sel(metric, *matchers, base=False)}[5m])"

    def total(metric: str, group: str, *matchers: str) -> str:
        return f"sum by ({group}) ({rate(metric, *matchers)})"

    def any_of(kind: str, group: str, threshold: str = "") -> str:
        # one term per counter (see _per_signal); `or` keeps whichever has data
        return "\nor ".join(f"{total(f'otelcol_{kind}_{s}_total', group)}{threshold}" for s in ("spans", "metric_points", "log_records"))

    queue = d.sel("otelcol_exporter_queue_size", base=False)
    capacity = d.sel("otelcol_exporter_queue_capacity", base=False)
    websockets = f"sum by ({svc}) ({d.sel('websocket_connections', base=False)})"
    trader_memory = d.sel("process_resident_memory_bytes", 'job="trader-api"', base=False)
    collector_uptime = d.sel("otelcol_process_uptime_seconds_total", f'job="{COLLECTOR_SERVICE}"', base=False)
    buckets = f"rate({d.sel('http_request_duration_seconds', part='bucket', base=False)}[5m])"
    return [
        SignozAlert(
            "TraderAPIDown", f"count by ({svc}) ({trader_memory})", "below", 1, "1m", "critical",
            "Trader API is down",
            "No runtime metrics from service.name=trader-api for 2 minutes: the app or its telemetry pipeline is down.",
            absent_minutes=2),
        SignozAlert(
            "HighErrorRate",
            f"{total('http_requests_total', svc, SERVER_ERROR)}\n/ ({total('http_requests_total', svc)} > 0)",
            "above", 0.05, "5m", "warning", "High error rate on {{$service.name}}",
            "More than 5% of requests answered 5xx for 5 minutes.",
            empty_when_healthy="the 5xx series exists only once a request failed"),
        SignozAlert(
            "HighLatency", f"histogram_quantile(0.95, sum by ({svc}, le) ({buckets}))",
            "above", 1, "5m", "warning", "High latency on {{$service.name}}",
            "P95 request latency above 1 s for 5 minutes."),
        SignozAlert(
            "RateLimitExceeded", total("rate_limit_requests_total", svc, LIMITED),
            "above", 10, "5m", "warning", "Rate limiting is frequently triggered on {{$service.name}}",
            "More than 10 requests per second are being rate limited."),
        SignozAlert(
            "WebSocketConnectionsDrop", f"max_over_time({websockets}[5m:30s])\n- {websockets}",
            "above", 10, "2m", "warning", "WebSocket connections dropping on {{$service.name}}",
            "More than 10 fewer WebSocket connections than the peak of the last 5 minutes."),
        SignozAlert(
            "DailyLossLimit", f"sum by ({svc}) ({d.sel('realized_pnl', base=False)})",
            "below", -1000, "1m", "critical", "Daily loss limit approaching on {{$service.name}}",
            "Realized PnL since the app's day-boundary reset is below -1000 (quote currency)."),
        SignozAlert(
            "OtelCollectorDown", f"count by ({svc}) ({collector_uptime})", "below", 1, "1m", "critical",
            "OpenTelemetry collector is down",
            "No self-metrics from the collector for 2 minutes (they need signoz/otelcol-telemetry.yaml): "
            "it is down or cannot reach SigNoz.",
            absent_minutes=2),
        SignozAlert(
            "OtelExportDataLost", any_of("exporter_send_failed", collector, " > 0") + "\nor " + any_of("exporter_enqueue_failed", collector, " > 0"),
            "above", 0, "1m", "critical", "Collector exporter {{$exporter}} is dropping data",
            "Items failed to send after all retries or did not fit in the sending queue.",
            empty_when_healthy="a term is kept only while > 0, i.e. while data is lost"),
        SignozAlert(
            "OtelExporterStalled",
            f"sum by ({collector}) ({queue}) > 0\nunless on ({collector}) (\n{any_of('exporter_sent', collector, ' > 0')}\n)",
            "above", 0, "5m", "warning", "Collector exporter {{$exporter}} is not sending",
            "Batches are queued and nothing was exported for 5 minutes (SigNoz unreachable?).",
            empty_when_healthy="non-empty only while batches wait and nothing is sent"),
        SignozAlert(
            "OtelExporterQueueNearlyFull", f"max by ({collector}, data_type) ({queue} / {capacity})",
            "above", 0.8, "5m", "warning", "Collector sending queue of {{$exporter}} is over 80% full",
            "When the queue is full new data is dropped."),
        SignozAlert(
            "OtelCollectorRefusingData", any_of("receiver_refused", f'{svc}, {d.label("instance")}, receiver', " > 0"),
            "above", 0, "5m", "warning", "Collector receiver {{$receiver}} is refusing data",
            "The memory_limiter refuses data; the SDK retries, then drops.",
            empty_when_healthy="a term is kept only while > 0, i.e. while the memory_limiter refuses data"),
        SignozAlert(
            "OtelSdkSpansDropped", total("otel_sdk_processor_span_processed_total", svc, 'error_type="queue_full"'),
            "above", 0, "2m", "warning", "{{$service.name}} is dropping spans",
            "Spans dropped because the SDK's export queue is full.", empty_when_healthy=DROPPED),
        SignozAlert(
            "OtelSdkLogsDropped", total("otel_sdk_processor_log_processed_total", svc, 'error_type="queue_full"'),
            "above", 0, "2m", "warning", "{{$service.name}} is dropping log records",
            "Log records dropped because the SDK's export queue is full.", empty_when_healthy=DROPPED),
        SignozAlert(
            "ErrorReportsDropped", total("otel_trader_error_reports_dropped_total", svc),
            "above", 0, "1m", "warning", "{{$service.name}} dropped error reports",
            "Error reports did not fit in the reporter's queue.", empty_when_healthy=DROPPED),
        SignozAlert(
            "ErrorReportsFailing", total("otel_trader_error_reports_total", svc, 'result="failed"'),
            "above", 0, "5m", "warning", "{{$service.name}} cannot deliver error reports",
            "Error reports fail to send to Telegram.",
            empty_when_healthy='result="failed" exists only once a report failed'),
    ]


def signoz_rule(alert: SignozAlert) -> dict:
    """A rule as SigNoz v0.119.0's rule API takes it: version v5 (the query envelope), schema
    v2alpha1 (thresholds, evaluation and notification settings in the rule), what its own
    alert editor writes."""
    condition: dict = {
        "compositeQuery": {
            "queryType": "promql",
            "panelType": "graph",
            "queries": [{"type": "promql", "spec": {"name": "A", "query": alert.query, "legend": "", "disabled": False}}],
        },
        "selectedQueryName": "A",
        "thresholds": {"kind": "basic", "spec": [{
            # the threshold's name is also the alert's severity label in SigNoz
            "name": alert.severity,
            "target": alert.target,
            "targetUnit": "",
            "op": _OPS[alert.op],
            "matchType": ALL_THE_TIMES,
            "channels": [],
        }]},
    }
    states = ["firing"]
    if alert.absent_minutes:
        condition["alertOnAbsent"] = True
        condition["absentFor"] = alert.absent_minutes
        states.append("nodata")
    return {
        "alert": alert.name,
        "alertType": "METRIC_BASED_ALERT",
        "ruleType": "promql_rule",
        "version": "v5",
        "schemaVersion": "v2alpha1",
        "condition": condition,
        "evaluation": {"kind": "rolling", "spec": {"evalWindow": alert.window, "frequency": "1m"}},
        "notificationSettings": {
            "groupBy": [],
            "usePolicy": False,
            "renotify": {"enabled": True, "interval": RENOTIFY[alert.severity], "alertStates": states},
        },
        "labels": {"severity": alert.severity},
        "annotations": {"summary": alert.summary, "description": alert.description},
        "disabled": False,
    }


# -- output -------------------------------------------------------------------------------------


def dashboards() -> list[Dashboard]:
    return [trading_overview(), api_performance(), fastapi_metrics(), pipeline_health()]


def _slug(name: str) -> str:
    """TraderAPIDown -> trader-api-down."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def render() -> dict[Path, str]:
    """Every generated file: relative path -> text."""
    out: dict[Path, str] = {}

    def dump(obj: dict) -> str:
        return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    for dash in dashboards():
        out[GRAFANA_DIR / f"{dash.slug}.json"] = dump(grafana_dashboard(dash))
        out[SIGNOZ_DASHBOARD_DIR / f"{dash.slug}.json"] = dump(signoz_dashboard(dash))
    for alert in signoz_alerts():
        out[SIGNOZ_ALERT_DIR / f"{_slug(alert.name)}.json"] = dump(signoz_rule(alert))
    return out


def write(root: Path) -> list[Path]:
    written = []
    for rel, text in render().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(root: Path) -> list[str]:
    """Generated files that differ from (or are missing in) `root`, plus extra JSON files there."""
    expected = render()
    problems = [str(rel) for rel, text in expected.items()
                if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text]
    for directory in (GRAFANA_DIR, SIGNOZ_DASHBOARD_DIR, SIGNOZ_ALERT_DIR):
        for path in sorted((root / directory).glob("*.json")):
            if path.relative_to(root) not in expected:
                problems.append(f"{path.relative_to(root)} (not generated: remove it)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write under (default: the repository)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the files under --out are stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.out)
        for problem in problems:
            print(f"stale: {problem}", file=sys.stderr)
        if problems:
            print("run: python monitoring/grafana/build_dashboards.py", file=sys.stderr)
        return 1 if problems else 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
