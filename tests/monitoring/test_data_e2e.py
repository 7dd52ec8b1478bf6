"""End to end: load through app -> collector -> Prometheus (and the SigNoz stand-in), and every
expression of every dashboard and alert rule finds data.

The stack, all real processes on 127.0.0.1 with free ports:

    load (this test) --HTTP--> load_app (uvicorn, otel-trader instrumented, SERVICE_NAME=trader-api)
    load_app --OTLP--> otelcol-trader (collector/otelcol-config.yaml + signoz/otelcol-telemetry.yaml)
    otelcol-trader --OTLP--> sink (collector/sink-config.yaml: what SigNoz's ingest would receive)
    Prometheus (monitoring/prometheus/prometheus.yml, targets rendered, 1 s scrapes) scrapes
        the collector's :8889 (via="collector") and :8888, and the app's /metrics (via="direct")

Checks:
* every Grafana panel and variable expression returns data, once per scrape path;
* every vector selector of every Prometheus alert rule matches series (the conditions
  themselves only return data while firing);
* every selector of every SigNoz widget and rule matches a series that SigNoz would store for
  the OTLP data the sink received (OTel names, .bucket/.count/.sum, resource attributes as
  labels): SigNoz itself cannot run here, its input can.

An expression the builder marks ``empty_when_healthy`` (it only shows a problem) may be
empty; the load provokes most of those problems anyway (a 500, a failing Redis command, a
span burst into a small SDK queue). What stays empty is printed with its reason
(`pytest -s`), and listed in monitoring/README.md.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_server import free_port
from promql import ALERT_CONDITION, extract_all, signoz_series
from stack import (
    API_SERVICE,
    Stack,
    check_alert_selectors,
    check_grafana,
    check_signoz,
    start_uvicorn,
    telemetry_env,
)

HERE = Path(__file__).resolve().parent
#: The exchange and bot-health assets read metrics only a trading bot emits (ccxt calls, feeds,
#: risk state): this HTTP load does not, the demo does (tests/monitoring/test_data_demo.py).
BOT_ONLY_FILES = ("exchanges", "bot-health", "exchange-", "market-data-", "bot-not-", "trading-halted",
                  "risk-limit-", "orders-unacknowledged", "no-fills-", "event-loop-", "slippage-")
EXPRESSIONS = [e for e in extract_all() if not any(part in Path(e.file).name for part in BOT_ONLY_FILES)]
GRAFANA = [e for e in EXPRESSIONS if e.source in ("grafana", "grafana-variable")]
RULES = [e for e in EXPRESSIONS if e.source == "prometheus-rule"]
SIGNOZ = [e for e in EXPRESSIONS if e.dialect == "signoz"]

#: Selectors (pattern searched in the selector text) of alert rules and SigNoz queries that
#: exist only when something is wrong, and that this load does not provoke.
ONLY_WHEN_WRONG = {
    re.compile(r"otelcol_exporter_enqueue_failed_"):
        "the collector creates enqueue_failed_* only when a batch does not fit in the sending queue "
        "(proven in test_data_e2e_outage.py)",
}


def _app_env(stack: Stack, redis_url: str) -> dict[str, str]:
    return telemetry_env(
        stack.collector, API_SERVICE,
        TELEMETRY_LOGS_ENABLED="true",
        # small SDK queues, so /span-burst and /log-burst overflow them (error_type="queue_full")
        OTEL_BSP_MAX_QUEUE_SIZE="64",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="64",
        OTEL_BLRP_MAX_QUEUE_SIZE="64",
        OTEL_BLRP_MAX_EXPORT_BATCH_SIZE="64",
        OTEL_BLRP_SCHEDULE_DELAY="200",
        LOAD_APP_REDIS_URL=redis_url,
        # The Telegram reporter talks to a closed loopback port: every report fails (result="failed"),
        # and with a queue of 1 a burst is dropped (otel_trader_error_reports_dropped_total).
        TELEGRAM_ERROR_REPORTING_ENABLED="true",
        TELEGRAM_TOKEN="123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        TELEGRAM_CHAT_IDS="1",
        TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{free_port()}",
        TELEGRAM_MAX_RETRIES="0",
        TELEGRAM_TIMEOUT_SECONDS="1",
        TELEGRAM_ERROR_QUEUE_SIZE="1",
    )


def _drive(url: str, stop: threading.Event) -> None:
    """Steady mixed load until `stop`; short timeouts, and a failed request never stops it
    (uvicorn closes the connection after the deliberate unhandled exception of /boom)."""
    with httpx.Client(base_url=url, timeout=5.0) as http:

        def call(method: str, path: str, **params: str | int) -> None:
            with contextlib.suppress(httpx.HTTPError):
                http.request(method, path, params=params)

        # first, while the reporter has not yet seen the (closed) Bot API fail
        call("POST", "/report-burst", n=20)
        call("POST", "/span-burst", n=600)
        call("POST", "/log-burst", n=600)
        i = 0
        while not stop.is_set():
            i += 1
            call("GET", "/orders/BTC-USDT")
            call("POST", "/orders/BTC-USDT", side="buy")
            call("POST", "/orders/ETH-USDT", side="sell", status="rejected" if i % 3 == 0 else "filled", exchange="binance")
            call("POST", "/ws/open")
            if i % 2 == 0:
                call("POST", "/ws/close")
            call("POST", "/rate-limit/allowed")
            call("GET", "/cache/k1")
            call("GET", "/health/redis")
            if i % 4 == 0:
                call("POST", "/rate-limit/limited")
                call("GET", "/no-such-route")
                call("GET", "/cache-broken")
                call("GET", "/boom")
            stop.wait(0.05)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server) -> Iterator[Stack]:
    stack = Stack.start_pipeline(tmp_path_factory.mktemp("monitoring-e2e"))
    stop = threading.Event()
    load = None
    try:
        api = stack.apps["api"] = start_uvicorn(stack.tmp, "load-app", "load_app:app", _app_env(stack, redis_server.url),
                                                app_dir=HERE, ready_path="/orders/BTC-USDT")
        stack.start_prometheus(api)
        load = threading.Thread(target=_drive, args=(api.url, stop), daemon=True)
        load.start()
        stack.wait_for([
            'count_over_time(http_requests_total{via="collector", job="trader-api"}[1m])',
            'count_over_time(http_requests_total{via="direct", job="trader-api"}[1m])',
            'count_over_time(otelcol_exporter_sent_spans_total{job="otel-collector-self"}[1m])',
            'count_over_time(otel_sdk_processor_span_processed_total{via="collector", error_type="queue_full"}[1m])',
            'count_over_time(otel_sdk_processor_log_processed_total{via="collector", error_type="queue_full"}[1m])',
            'count_over_time(redis_connection_latency_ms{via="collector"}[1m])',
            'count_over_time(otel_trader_error_reports_dropped_total{via="collector"}[1m])',
            'count_over_time(otel_trader_error_reports_total{via="collector", result="failed"}[1m])',
        ])
        yield stack
    finally:
        stop.set()
        if load is not None:
            load.join(10)
        stack.stop()


@pytest.mark.parametrize("via", ["collector", "direct"])
def test_every_grafana_expression_returns_data(stack: Stack, via: str) -> None:
    outcome = check_grafana(stack.prometheus, GRAFANA, via)
    outcome.report(f"Grafana expressions, via={via}")
    assert not outcome.failures, f"{len(outcome.failures)} expressions returned no data (via={via}):\n" + "\n".join(outcome.failures)
    assert len(outcome.with_data) > 60


def test_every_alert_rule_selector_has_data(stack: Stack, v3_parser: Path) -> None:
    assert all(e.empty_when_healthy == ALERT_CONDITION for e in RULES)
    outcome = check_alert_selectors(stack.prometheus, RULES, v3_parser, ONLY_WHEN_WRONG)
    outcome.report("alert rule selectors")
    assert not outcome.failures, "alert rule selectors without data:\n" + "\n".join(outcome.failures)
    assert len(outcome.with_data) + len(outcome.allowed_empty) == 30  # every selector of the 15 rules


def test_alert_rules_evaluate_without_errors(stack: Stack) -> None:
    """Prometheus evaluated every rule on real data without an error (e.g. a duplicate label set)."""
    rules = stack.prometheus.rules()
    assert len(rules) >= 15
    broken = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
    assert not broken, broken


def test_every_signoz_selector_matches_what_signoz_would_store(stack: Stack, v3_parser: Path) -> None:
    assert len(signoz_series(stack.sink.file)) > 100
    outcome = check_signoz(stack.sink.file, SIGNOZ, v3_parser, ONLY_WHEN_WRONG, lambda e: e.empty_when_healthy)
    outcome.report("SigNoz selectors")
    assert not outcome.failures, "SigNoz selectors matching nothing SigNoz would store:\n" + "\n".join(outcome.failures)
    assert len(outcome.with_data) > 100


def test_signoz_stores_otel_names_not_prometheus_names(stack: Stack) -> None:
    """The facts the SigNoz queries rely on, measured on what reached the sink."""
    names = {labels["__name__"] for labels in signoz_series(stack.sink.file)}
    # our own instruments keep their names; histograms get dotted suffixes
    assert {"http_requests_total", "http_request_duration_seconds.bucket", "realized_pnl"} <= names
    assert "http_request_duration_seconds_bucket" not in names
    # counters get no _total appended: prometheus_client's family name stays as is
    assert "process_cpu_seconds" in names and "process_cpu_seconds_total" not in names
    # semantic-convention names keep their dots
    assert "otel.sdk.processor.span.processed" in names
    # the collector's own metrics (signoz/otelcol-telemetry.yaml): no _total, no unit suffix
    assert {"otelcol_exporter_sent_spans", "otelcol_process_memory_rss"} <= names
    assert "otelcol_exporter_sent_spans_total" not in names


def test_collector_metrics_are_the_catalogs(stack: Stack) -> None:
    """The collector's rows of otel_trader/metric_catalog.py, which the app-side catalog test cannot
    see: each is in Prometheus under its Prometheus name with the catalog's labels (self-metrics
    from :8888, span metrics from :8889), and the self-metrics are in the sink under their OTel
    names (span metrics go to Prometheus only)."""
    from otel_trader import metric_catalog as mc

    collector = [m for m in mc.CATALOG if m.source == mc.COLLECTOR]
    wrong = [m.prom for m in collector if any(p.search(m.prom) for p in ONLY_WHEN_WRONG)]
    stored = {labels["__name__"] for labels in signoz_series(stack.sink.file)}
    problems = []
    for metric in collector:
        if metric.prom in wrong:
            continue
        name = f"{metric.prom}_count" if metric.prom_type == "histogram" else metric.prom
        series = stack.prometheus.query(f'{{__name__="{name}"}}')
        labels = {key for s in series for key in s["metric"]}
        if not series:
            problems.append(f"{name}: no series in Prometheus")
        elif not set(metric.label_names) <= labels:
            problems.append(f"{name}: labels {sorted(labels)} lack {sorted(set(metric.label_names) - labels)}")
        otel = f"{metric.otel}.count" if metric.prom_type == "histogram" else metric.otel
        if (otel in stored) != metric.prom.startswith("otelcol_"):
            problems.append(f"{otel}: {'in' if otel in stored else 'not in'} what SigNoz would store")
    assert not problems, "\n".join(problems)
    assert len(wrong) == 3  # enqueue_failed_{spans,metric_points,log_records}: test_data_e2e_outage.py
