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
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_server import PrometheusServer, free_port, render_config
from promql import ALERT_CONDITION, extract_all, parse_v3, selector_matches, signoz_series

from otel_trader.collector import CollectorPorts, CollectorProcess, SinkProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVICE = "trader-api"
EXPRESSIONS = extract_all()

#: Selectors (by metric name) of alert rules and SigNoz queries that exist only when
#: something is wrong, and that this load does not provoke.
SELECTORS_ONLY_WHEN_WRONG = {
    re.compile(r"otelcol_exporter_enqueue_failed_\w+"):
        "the collector creates enqueue_failed_* only when a batch does not fit in the sending queue "
        "(proven in test_data_e2e_outage.py)",
}


def only_when_wrong(name: str) -> str | None:
    for pattern, reason in SELECTORS_ONLY_WHEN_WRONG.items():
        if pattern.fullmatch(name):
            return reason
    return None


@dataclass
class Stack:
    prometheus: PrometheusServer
    sink: SinkProcess
    collector: CollectorProcess
    app_url: str
    tmp: Path


def _app_env(collector: CollectorProcess, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEMETRY_", "OTLP_", "OTEL_", "TELEGRAM_", "METRIC_"))
           and k not in ("SERVICE_NAME", "ENVIRONMENT", "SERVICE_VERSION")}
    env.update(
        TELEMETRY_ENABLED="true",
        SERVICE_NAME=SERVICE,
        ENVIRONMENT="ci",
        OTLP_ENDPOINT=collector.endpoints.otlp_grpc,
        OTLP_INSECURE="true",
        METRIC_EXPORT_INTERVAL_SECONDS="1",
        TELEMETRY_LOGS_ENABLED="true",
        # a small span queue, so /span-burst overflows it (otel_sdk_processor_span_processed_total{error_type="queue_full"})
        OTEL_BSP_MAX_QUEUE_SIZE="64",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="64",
        OTEL_BSP_SCHEDULE_DELAY="200",
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
    return env


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
    tmp = tmp_path_factory.mktemp("monitoring-e2e")
    sink = SinkProcess(tmp / "sink.jsonl", log_path=tmp / "sink.log").start()
    collector = app = prometheus = None
    stop = threading.Event()
    load = None
    try:
        collector = CollectorProcess(
            ports=CollectorPorts.free(),
            storage_dir=tmp / "queue",
            signoz_endpoint=sink.otlp_grpc_endpoint,
            extra_configs=[ROOT / "signoz" / "otelcol-telemetry.yaml"],
            env={
                "OTELCOL_BATCH_TIMEOUT": "200ms",
                "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
                "OTELCOL_DEPLOYMENT_ENVIRONMENT": "ci",
                "SIGNOZ_TELEMETRY_ENDPOINT": f"http://{sink.otlp_grpc_endpoint}",
                "OTELCOL_TELEMETRY_PUSH_INTERVAL_MS": "1000",
            },
            log_path=tmp / "collector.log",
        ).start()

        app_port = free_port()
        with open(tmp / "app.log", "wb") as log:
            app = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "load_app:app", "--app-dir", str(HERE),
                 "--host", "127.0.0.1", "--port", str(app_port), "--log-level", "warning"],
                env=_app_env(collector, redis_server.url), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )
        app_url = f"http://127.0.0.1:{app_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(app_url + "/orders/BTC-USDT", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert app.poll() is None, f"load app exited:\n{(tmp / 'app.log').read_text()}"
            assert time.monotonic() < deadline, f"load app not answering:\n{(tmp / 'app.log').read_text()}"
            time.sleep(0.1)

        prom_port = free_port()
        config = render_config(
            tmp / "prometheus.yml",
            targets={
                "prometheus": [f"127.0.0.1:{prom_port}"],
                "otel-collector": [f"127.0.0.1:{collector.ports.prometheus}"],
                "otel-collector-self": [f"127.0.0.1:{collector.ports.telemetry}"],
                "trader-api": [f"127.0.0.1:{app_port}"],
            },
            scrape_interval="1s",
        )
        prometheus = PrometheusServer(config, tmp / "tsdb", port=prom_port).start()

        load = threading.Thread(target=_drive, args=(app_url, stop), daemon=True)
        load.start()
        _wait_for_data(prometheus, timeout=90)
        yield Stack(prometheus, sink, collector, app_url, tmp)
    finally:
        stop.set()
        if load is not None:
            load.join(10)
        if prometheus is not None:
            prometheus.stop()
        if app is not None and app.poll() is None:
            app.terminate()
            try:
                app.wait(10)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait(5)
        if collector is not None:
            collector.stop()
        sink.stop()


def _wait_for_data(prom: PrometheusServer, timeout: float) -> None:
    """Until both paths and the collector have several samples (enough for rate() windows)."""
    checks = [
        'count_over_time(http_requests_total{via="collector", job="trader-api"}[1m])',
        'count_over_time(http_requests_total{via="direct", job="trader-api"}[1m])',
        'count_over_time(otelcol_exporter_sent_spans_total{job="otel-collector-self"}[1m])',
        'count_over_time(otel_sdk_processor_span_processed_total{via="collector", error_type="queue_full"}[1m])',
        'count_over_time(otel_sdk_processor_log_processed_total{via="collector", error_type="queue_full"}[1m])',
        'count_over_time(redis_connection_latency_ms{via="collector"}[1m])',
        'count_over_time(otel_trader_error_reports_dropped_total{via="collector"}[1m])',
        'count_over_time(otel_trader_error_reports_total{via="collector", result="failed"}[1m])',
    ]
    deadline = time.monotonic() + timeout
    missing = checks
    while time.monotonic() < deadline:
        missing = [c for c in checks if not any(float(r["value"][1]) >= 8 for r in prom.query(c))]
        if not missing:
            return
        time.sleep(1)
    raise AssertionError(f"no data after {timeout}s for: {missing}\nprometheus targets: {prom.targets_up()}")


def _report(title: str, lines: list[str]) -> None:
    print(f"\n== {title} ({len(lines)})")
    for line in lines:
        print("  " + line)


# -- Grafana / Prometheus ---------------------------------------------------------------------


GRAFANA = [e for e in EXPRESSIONS if e.source in ("grafana", "grafana-variable")]


@pytest.mark.parametrize("via", ["collector", "direct"])
def test_every_grafana_expression_returns_data(stack: Stack, via: str) -> None:
    failures, allowed_empty, proven = [], [], 0
    for e in GRAFANA:
        if via == "direct" and "$via" not in e.expr:
            continue  # collector self-metrics: one path only, checked in the "collector" run
        rendered = e.rendered(dict(e.test_variables(), via=via))
        result = stack.prometheus.query(rendered)
        if result:
            proven += 1
        elif e.empty_when_healthy:
            allowed_empty.append(f"{e}: {e.empty_when_healthy}")
        else:
            failures.append(f"{e}\n    {rendered}")
    print(f"\n== Grafana expressions with data, via={via}: {proven}")
    _report(f"Grafana expressions empty (allowed), via={via}", allowed_empty)
    assert not failures, f"{len(failures)} expressions returned no data (via={via}):\n" + "\n".join(failures)
    assert proven > 60


def test_every_alert_rule_selector_has_data(stack: Stack, v3_parser: Path) -> None:
    rules = [e for e in EXPRESSIONS if e.source == "prometheus-rule"]
    assert all(e.empty_when_healthy == ALERT_CONDITION for e in rules)
    parsed = parse_v3(v3_parser, [e.rendered() for e in rules])
    failures, allowed_empty, checked = [], [], 0
    for e, result in zip(rules, parsed, strict=True):
        assert "error" not in result, f"{e}: {result['error']}"
        for selector in result["selectors"]:
            checked += 1
            if stack.prometheus.query(f"count(last_over_time({selector['text']}[5m]))"):
                continue
            why = only_when_wrong(selector["name"])
            (allowed_empty if why else failures).append(f"{e}: {selector['text']}" + (f": {why}" if why else ""))
    _report("alert rule selectors without data (allowed)", allowed_empty)
    assert not failures, "alert rule selectors without data:\n" + "\n".join(failures)
    assert checked >= 30


def test_alert_rules_evaluate_without_errors(stack: Stack) -> None:
    """Prometheus evaluated every rule on real data without an error (e.g. a duplicate label set)."""
    rules = stack.prometheus.rules()
    assert len(rules) == 15
    broken = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
    assert not broken, broken


# -- SigNoz -------------------------------------------------------------------------------------


def test_every_signoz_selector_matches_what_signoz_would_store(stack: Stack, v3_parser: Path) -> None:
    stored = signoz_series(stack.sink.file)
    assert len(stored) > 100
    exprs = [e for e in EXPRESSIONS if e.dialect == "signoz"]
    parsed = parse_v3(v3_parser, [e.rendered() for e in exprs])
    failures, allowed_empty, checked = [], [], 0
    for e, result in zip(exprs, parsed, strict=True):
        assert "error" not in result, f"{e}: {result['error']}"
        for selector in result["selectors"]:
            checked += 1
            if any(selector_matches(selector, labels) for labels in stored):
                continue
            why = only_when_wrong(selector["name"])
            (allowed_empty if why else failures).append(f"{e}: {selector['text']}" + (f": {why}" if why else ""))
    _report("SigNoz selectors without data (allowed)", allowed_empty)
    names = sorted({labels["__name__"] for labels in stored})
    assert not failures, "SigNoz selectors matching nothing SigNoz would store:\n" + "\n".join(failures) + (
        "\nstored names: " + ", ".join(names))
    assert checked > 100


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
