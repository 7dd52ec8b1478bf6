"""The 15 alerts, each described once for Prometheus (monitoring/prometheus/alerts/) and SigNoz (signoz/alerts/).

An alert's ``value`` is a function of the dialect, like a panel's queries. Prometheus' rule is
``value op target`` (or ``prometheus``, where our Prometheus has something SigNoz lacks: ``up``,
``absent()``); SigNoz compares the value with ``op``/``target`` itself over its evaluation window,
so its query carries no threshold.

Our Prometheus has app metrics twice when both scrape paths run (label ``via``, same ``job``).
Ratios and quantiles are unchanged by the duplicate, so they aggregate ``sum by (job)``; absolute
values are computed per path and then ``max``/``min by (job)`` (:func:`per_service`), so a duplicate
never doubles a rate and one stale path does not hide the other. SigNoz has one copy of each series.

Texts: ``summary`` and ``description`` are Prometheus templates (``{{ $labels.job }}``). SigNoz's
summary is derived (:func:`signoz_text`: ``{{$service.name}}``, since SigNoz rewrites ``{{$x}}`` to
the label ``x`` and ``{{$labels.x}}`` would look up a label named ``labels.x``); its description
is its own, because ours use Prometheus' ``$value`` functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .catalog import SIGNOZ_LABELS
from .dialect import PROM, Dialect
from .model import COLLECTOR_SERVICE, DROPPED, LIMITED, SERVER_ERROR

#: The Prometheus rule groups: (group name, file under monitoring/prometheus/alerts/, header comment).
GROUPS = {
    "trader-alerts": ("trader.yml", """\
The trading service's alerts. Proven by ../tests/trader_test.yml (promtool test rules): each
alert fires on a crafted series and stays silent on a healthy one.

App metrics arrive twice when both scrape paths run (label via="collector" and via="direct",
same job). Ratios and quantiles are unchanged by the duplicate, so they aggregate
`sum by (job)`; absolute values are computed per path and then `max`/`min by (job)`, so a
duplicate never doubles a rate and one stale path does not hide the other."""),
    "telemetry-pipeline": ("pipeline.yml", """\
Alerts on our own telemetry pipeline: the collector, its export to SigNoz, and what the app's
SDK and Telegram reporter had to drop. Proven by ../tests/pipeline_test.yml.

Metric names measured on otelcol-trader v0.145.0 (:8888) and the Python SDK 1.45 (app side).
The export to SigNoz retries forever (retry_on_failure.max_elapsed_time: 0), so an outage
does not show up as send_failed: it shows as a queue that holds items while nothing is sent
(OtelExporterStalled) and, when the queue is full, as enqueue_failed (OtelExportDataLost)."""),
}


@dataclass(frozen=True)
class Alert:
    name: str
    group: str  # a key of GROUPS
    severity: str  # critical | warning
    for_: str  # Prometheus' `for`; also SigNoz's evalWindow unless signoz_window
    value: Callable[[Dialect], str]
    op: str  # above | below
    target: float
    summary: str  # Prometheus template; SigNoz's is derived unless signoz_summary
    description: str  # Prometheus template
    signoz_description: str
    fires_when: str  # monitoring/README.md's alert table
    runbook: str  # what to check first (monitoring/README.md's alert table)
    why: str = ""  # the comment above the Prometheus rule
    #: The whole Prometheus condition where it is not `value op target`.
    prometheus: str = ""
    #: The value's terms are compared already (`... > 0 or ...`): its series exist only while
    #: the condition holds, and the Prometheus condition is the value itself.
    filtered: bool = False
    signoz_summary: str = ""
    signoz_window: str = ""
    #: > 0: SigNoz also alerts when the query has no data this long (there is no `up` in SigNoz).
    absent_minutes: int = 0
    #: Why the SigNoz query is empty while everything works (None = it has data under the demo load).
    empty_when_healthy: str | None = None

    def prometheus_expr(self) -> str:
        if self.prometheus:
            return self.prometheus
        value = self.value(PROM)
        if self.filtered:
            return value
        condition = f"{'>' if self.op == 'above' else '<'} {self.target:g}"
        return f"{value}\n{condition}" if "\n" in value and not value.endswith("\n)") else f"{value} {condition}"


_LABEL_REF = re.compile(r"\{\{ \$labels\.([A-Za-z_][A-Za-z0-9_]*) \}\}")


def signoz_text(prometheus: str) -> str:
    """A Prometheus alert text in SigNoz's form: ``{{ $labels.job }}`` -> ``{{$service.name}}``."""
    text = _LABEL_REF.sub(lambda m: "{{$" + SIGNOZ_LABELS.get(m.group(1), m.group(1)) + "}}", prometheus)
    if re.search(r"\{\{(?!\$[\w.]+\}\})", text):
        raise ValueError(f"{prometheus!r} uses more than label references: give the SigNoz text")
    return text


def _rate(d: Dialect, metric: str, *matchers: str) -> str:
    return f"rate({d.sel(metric, *matchers, base=False)}[5m])"


def _total(d: Dialect, by: str, metric: str, *matchers: str) -> str:
    return f"sum by ({by}) ({_rate(d, metric, *matchers)})"


def per_service(d: Dialect, inner: Callable[[str], str], agg: str = "max") -> str:
    """``inner(grouping)`` per service: in Prometheus per scrape path first, then the worst path."""
    if d is PROM:
        return f"{agg} by (job) (\n  " + inner("job, via").replace("\n", "\n  ") + "\n)"
    return inner(d.label("job"))


def _any_of(d: Dialect, kind: str, by: str, threshold: str) -> str:
    """One term per signal's counter: rate() drops the metric name, so one regex selector over
    the three would fail with "vector cannot contain metrics with the same labelset"."""
    return "\nor ".join(f"{_total(d, by, f'otelcol_{kind}_{s}_total')}{threshold}"
                        for s in ("spans", "metric_points", "log_records"))


def _collector_by(d: Dialect, component: str) -> str:
    return f"{d.by('job', 'instance')}, {component}"


def _websocket_drop(d: Dialect) -> str:
    # SigNoz evaluates per 60 s step; a 30 s subquery step is enough there, 15 s = our scrape interval.
    step = "15s" if d is PROM else "30s"

    def drop(by: str) -> str:
        total = f"sum by ({by}) ({d.sel('websocket_connections', base=False)})"
        return f"max_over_time({total}[5m:{step}])\n- {total}"

    return per_service(d, drop)


def _stalled(d: Dialect) -> str:
    by = _collector_by(d, "exporter")
    queue = d.sel("otelcol_exporter_queue_size", base=False)
    return f"sum by ({by}) ({queue}) > 0\nunless on ({by}) (\n{_any_of(d, 'exporter_sent', by, ' > 0')}\n)"


def _queue_fill(d: Dialect) -> str:
    queue = d.sel("otelcol_exporter_queue_size", base=False)
    capacity = d.sel("otelcol_exporter_queue_capacity", base=False)
    return f"max by ({_collector_by(d, 'exporter')}, {d.by('data_type')}) ({queue} / {capacity})"


def _latency(d: Dialect) -> str:
    buckets = f"rate({d.sel('http_request_duration_seconds', part='bucket', base=False)}[5m])"
    return f"histogram_quantile(0.95, sum by ({d.by('job', 'le')}) ({buckets}))"


def _error_ratio(d: Dialect) -> str:
    by = d.by("job")
    req = "http_requests_total"
    return f"{_total(d, by, req, SERVER_ERROR)}\n/ ({_total(d, by, req)} > 0)"


def _count(d: Dialect, metric: str, service: str) -> str:
    series = d.sel(metric, f'job="{service}"', base=False)
    return f"count by ({d.by('job')}) ({series})"


def _service_rate(metric: str, *matchers: str) -> Callable[[Dialect], str]:
    return lambda d: per_service(d, lambda by: _total(d, by, metric, *matchers))


_PER_SECOND = '{{ $value | printf "%.2f" }}'


def _trader() -> list[Alert]:
    g = "trader-alerts"
    return [
        Alert("TraderAPIDown", g, "critical", "1m", lambda d: _count(d, "process_resident_memory_bytes", "trader-api"),
              "below", 1, "Trader API is down",
              "{{ if $labels.instance }}Prometheus could not scrape {{ $labels.instance }} for 1 minute.{{ else }}No "
              "trader-api scrape target is configured: nothing checks that the API is up.{{ end }}",
              "No runtime metrics from service.name=trader-api for 2 minutes: the app or its telemetry pipeline is down.",
              '`up{job="trader-api"} == 0`, or no such target at all',
              "the app's process and `/metrics`; in SigNoz, also the collector (no data = nothing arrives)",
              why="`up == 0` alone is never true when no scrape job is named exactly trader-api (a missing or "
                  "renamed job), hence the absent() arm. SigNoz has no `up`: there it is no data for 2 minutes.",
              prometheus='up{job="trader-api"} == 0 or absent(up{job="trader-api"})', absent_minutes=2),
        Alert("HighErrorRate", g, "warning", "5m", _error_ratio, "above", 0.05, "High error rate on {{ $labels.job }}",
              "{{ $value | humanizePercentage }} of requests answered 5xx over the last 5 minutes (threshold 5%).",
              "More than 5% of requests answered 5xx for 5 minutes.",
              "5xx share of requests > 5 % per job; an idle API gives no value, not NaN",
              "the Telegram error reports and the traces of the failing route (API Performance: status codes by path)",
              why="Per job; the denominator is filtered to > 0 so an idle API gives no result instead of 0/0 = NaN.",
              empty_when_healthy="the 5xx series exists only once a request failed"),
        Alert("HighLatency", g, "warning", "5m", _latency, "above", 1, "High latency on {{ $labels.job }}",
              "P95 request latency is {{ $value | humanizeDuration }} (threshold 1s).",
              "P95 request latency above 1 s for 5 minutes.",
              "p95 of `http_request_duration_seconds` > 1 s per job",
              "API Performance: latency by endpoint, then that route's slowest traces (exchange calls, Redis, DB)",
              why="Per job. No traffic gives NaN, which is never > 1, so an idle API stays silent."),
        Alert("RateLimitExceeded", g, "warning", "5m", _service_rate("rate_limit_requests_total", LIMITED),
              "above", 10, "Rate limiting is frequently triggered on {{ $labels.job }}",
              "{{ $value | humanize }} requests per second are being rate limited (threshold 10/s).",
              "More than 10 requests per second are being rate limited.",
              "> 10 limited requests/s per job",
              "Trading Overview: Rate Limiter; which client or strategy sends the burst",
              why="The service's total, per scrape path, worst path wins (not per series: one per instance and "
                  "OTel scope)."),
        Alert("WebSocketConnectionsDrop", g, "warning", "2m", _websocket_drop, "above", 10,
              "WebSocket connections dropping on {{ $labels.job }}",
              "{{ $value | humanize }} fewer WebSocket connections than the peak of the last 5 minutes (threshold 10).",
              "More than 10 fewer WebSocket connections than the peak of the last 5 minutes.",
              "`websocket_connections` of a job more than 10 below its 5-minute peak",
              "the exchange's status and the app's reconnect logs",
              why="PromQL has no decrease() and the gauge has no _total: the drop is the 5-minute peak minus now, "
                  "on the service's total (a restart that replaces the instance's series still counts as a drop)."),
        Alert("DailyLossLimit", g, "critical", "1m",
              lambda d: per_service(d, lambda by: f"sum by ({by}) ({d.sel('realized_pnl', base=False)})", agg="min"),
              "below", -1000, "Daily loss limit approaching on {{ $labels.job }}",
              'Realized PnL is {{ $value | printf "%.2f" }} (limit -1000 in quote currency).',
              "Realized PnL since the app's day-boundary reset is below -1000 (quote currency).",
              "`realized_pnl` summed over symbols < -1000",
              "Trading Overview: PnL Over Time by symbol; stop the strategy before the limit",
              why="realized_pnl is a signed gauge (a counter cannot go below 0): the PnL since the app's last "
                  "trading.reset_realized_pnl() (call it at the day boundary) or process start. Summed over "
                  "symbols; the lower of the two paths counts."),
    ]


def _pipeline() -> list[Alert]:
    g = "telemetry-pipeline"
    return [
        Alert("OtelCollectorDown", g, "critical", "2m",
              lambda d: _count(d, "otelcol_process_uptime_seconds_total", COLLECTOR_SERVICE),
              "below", 1, "OpenTelemetry collector is down",
              "{{ if $labels.instance }}Prometheus could not scrape {{ $labels.instance }} ({{ $labels.job }}) for 2 "
              "minutes{{ else }}No otel-collector-self scrape target is configured{{ end }}: app traces, metrics and "
              "logs may not be reaching SigNoz or Prometheus.",
              "No self-metrics from the collector for 2 minutes (they need signoz/otelcol-telemetry.yaml): "
              "it is down or cannot reach SigNoz.",
              "a collector endpoint not scraped, or not configured",
              "the collector's process, `:13133` health and its log (memory_limiter, config errors)",
              prometheus='up{job=~"otel-collector|otel-collector-self"} == 0 or absent(up{job="otel-collector-self"})',
              signoz_window="1m", absent_minutes=2),
        Alert("OtelExportDataLost", g, "critical", "1m",
              lambda d: _any_of(d, "exporter_send_failed", _collector_by(d, "exporter"), " > 0") + "\nor "
              + _any_of(d, "exporter_enqueue_failed", _collector_by(d, "exporter"), " > 0"),
              "above", 0, "Collector exporter {{ $labels.exporter }} is dropping data",
              f"{_PER_SECOND} items/s failed to send or to enter the queue on {{{{ $labels.instance }}}}.",
              "Items failed to send after all retries or did not fit in the sending queue.",
              "`otelcol_exporter_send_failed_*` or `enqueue_failed_*` growing: data lost",
              "Telemetry Pipeline Health: export failures and queue fill; is SigNoz reachable?",
              why="Data the collector gave up on: a send that failed after all retries, or a batch that did not "
                  "fit in the sending queue. One term per counter: rate() drops the metric name, so "
                  'rate({__name__=~"a|b"}) fails with "vector cannot contain metrics with the same labelset" as '
                  "soon as two of them exist for the same exporter.",
              filtered=True, empty_when_healthy="a term is kept only while > 0, i.e. while data is lost"),
        Alert("OtelExporterStalled", g, "warning", "5m", _stalled, "above", 0,
              "Collector exporter {{ $labels.exporter }} is not sending",
              "{{ $value }} batches are queued on {{ $labels.instance }} and nothing was exported for 5 minutes.",
              "Batches are queued and nothing was exported for 5 minutes (SigNoz unreachable?).",
              "batches queued and nothing sent for 5 minutes (SigNoz unreachable)",
              "the collector's log for the exporter's errors; SIGNOZ_ENDPOINT, TLS and the ingestion key",
              why="The backend is unreachable or rejecting: items wait in the queue and none were sent in 5 "
                  "minutes. A never-successful exporter has no sent_* series; `unless` with an empty right side "
                  "keeps the left, so that case fires too.",
              filtered=True, empty_when_healthy="non-empty only while batches wait and nothing is sent"),
        Alert("OtelExporterQueueNearlyFull", g, "warning", "5m", _queue_fill, "above", 0.8,
              "Collector sending queue of {{ $labels.exporter }} ({{ $labels.data_type }}) is over 80% full",
              "The queue is {{ $value | humanizePercentage }} full; when it is full new data is dropped.",
              "When the queue is full new data is dropped.",
              "a sending queue > 80 % full",
              "whether the backend is slow or down (OtelExporterStalled); OTELCOL_QUEUE_SIZE",
              signoz_summary="Collector sending queue of {{$exporter}} is over 80% full"),
        Alert("OtelCollectorRefusingData", g, "warning", "5m",
              lambda d: _any_of(d, "receiver_refused", _collector_by(d, "receiver"), " > 0"),
              "above", 0, "Collector receiver {{ $labels.receiver }} is refusing data",
              f"{_PER_SECOND} items/s refused on {{{{ $labels.instance }}}} (memory limiter?).",
              "The memory_limiter refuses data; the SDK retries, then drops.",
              "`otelcol_receiver_refused_*` growing (memory limiter)",
              "the collector's memory (Telemetry Pipeline Health) against OTELCOL_MEMORY_LIMIT_MIB",
              why="memory_limiter refuses data when the collector is near its memory limit; the SDK retries, "
                  "then drops.",
              filtered=True,
              empty_when_healthy="a term is kept only while > 0, i.e. while the memory_limiter refuses data"),
        Alert("OtelSdkSpansDropped", g, "warning", "2m",
              _service_rate("otel_sdk_processor_span_processed_total", 'error_type="queue_full"'),
              "above", 0, "{{ $labels.job }} is dropping spans",
              f"{_PER_SECOND} spans/s dropped because the SDK's export queue is full.",
              "Spans dropped because the SDK's export queue is full.",
              'the app\'s SDK dropped spans: `otel_sdk_processor_span_processed_total{error_type="queue_full"}`',
              "whether the collector accepts (OtelCollectorRefusingData); OTEL_BSP_MAX_QUEUE_SIZE, sampling",
              why="The app's BatchSpanProcessor queue was full: spans were dropped in the process, before the "
                  "collector saw them.",
              empty_when_healthy=DROPPED),
        Alert("OtelSdkLogsDropped", g, "warning", "2m",
              _service_rate("otel_sdk_processor_log_processed_total", 'error_type="queue_full"'),
              "above", 0, "{{ $labels.job }} is dropping log records",
              f"{_PER_SECOND} log records/s dropped because the SDK's export queue is full.",
              "Log records dropped because the SDK's export queue is full.",
              'the app\'s SDK dropped log records: `otel_sdk_processor_log_processed_total{error_type="queue_full"}`',
              "a log flood (level, loop); OTEL_BLRP_MAX_QUEUE_SIZE",
              empty_when_healthy=DROPPED),
        Alert("ErrorReportsDropped", g, "warning", "1m", _service_rate("otel_trader_error_reports_dropped_total"),
              "above", 0, "{{ $labels.job }} dropped error reports",
              f"{_PER_SECOND} error reports/s did not fit in the reporter's queue.",
              "Error reports did not fit in the reporter's queue.",
              "`otel_trader_error_reports_dropped_total` growing",
              "the error burst behind it (traces, logs); TELEGRAM_ERROR_QUEUE_SIZE",
              why="The Telegram error reporter's queue overflowed: error reports were lost.",
              empty_when_healthy=DROPPED),
        Alert("ErrorReportsFailing", g, "warning", "5m",
              _service_rate("otel_trader_error_reports_total", 'result="failed"'),
              "above", 0, "{{ $labels.job }} cannot deliver error reports",
              f"{_PER_SECOND} error reports/s failed to send to Telegram.",
              "Error reports fail to send to Telegram.",
              '`otel_trader_error_reports_total{result="failed"}` growing: Telegram unreachable',
              "the app's log (one warning per outage names the cause); TELEGRAM_TOKEN, chat ids, egress",
              why="Telegram (or the network to it) is failing: errors happen and nobody is told.",
              empty_when_healthy='result="failed" exists only once a report failed'),
    ]


# Bot health (market data, decisions, kill switch, risk, order acks/fills, event loop): bot_alerts.py.
from .bot_alerts import BOT_GROUP, bot_alerts  # noqa: E402

# The exchange the bot trades on (ccxt integration: errors, latency, headroom, skew): exchange_alerts.py.
from .exchange_alerts import EXCHANGE_GROUP, exchange_alerts  # noqa: E402

GROUPS.update(BOT_GROUP)
GROUPS.update(EXCHANGE_GROUP)
ALERTS: list[Alert] = [*_trader(), *_pipeline(), *bot_alerts(), *exchange_alerts()]
