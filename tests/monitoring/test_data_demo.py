"""The demo load (``otel_trader.demo``) through app -> collector -> Prometheus: every expression
of every dashboard and alert rule finds data, except an explicit list with reasons.

The demo's own processes (its trading API and mock exchange, uvicorn factories) and its load
generator (:func:`otel_trader.demo.load.run_load`), wired into the stack of :mod:`stack`
instead of the demo runner's, so Prometheus can scrape them:

    run_load --HTTP/WebSocket--> demo trading API (service.name trader-api: README convention)
    demo trading API --HTTP--> demo mock exchange (mock-exchange)
    both --OTLP--> otelcol-trader --> sink;  Prometheus <-- collector :8889/:8888, API /metrics

The demo is a healthy run: what only a problem produces (SDK queue overflows, Telegram
reports, collector enqueue failures) stays empty here and is proven by test_data_e2e.py and
test_data_e2e_outage.py, which provoke it.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from promql import extract_all
from stack import (
    API_SERVICE,
    Stack,
    check_alert_selectors,
    check_grafana,
    check_signoz,
    start_uvicorn,
    telemetry_env,
)

from otel_trader.demo import EXCHANGE_SERVICE
from otel_trader.demo.load import Progress, run_load

EXPRESSIONS = extract_all()
GRAFANA = [e for e in EXPRESSIONS if e.source in ("grafana", "grafana-variable")]
RULES = [e for e in EXPRESSIONS if e.source == "prometheus-rule"]
SIGNOZ = [e for e in EXPRESSIONS if e.dialect == "signoz"]

#: Selectors (pattern searched in the selector text) that only a problem fills; the demo has none.
HEALTHY_RUN_EMPTY = {
    re.compile(r"otelcol_exporter_enqueue_failed_"):
        "enqueue_failed_* exists once a batch did not fit in the collector's queue (test_data_e2e_outage.py)",
    re.compile(r'error_type="queue_full"|"error.type"="queue_full"'):
        "the demo's SDK queues never overflow (test_data_e2e.py overflows them)",
    re.compile(r"otel_trader_error_reports"):
        "the demo runs without the Telegram reporter (test_data_e2e.py drives it)",
}


def _drive(url: str, stop: threading.Event) -> None:
    """The demo's load in 3-second rounds until `stop` (each round bounded by run_load's duration)."""
    seed = 0
    while not stop.is_set():
        seed += 1
        asyncio.run(run_load(url, requests=None, duration=3.0, concurrency=4, seed=seed, burst_capacity=20,
                             websockets=2, progress=Progress(None, 3.0, stream=io.StringIO())))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, redis_server) -> Iterator[Stack]:
    stack = Stack.start_pipeline(tmp_path_factory.mktemp("monitoring-demo"))
    stop = threading.Event()
    load = None
    try:
        common = {"SERVICE_VERSION": "demo", "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": "true"}
        exchange = stack.apps["exchange"] = start_uvicorn(
            stack.tmp, "mock-exchange", "otel_trader.demo.exchange:create_app",
            telemetry_env(stack.collector, EXCHANGE_SERVICE, **common), factory=True, ready_path="/health")
        api = stack.apps["api"] = start_uvicorn(
            stack.tmp, "trading-api", "otel_trader.demo.api:create_app",
            telemetry_env(stack.collector, API_SERVICE, **common,
                          EXCHANGE_URL=exchange.url,
                          DATABASE_URL=f"sqlite:///{stack.tmp / 'demo.db'}",
                          DEMO_RATE_LIMIT_BURST="20",
                          DEMO_RATE_LIMIT_PER_SEC="20",
                          REDIS_URL=redis_server.url),
            factory=True, ready_path="/health", ready=(200, 503))
        stack.start_prometheus(api)
        load = threading.Thread(target=_drive, args=(api.url, stop), daemon=True)
        load.start()
        stack.wait_for([
            'count_over_time(http_requests_total{via="collector", job="trader-api"}[1m])',
            'count_over_time(http_requests_total{via="direct", job="trader-api"}[1m])',
            'count_over_time(orders_total{via="collector", job="trader-api"}[1m])',
            # the limiter refuses only once a round's burst exceeds its bucket
            'count_over_time(rate_limit_requests_total{via="collector", job="trader-api", status="limited"}[1m])',
            'count_over_time(otelcol_exporter_sent_spans_total{job="otel-collector-self"}[1m])',
        ])
        yield stack
    finally:
        stop.set()
        if load is not None:
            load.join(15)
        stack.stop()


@pytest.mark.parametrize("via", ["collector", "direct"])
def test_demo_fills_every_grafana_expression(demo: Stack, via: str) -> None:
    outcome = check_grafana(demo.prometheus, GRAFANA, via)
    outcome.report(f"demo: Grafana expressions, via={via}")
    assert not outcome.failures, f"{len(outcome.failures)} expressions without data under the demo load (via={via}):\n" + "\n".join(outcome.failures)


def test_demo_fills_every_alert_rule_selector(demo: Stack, v3_parser: Path) -> None:
    outcome = check_alert_selectors(demo.prometheus, RULES, v3_parser, HEALTHY_RUN_EMPTY)
    outcome.report("demo: alert rule selectors")
    assert not outcome.failures, "alert rule selectors without data under the demo load:\n" + "\n".join(outcome.failures)


def test_demo_fills_every_signoz_selector(demo: Stack, v3_parser: Path) -> None:
    outcome = check_signoz(demo.sink.file, SIGNOZ, v3_parser, HEALTHY_RUN_EMPTY, lambda e: e.empty_when_healthy)
    outcome.report("demo: SigNoz selectors")
    assert not outcome.failures, "SigNoz selectors without data under the demo load:\n" + "\n".join(outcome.failures)
