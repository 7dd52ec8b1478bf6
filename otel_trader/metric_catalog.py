# Long because one row per metric otel-trader emits or reads: the single table that docs, dashboards,
# alerts and the /metrics tests derive from; split, it would be two sources.
"""Every metric otel-trader emits, and the SDK and collector metrics its dashboards and alerts read.

The one table of metric names: ``docs/DESIGN.md``'s metric table is generated from it and the
dashboard and alert generator (``monitoring/generate``) takes names and labels from it;
``tests/monitoring/test_metric_catalog.py`` scrapes a real ``/metrics`` of an app that uses every
instrument and holds the catalog to it both ways (names, Prometheus types, label sets, allowed
values, units and descriptions).

Pure data that imports nothing else from otel_trader, so the generators load this file by path
without the SDK. The code keeps its own constants (``trading.SIDES``, ``middleware.DURATION_BUCKETS``
…); the test checks that they are the values listed here.

Naming: our instruments are named like Prometheus metrics already (``orders_total``), so the
Prometheus name is the instrument name; the Prometheus exporters (in-process and the collector's)
append ``_total`` to a counter that lacks it and the unit to a name that does not end with it,
which is why ``realized_pnl`` and ``redis_connection_latency_ms`` have no unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CATALOG", "COLLECTOR", "KINDS", "Label", "Metric", "by_prom"]

#: OTel instrument kind -> Prometheus type.
KINDS = {
    "Counter": "counter",
    "ObservableCounter": "counter",
    "Histogram": "histogram",
    "UpDownCounter": "gauge",
    "ObservableUpDownCounter": "gauge",
    "Gauge": "gauge",
    "ObservableGauge": "gauge",
}
#: ``Metric.source`` of the collector's own metrics (not emitted by the app process).
COLLECTOR = "otelcol-trader"
OVERFLOW = "__other__"


@dataclass(frozen=True)
class Label:
    """One label of a metric, under its Prometheus name."""

    name: str
    #: The allowed values when the set is closed; empty when the values are open text.
    values: tuple[str, ...] = ()
    #: How an open label is bounded, or what its values are.
    note: str = ""
    #: The OpenTelemetry attribute key where it differs from ``name`` (SigNoz stores this key).
    attribute: str = ""


@dataclass(frozen=True)
class Metric:
    """One metric: its Prometheus and OpenTelemetry names, kind, unit, labels and meaning."""

    #: Family name in the Prometheus exposition; a histogram's base name (series ``_bucket``/``_sum``/``_count``).
    prom: str
    #: OpenTelemetry instrument name, which is also the name SigNoz stores.
    otel: str
    #: OpenTelemetry instrument kind, a key of :data:`KINDS`.
    kind: str
    #: OpenTelemetry unit; empty for none.
    unit: str
    labels: tuple[Label, ...]
    #: The instrument's description: the ``# HELP`` line (the collector's span metrics have none).
    description: str
    #: The emitting module (``otel_trader.trading``) or producer (``opentelemetry-sdk``, :data:`COLLECTOR`).
    source: str
    #: Heading of the docs table the row is listed under.
    group: str
    #: Contract notes for the docs table.
    notes: str = ""
    #: Empty: exported as soon as its source is in use. Otherwise when the metric exists at all.
    when: str = ""
    buckets: tuple[float, ...] = ()

    @property
    def prom_type(self) -> str:
        return KINDS[self.kind]

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    def label(self, name: str) -> Label:
        """The label ``name`` (KeyError, naming the labels there are, if the metric has none such)."""
        for label in self.labels:
            if label.name == name:
                return label
        raise KeyError(f"{self.prom} has no label {name!r} (labels: {', '.join(self.label_names) or 'none'})")


def _section(source: str, group: str, when: str = "") -> Callable[..., Metric]:
    """A row maker for one docs section: ``m(prom, kind, unit, labels, description, otel=, notes=, …)``."""
    section_when = when

    def m(
        prom: str,
        kind: str,
        unit: str,
        labels: tuple[Label, ...],
        description: str,
        *,
        otel: str = "",
        notes: str = "",
        when: str = "",
        buckets: tuple[float, ...] = (),
    ) -> Metric:
        return Metric(
            prom,
            otel or prom,
            kind,
            unit,
            labels,
            description,
            source,
            group,
            notes,
            when or section_when,
            buckets,
        )

    return m


def _bounded(name: str, limit: int, setting: str) -> Label:
    return Label(name, note=f"free text: {limit} values (`{setting}`), then `{OVERFLOW}`")


# The table keeps one metric per row (and its labels next to it), which is what a reader scans
# for; the formatter would spread every row over ten lines.
# fmt: off
# Allowed values (otel_trader.trading, otel_trader.web.middleware, otel_trader.telegram).
SIDES = ("buy", "sell")
ORDER_STATUSES = ("new", "filled", "partially_filled", "cancelled", "rejected", "expired", "error")
RESULTS = ("success", "rejected", "error")
RATE_LIMIT_STATUSES = ("allowed", "limited")
HTTP_METHODS = ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE", "_OTHER")
REPORT_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REPORT_RESULTS = ("sent", "suppressed", "failed")
OVERFLOW_LABELS = ("symbol", "strategy", "exchange", "operation", "error_type", "stream", "reason", "limit", "asset",
                   "method", "error", "server")
# Buckets in seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
EXECUTION_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SPAN_METRIC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_METHOD = Label("method", HTTP_METHODS, "other methods are `_OTHER`")
_PATH = Label("path", note="the route template (`/orders/{symbol}`); requests that match no route: `<unmatched>`")
_HTTP_STATUS = Label("status", note="the response code if registered, else its class (`4xx`); `0` without a response")
_SIDE = Label("side", SIDES)
_SYMBOL = _bounded("symbol", 200, "configure_trading(max_symbols=)")
_STRATEGY = _bounded("strategy", 50, "configure_trading(max_strategies=)")
_EXCHANGE = _bounded("exchange", 50, "configure_trading(max_exchanges=)")
_POOL = Label("pool", note="the monitor's `name`")
_OPERATION = Label("operation", note=f"lower-cased: 100 values, then `{OVERFLOW}`")
_GENERATION = Label("generation", ("0", "1", "2"))
_COMPONENT = (Label("otel_component_name", note="`batching_span_processor/0`, …", attribute="otel.component.name"),
              Label("otel_component_type", attribute="otel.component.type"))
_PROCESSED = (Label("error_type", ("queue_full", "already_shutdown"), attribute="error.type"), *_COMPONENT)
_RECEIVER = (Label("receiver"), Label("transport"))
_QUEUE = (Label("exporter"), Label("data_type", ("traces", "metrics", "logs")))
_SPAN_DIMENSIONS = (Label("service_name", attribute="service.name"), Label("span_name"), Label("span_kind"),
                    Label("status_code"), Label("http_request_method", attribute="http.request.method"),
                    Label("http_response_status_code", attribute="http.response.status_code"))
_RESOURCE = tuple(Label(key.replace(".", "_"), attribute=key) for key in (
    "service.name", "service.instance.id", "deployment.environment", "deployment.environment.name", "host.name",
    "process.pid", "process.runtime.name", "process.runtime.version", "telemetry.distro.name"))


def _app() -> list[Metric]:
    m = _section("otel_trader.web.middleware", "HTTP (MonitoringMiddleware)")
    out = [
        m("http_requests_total", "Counter", "{request}", (_METHOD, _PATH, _HTTP_STATUS), "Total HTTP requests."),
        m("http_request_duration_seconds", "Histogram", "s", (_METHOD, _PATH), "HTTP request duration in seconds.",
          buckets=HTTP_BUCKETS),
    ]
    m = _section("otel_trader.trading", "Trading (otel_trader.trading)")
    out += [
        m("orders_total", "Counter", "{order}", (_SIDE, Label("status", ORDER_STATUSES), _EXCHANGE),
          "Orders by side, final status and exchange."),
        m("trading_orders_executed_total", "Counter", "{order}", (_STRATEGY, _SIDE, Label("result", RESULTS)),
          "Order executions by strategy, side and result (success, rejected, error)."),
        m("trading_execution_duration_seconds", "Histogram", "s", (_STRATEGY, _EXCHANGE),
          "Time to execute an order, in seconds.", buckets=EXECUTION_BUCKETS),
        m("positions_open", "ObservableUpDownCounter", "{position}", (_SYMBOL,), "Open positions per symbol."),
        m("trading_current_positions", "ObservableUpDownCounter", "{position}", (_STRATEGY, _SYMBOL),
          "Open positions per strategy and symbol."),
        m("realized_pnl", "ObservableUpDownCounter", "", (_SYMBOL,),
          "Realized profit and loss per symbol, in quote currency; negative is a loss.",
          notes="signed, since the process started or the last `trading.reset_realized_pnl()` (call it at the day "
                "boundary); a Counter could not go below 0. No unit: `USD` would be appended to the name"),
        m("websocket_connections", "ObservableUpDownCounter", "{connection}", (),
          "Currently open WebSocket connections.", notes="a gauge, so no `_total` (reserved for counters)"),
        m("rate_limit_requests_total", "Counter", "{request}", (Label("status", RATE_LIMIT_STATUSES),),
          "Requests seen by the rate limiter, by status (allowed, limited)."),
    ]
    m = _section("otel_trader.trading.redis_pool", "Redis pool (RedisPoolMonitor)")
    read = "read from the pool at each export"
    out += [
        m("redis_pool_max_connections", "ObservableGauge", "{connection}", (_POOL,),
          "Maximum connections of the Redis pool.", notes=read),
        m("redis_pool_active_connections", "ObservableGauge", "{connection}", (_POOL,),
          "Redis pool connections currently checked out.", notes=read),
        m("redis_pool_utilization_percent", "ObservableGauge", "%", (_POOL,),
          "Redis pool utilization as a percentage (0-100).", notes="active / max × 100"),
        m("redis_connection_latency_ms", "ObservableGauge", "", (_POOL,),
          "Round trip of the last successful health-check PING, in milliseconds.",
          notes="no unit: `ms` would be appended (`redis_connection_latency_ms_milliseconds`)",
          when="after the first successful `health_check()`"),
        m("redis_operation_duration_seconds", "Histogram", "s", (_POOL, _OPERATION),
          "Duration of Redis operations, in seconds.", notes="`RedisPoolMonitor.operation()` and `health_check()`",
          buckets=REDIS_BUCKETS),
        m("redis_operation_errors_total", "Counter", "{error}",
          (_POOL, _OPERATION, Label("error_type", note=f"exception class: 50 values, then `{OVERFLOW}`")),
          "Redis operations that raised, by operation and error type.", when="once an operation raised"),
    ]
    m = _section("otel_trader.telegram", "Telegram error reporter")
    out += [
        m("otel_trader_error_reports_total", "Counter", "{report}",
          (Label("level", REPORT_LEVELS), Label("result", REPORT_RESULTS)),
          "Error reports by outcome: sent, suppressed (dedup) or failed.",
          when="once a TelegramErrorReporter handled a report"),
        m("otel_trader_error_reports_dropped_total", "Counter", "{report}", (),
          "Error reports dropped because the reporter's queue was full.",
          when="once a report did not fit in the queue (`TELEGRAM_ERROR_QUEUE_SIZE`)"),
    ]
    out += [
        _section("otel_trader.trading", "Cardinality limits")(
            "otel_trader_label_overflow_total", "Counter", "{recording}", (Label("label", OVERFLOW_LABELS),),
            "Recordings whose label value was replaced by __other__ (too many distinct values).",
            when=f"once a trading or Redis label became `{OVERFLOW}`"),
        _section("otel_trader.sdk.metric_helpers", "Cardinality limits")(
            "otel_trader_metric_overflow_total", "ObservableCounter", "{measurement}",
            (Label("metric", note="the helper metric's name"),),
            "Measurements of an otel-trader metric helper recorded in its otel.metric.overflow series (the metric "
            "had reached TELEMETRY_METRIC_CARDINALITY_LIMIT attribute sets).",
            notes="`record_counter`, `record_histogram`, `set_gauge`, …", when="once a helper metric reached its limit"),
    ]
    return out


MARKET_DATA_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACK_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FILL_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
SLIPPAGE_BUCKETS_BPS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
LOOP_LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _bot() -> list[Metric]:
    """Bot health: market data, order lifecycle, risk and liveness, event loop."""
    feed = (_EXCHANGE, _bounded("stream", 200, "configure_feeds(max_streams=)"))
    m = _section("otel_trader.trading.market_data", "Market data (trading.feed)", when="once a feed exists")
    at_read = "computed when metrics are read: a stalled feed's age grows"
    out = [
        m("market_data_messages_total", "ObservableCounter", "{message}", feed,
          "Market-data messages received, by exchange and stream."),
        m("market_data_reconnects_total", "ObservableCounter", "{reconnect}", feed,
          "Market-data reconnects, by exchange and stream."),
        m("market_data_sequence_gaps_total", "ObservableCounter", "{gap}", feed,
          "Market-data messages whose sequence number skipped ahead of the expected one."),
        m("market_data_last_message_age_seconds", "ObservableGauge", "s", feed,
          "Seconds since the feed's last message (since its creation before the first), computed when metrics "
          "are read.", notes=at_read + "; a closed feed has none"),
        m("market_data_lag_seconds", "Histogram", "s", feed,
          "Receive time minus the exchange's event time, in seconds (a busy feed: the worst message of each "
          "0.1 s window).", buckets=MARKET_DATA_LAG_BUCKETS,
          notes="at most one record per 0.1 s window of a feed, so `_count` is not a message count"),
    ]
    m = _section("otel_trader.trading.lifecycle", "Order lifecycle (trading.order, trading.track_order)",
                 when="once an order was submitted")
    out += [
        m("orders_submitted_total", "Counter", "{order}", (_EXCHANGE,), "Orders sent to the exchange, by exchange."),
        m("order_ack_latency_seconds", "Histogram", "s", (_EXCHANGE,),
          "Submit to the exchange's acknowledgement of the order, in seconds.", buckets=ACK_LATENCY_BUCKETS),
        m("order_fill_latency_seconds", "Histogram", "s", (_EXCHANGE,),
          "Submit to the order's complete fill, in seconds.", buckets=FILL_LATENCY_BUCKETS),
        m("order_fills_total", "Counter", "{fill}", (_EXCHANGE,), "Order fills (partial ones included), by exchange.",
          notes="0 from an exchange's first order"),
        m("order_slippage_bps", "Histogram", "", (_EXCHANGE, _SIDE),
          "Adverse slippage of an order's average fill price against its decision price, in basis points (a "
          "price improvement counts as 0).", buckets=SLIPPAGE_BUCKETS_BPS,
          notes="OTel histograms take no negative values; the signed mean is (slippage_sum - improvement_sum) / count",
          when="once an order with a decision price had a fill"),
        m("order_price_improvement_bps", "Histogram", "", (_EXCHANGE, _SIDE),
          "Price improvement of an order's average fill price over its decision price, in basis points (adverse "
          "slippage counts as 0).", buckets=SLIPPAGE_BUCKETS_BPS, when="once an order with a decision price had a fill"),
        m("order_unknown_fills_total", "Counter", "{fill}", (_EXCHANGE,),
          "Fills whose client order id is not an order being followed (unknown, done or dropped).",
          notes="0 from an exchange's first order"),
        m("order_ack_timeouts_total", "ObservableCounter", "{order}", (_EXCHANGE,),
          "Orders without an acknowledgement past their ack deadline, by exchange.",
          notes="deadlines are checked when metrics are read"),
        m("orders_open", "ObservableUpDownCounter", "{order}", (_EXCHANGE,),
          "Orders being followed: submitted and not yet done, by exchange."),
    ]
    m = _section("otel_trader.trading.risk", "Risk and liveness (trading.halt, risk_limit, decision)")
    out += [
        m("trading_halted", "ObservableGauge", "", (_bounded("reason", 20, "configure_risk(max_reasons=)"),),
          "1 while trading is halted for the reason (kill switch), else 0.",
          when="once a reason was halted or registered"),
        m("trading_halts_total", "ObservableCounter", "{halt}", (_bounded("reason", 20, "configure_risk(max_reasons=)"),),
          "Times trading was halted, by reason.", when="once a reason was halted or registered"),
        m("risk_limit_utilization_ratio", "ObservableGauge", "1",
          (_bounded("limit", 50, "configure_risk(max_limits=)"),),
          "Used / maximum of each registered risk limit; 1 or more is a breach.", when="once a limit is registered"),
        m("trading_last_decision_age_seconds", "ObservableGauge", "s", (_STRATEGY,),
          "Seconds since the strategy was last evaluated, computed when metrics are read.",
          notes="a stuck bot's age grows", when="from a strategy's first `trading.decision()`"),
        m("trading_decisions_total", "ObservableCounter", "{decision}", (_STRATEGY,),
          "Strategy evaluations, by strategy.", when="from a strategy's first `trading.decision()`"),
        m("trading_balance", "ObservableGauge", "", (_bounded("asset", 100, "configure_risk(max_assets=)"),),
          "Balance per asset, in the asset's units.", when="once set"),
        m("trading_exposure", "ObservableGauge", "", (_bounded("asset", 100, "configure_risk(max_assets=)"),),
          "Exposure per asset, in quote currency (negative for a short).", when="once set"),
    ]
    out.append(_section("otel_trader.trading.loop_health", "Event loop (loop_health)",
                        when="while a loop monitor runs (on by default: TELEMETRY_LOOP_MONITOR)")(
        "asyncio_event_loop_lag_seconds", "Histogram", "s", (),
        "Time the asyncio event loop took to run a callback scheduled every 0.25 s, in seconds (time-weighted "
        "while it is blocked).", buckets=LOOP_LAG_BUCKETS,
        notes="probes held back by a block are recorded with the lag they would have seen"))
    return out


EXCHANGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
EXCHANGE_OUTCOMES = ("success", "rejected", "error", "cancelled")
WEBSOCKET_LIFETIME_BUCKETS = (1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0, 43200.0, 86400.0)


def _exchanges() -> list[Metric]:
    """Exchange clients: ccxt calls (otel_trader.trading.exchanges) and WebSocket clients."""
    venue = Label("exchange", note=f"the ccxt exchange id: 50 values, then `{OVERFLOW}`")
    call = (venue, Label("method", note=f"the ccxt unified or implicit method, snake_case: 200 values, then `{OVERFLOW}`"),
            Label("outcome", EXCHANGE_OUTCOMES))
    m = _section("otel_trader.trading.exchanges", "Exchange calls (ccxt integration)",
                 when="once an exchange call was made (ccxt installed and imported)")
    out = [
        m("exchange_request_duration_seconds", "Histogram", "s", call,
          "Duration of exchange API calls (ccxt unified and implicit methods), in seconds.", buckets=EXCHANGE_BUCKETS),
        m("exchange_requests_total", "Counter", "{request}", call,
          "Exchange API calls by exchange, method and outcome (success, rejected, error, cancelled)."),
        m("exchange_errors_total", "Counter", "{error}",
          (venue, call[1], Label("error", note=f"the ccxt exception class (`RateLimitExceeded`, …): 64 values, "
                                                  f"then `{OVERFLOW}`")),
          "Failed exchange API calls by exchange, method and error class (ccxt exception name).",
          when="once an exchange call failed"),
        m("exchange_rate_limit_used_ratio", "ObservableGauge", "",
          (venue, Label("limit", note="`weight_1m`, `orders_10s`, `fapi_weight_1m`, `endpoint`, `requests`, …: "
                                          f"32 values, then `{OVERFLOW}`")),
          "Share of an exchange rate limit in use (1 = limit reached), from the venue's response headers.",
          notes="0 once the window a value belongs to ended", when="once a response carried rate-limit headers"),
        m("exchange_clock_skew_seconds", "ObservableGauge", "s", (venue,),
          "Exchange clock minus local clock, in seconds (fetch_time(), else the Date header).",
          when="after a fetch_time() or a response with a Date header"),
        m("exchange_last_success_timestamp_seconds", "ObservableGauge", "s", (venue,),
          "Unix time of the last successful exchange call (of the first call while none succeeded)."),
    ]
    ws = (Label("server", note=f"the host: 50 values, then `{OVERFLOW}`"),
          Label("stream", note=f"URL path with ids as `{{id}}`, or `stream_name()`: 100 values, then `{OVERFLOW}`"))
    m = _section("otel_trader.integrations.websockets", "WebSocket clients (websockets integration)",
                 when="once a websockets client connected")
    out += [
        m("websocket_client_connections", "ObservableUpDownCounter", "{connection}", ws,
          "Open WebSocket client connections per server and stream."),
        m("websocket_client_connects_total", "Counter", "{connection}", (*ws, Label("outcome", ("success", "error"))),
          "WebSocket client connection attempts by outcome (success, error)."),
        m("websocket_client_reconnects_total", "Counter", "{connection}", ws,
          "Successful WebSocket connections to a stream that was connected before.",
          when="once a stream reconnected"),
        m("websocket_client_connection_duration_seconds", "Histogram", "s", ws,
          "Lifetime of closed WebSocket client connections, in seconds.", buckets=WEBSOCKET_LIFETIME_BUCKETS,
          when="once a connection closed"),
        m("websocket_client_messages_total", "ObservableCounter", "{message}",
          (*ws, Label("direction", ("received", "sent"))),
          "WebSocket messages per server and stream, by direction (received, sent)."),
        m("websocket_client_last_message_timestamp_seconds", "ObservableGauge", "s", ws,
          "Unix time of the last message received per server and stream.", when="once a message arrived"),
    ]
    return out


def _runtime_and_sdk() -> list[Metric]:
    m = _section("otel_trader.sdk.runtime_metrics", "Runtime (prometheus_client's names, as OTel instruments)")
    linux = "on Linux (prometheus_client reads them from /proc)"
    out = [
        m("process_cpu_seconds_total", "ObservableCounter", "", (), "Total user and system CPU time spent in seconds.",
          otel="process_cpu_seconds", when=linux),
        m("process_resident_memory_bytes", "ObservableGauge", "", (), "Resident memory size in bytes.", when=linux),
        m("process_virtual_memory_bytes", "ObservableGauge", "", (), "Virtual memory size in bytes.", when=linux),
        m("process_start_time_seconds", "ObservableGauge", "", (),
          "Start time of the process since unix epoch in seconds.", when=linux),
        m("process_open_fds", "ObservableGauge", "", (), "Number of open file descriptors.", when=linux),
        m("process_max_fds", "ObservableGauge", "", (), "Maximum number of open file descriptors.", when=linux),
        m("python_gc_objects_collected_total", "ObservableCounter", "", (_GENERATION,), "Objects collected during gc",
          otel="python_gc_objects_collected"),
        m("python_gc_objects_uncollectable_total", "ObservableCounter", "", (_GENERATION,),
          "Uncollectable objects found during GC", otel="python_gc_objects_uncollectable"),
        m("python_gc_collections_total", "ObservableCounter", "", (_GENERATION,),
          "Number of times this generation was collected", otel="python_gc_collections"),
        m("python_info", "ObservableGauge", "", tuple(map(Label, ("implementation", "major", "minor", "patchlevel",
                                                                  "version"))), "Python platform information"),
    ]
    m = _section("opentelemetry-sdk", "SDK self-metrics (batch processors)",
                 when="with a batch span or log processor (an exporter is set); logs only with TELEMETRY_LOGS_ENABLED")
    out += [
        m("otel_sdk_processor_span_processed_total", "Counter", "{span}", _PROCESSED,
          "The number of spans for which the processing has finished, either successful or failed.",
          otel="otel.sdk.processor.span.processed", notes='spans dropped on a full queue: `error_type="queue_full"`'),
        m("otel_sdk_processor_log_processed_total", "Counter", "{log_record}", _PROCESSED,
          "The number of log records for which the processing has finished, either successful or failed.",
          otel="otel.sdk.processor.log.processed", notes='dropped on a full queue: `error_type="queue_full"`'),
        m("otel_sdk_processor_span_queue_size", "ObservableUpDownCounter", "{span}", _COMPONENT,
          "The number of spans in the queue of a given instance of an SDK span processor.",
          otel="otel.sdk.processor.span.queue.size"),
        m("otel_sdk_processor_span_queue_capacity", "UpDownCounter", "{span}", _COMPONENT,
          "The maximum number of spans the queue of a given instance of an SDK span processor can hold.",
          otel="otel.sdk.processor.span.queue.capacity"),
        m("otel_sdk_processor_log_queue_size", "ObservableUpDownCounter", "{log}", _COMPONENT,
          "The number of logs in the queue of a given instance of an SDK log processor.",
          otel="otel.sdk.processor.log.queue.size"),
        m("otel_sdk_processor_log_queue_capacity", "UpDownCounter", "{log_record}", _COMPONENT,
          "The maximum number of log records the queue of a given instance of an SDK Log Record processor can hold.",
          otel="otel.sdk.processor.log.queue.capacity"),
    ]
    out.append(_section("opentelemetry-exporter-prometheus", "Prometheus exposition")(
        "target_info", "ObservableGauge", "", _RESOURCE, "Target metadata",
        notes="the resource; also `service_version` (SERVICE_VERSION) and OTEL_RESOURCE_ATTRIBUTES' keys. Every "
              "other family carries `otel_scope_name`/`otel_scope_version`/`otel_scope_schema_url`"))
    return out


def _collector() -> list[Metric]:
    # Units only where they show in the Prometheus name; labels as on :8888 (measured on v0.145.0),
    # which adds otel_scope_* to each, and Prometheus adds job/instance.
    m = _section(COLLECTOR, "Collector self-metrics (otelcol-trader)",
                 when="on the collector's :8888, and over OTLP with signoz/otelcol-telemetry.yaml")
    out = [
        m(f"otelcol_{stem}_{signal}_total", "Counter", "", labels, what, otel=f"otelcol_{stem}_{signal}")
        for stem, labels, what in (
            ("receiver_accepted", _RECEIVER, "Items the receiver accepted."),
            ("receiver_refused", _RECEIVER, "Items the receiver refused (the memory_limiter)."),
            ("exporter_sent", (Label("exporter"),), "Items the exporter delivered."),
            ("exporter_send_failed", (Label("exporter"),), "Items that failed to send after all retries."),
            ("exporter_enqueue_failed", (Label("exporter"),), "Items that did not fit in the sending queue."),
        )
        for signal in ("spans", "metric_points", "log_records")
    ]
    out += [
        m("otelcol_exporter_queue_size", "ObservableGauge", "", _QUEUE, "Current size of the retry queue (in batches)."),
        m("otelcol_exporter_queue_capacity", "ObservableGauge", "", _QUEUE,
          "Fixed capacity of the retry queue (in batches)."),
        m("otelcol_process_memory_rss_bytes", "ObservableGauge", "By", (), "Total physical memory (resident set size).",
          otel="otelcol_process_memory_rss"),
        m("otelcol_process_cpu_seconds_total", "ObservableCounter", "s", (), "Total CPU user and system time in seconds.",
          otel="otelcol_process_cpu_seconds"),
        m("otelcol_process_uptime_seconds_total", "ObservableCounter", "s", (), "Uptime of the process.",
          otel="otelcol_process_uptime"),
    ]
    m = _section(COLLECTOR, "Collector span metrics (spanmetrics connector)",
                 when="on the collector's :8889, not sent to SigNoz (collector/otelcol-config.yaml: metrics/spanmetrics)")
    out += [
        m("traces_span_metrics_calls_total", "Counter", "", _SPAN_DIMENSIONS, "Spans per service, span name, kind and status.",
          otel="traces.span.metrics.calls", notes="the `http_*` labels only on spans that carry those attributes"),
        m("traces_span_metrics_duration_seconds", "Histogram", "s", _SPAN_DIMENSIONS, "Span duration.",
          otel="traces.span.metrics.duration", buckets=SPAN_METRIC_BUCKETS),
    ]
    return out
# fmt: on


CATALOG: tuple[Metric, ...] = (*_app(), *_bot(), *_exchanges(), *_runtime_and_sdk(), *_collector())


def by_prom() -> dict[str, Metric]:
    """Prometheus name -> metric."""
    return {metric.prom: metric for metric in CATALOG}
