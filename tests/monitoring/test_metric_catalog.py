"""otel_trader/metric_catalog.py is what a real app emits, both ways.

One app uses every instrument: HTTP routes (and a 404), trading (orders, executions, positions,
PnL, websockets, rate limiter, a symbol over its label limit), a Redis pool monitor on a real
redis-server (an operation, a failing one, a health check), a metric helper over its cardinality
limit, span and log bursts into tiny SDK queues, and two Telegram reporters (one against the fake
Bot API: sent and suppressed; one against a closed port with a queue of one: failed and dropped).
Its ``/metrics`` is scraped and an in-memory OTel reader reads the same instruments. Then:

* every family ``/metrics`` serves is in the catalog, with its Prometheus type, label names,
  allowed values and description; every catalog entry of the app is served. The collector's own
  metrics come from another process and are checked on its real endpoints by test_data_e2e.py;
* every OTel metric has the catalog's instrument name, kind, unit, buckets and attribute keys;
* the code's constants (``trading.SIDES``, ``middleware.DURATION_BUCKETS``, …) are the catalog's.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from otel_trader import metric_catalog as mc

#: Helper-defined metric of the app below (user names are not in the catalog).
HELPER = "catalog_test_helper_total"
APP_SIDE = [m for m in mc.CATALOG if m.source != mc.COLLECTOR]


@dataclass
class Emitted:
    prometheus: str  # the /metrics text
    otel: list  # opentelemetry.sdk.metrics.export.Metric of every scope


async def _exercise(redis_url: str, telegram_url: str, closed_url: str) -> typing.Any:
    """Use every instrument once; returns the pool monitor (its gauges exist while it is open)."""
    import redis.asyncio

    import otel_trader
    from otel_trader import trading
    from otel_trader.telegram import TelegramErrorReporter
    from otel_trader.trading.redis_pool import RedisPoolMonitor
    from tests.telegram.fake_telegram import TOKEN

    trading.configure_trading(max_symbols=1)
    async with trading.order(strategy="grid", side="buy", exchange="okx", symbol="BTC-USDT") as order:
        order.set_status("filled")
    async with trading.order(strategy="grid", side="sell", exchange="okx", symbol="ETH-USDT") as order:
        order.set_status("rejected")  # ETH-USDT is the second symbol: __other__
    trading.set_open_positions("BTC-USDT", 1, strategy="grid")
    trading.add_realized_pnl("BTC-USDT", -2.5)
    trading.websocket_connected()
    trading.record_rate_limit("allowed")
    trading.record_rate_limit("limited")

    # Bot health: a feed, an order followed past its block, the kill switch, a risk limit, a
    # decision, balances, and the event-loop probe.
    assert trading.monitor_event_loop(interval=0.01) is not None
    feed = trading.feed("okx", "BTC-USDT@trade")
    feed.message(event_time=time.time() - 0.01, sequence=1)
    feed.message(sequence=3)
    feed.reconnected()
    async with trading.order(strategy="grid", side="buy", exchange="okx", symbol="BTC-USDT",
                             client_order_id="catalog-1", quantity=1.0, decision_price=100.0) as order:
        order.set_status("new")
    assert trading.order_filled("catalog-1", price=100.5, quantity=1.0)
    assert not trading.order_filled("catalog-ghost", price=1.0, quantity=1.0, exchange="okx")
    trading.halt("kill_switch")
    trading.resume()
    trading.risk_limit("daily_loss", maximum=100.0).set(10.0)
    trading.decision("grid")
    trading.set_balance("USDT", 100.0)
    trading.set_exposure("BTC", 50.0)
    await asyncio.sleep(0.1)  # a few loop probes

    # Exchange calls (what the ccxt integration records): a success, a failure, venue headers, skew.
    from otel_trader.trading import exchanges

    exchanges.record_call("binance", "create_order", 0.05)
    exchanges.record_call("binance", "fetch_balance", 0.2, "error", "RateLimitExceeded")
    exchanges.observe_response_headers("binance", {"X-MBX-USED-WEIGHT-1M": "120"}, "/api/v3/order")
    exchanges.record_clock_skew("binance", 0.3)
    # A WebSocket client: two sessions on one stream (a reconnect), messages both ways, closed.
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def ticks(ws: typing.Any) -> None:
        await ws.recv()
        await ws.send("tick")

    async with serve(ticks, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/btcusdt@trade"
        for _ in range(2):
            async with connect(url) as ws:
                await ws.send("subscribe")
                await ws.recv()
    await asyncio.sleep(0.05)  # connection_lost of the last close

    pool = redis.asyncio.ConnectionPool.from_url(redis_url, max_connections=4)
    client = redis.asyncio.Redis(connection_pool=pool)
    monitor = RedisPoolMonitor(pool, name="cache")
    async with monitor.operation("get"):
        await client.get("catalog-test")
    with pytest.raises(redis.RedisError):
        async with monitor.operation("eval"):
            await client.execute_command("NO_SUCH_COMMAND")
    await monitor.health_check()  # the PING latency gauge exists after a successful one
    await client.aclose()

    for i in range(5):  # the limit is 3 attribute sets
        otel_trader.record_counter(HELPER, attributes={"i": str(i)})
    for i in range(300):  # the SDK queues hold 4
        with otel_trader.trace_operation("catalog-burst"):
            logging.getLogger("catalog_test").warning("burst %d", i)

    reachable = TelegramErrorReporter(bot_token=TOKEN, chat_ids=["1001"], api_base_url=telegram_url)
    broken = TelegramErrorReporter(bot_token=TOKEN, chat_ids=["1001"], api_base_url=closed_url, queue_size=1,
                                   max_retries=0, timeout_seconds=0.5, retry_backoff_seconds=0.01)
    for reporter in (reachable, broken):
        await reporter.initialize()
    reachable.submit(RuntimeError("catalog test: sent"))
    reachable.submit(RuntimeError("catalog test: sent"))  # the same error again: suppressed
    for i in range(4):
        broken.submit(type(f"CatalogError{i}", (RuntimeError,), {})("catalog test: failed or dropped"))
    for reporter in (reachable, broken):
        await reporter.flush(timeout=5)
        await reporter.shutdown(timeout=2)
    assert reachable.stats["sent"] == 1 and reachable.stats["suppressed"] == 1, reachable.stats
    assert broken.stats["failed"] >= 1 and broken.stats["dropped"] >= 1, broken.stats
    return monitor


@pytest.fixture
def emitted(reset_otel: None, monkeypatch: pytest.MonkeyPatch, redis_server: typing.Any) -> Iterator[Emitted]:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_trader
    from otel_trader import trading
    from tests.conftest import free_port
    from tests.telegram.fake_telegram import FakeTelegramServer

    for name, value in {
        "TELEMETRY_ENABLED": "true", "SERVICE_NAME": "catalog-test", "ENVIRONMENT": "test",
        "TELEMETRY_EXPORTER": "none", "TELEMETRY_LOGS_ENABLED": "true", "TELEMETRY_METRIC_CARDINALITY_LIMIT": "3",
        "OTEL_BSP_MAX_QUEUE_SIZE": "4", "OTEL_BLRP_MAX_QUEUE_SIZE": "4",
    }.items():
        monkeypatch.setenv(name, value)
    reader = InMemoryMetricReader()
    # Batch processors (and so the SDK's self-metrics) need exporters: in memory here.
    otel_trader.configure(span_exporter=InMemorySpanExporter(), metric_readers=[reader],
                          log_exporter=InMemoryLogRecordExporter())
    app = FastAPI()

    @app.get("/orders/{symbol}")
    async def get_order(symbol: str) -> dict:
        return {"symbol": symbol}

    otel_trader.instrument_app(app)
    telegram = FakeTelegramServer().start()
    monitor = None
    try:
        monitor = asyncio.run(_exercise(redis_server.url, telegram.fake.url, f"http://127.0.0.1:{free_port()}"))
        with TestClient(app) as http:
            assert http.get("/orders/BTC-USDT").status_code == 200
            assert http.get("/no-such-route").status_code == 404
            text = http.get("/metrics").text
        data = reader.get_metrics_data()
        otel = [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
        yield Emitted(text, otel)
    finally:
        if monitor is not None:
            monitor.close()
        telegram.stop()
        trading.configure_trading()
        from otel_trader.trading import lifecycle as trading_lifecycle
        from otel_trader.trading import market_data as trading_feed
        from otel_trader.trading import risk as trading_risk

        trading_feed.configure_feeds()
        trading_lifecycle.configure_order_tracking()
        trading_risk.configure_risk()


def _families(text: str) -> dict[str, typing.Any]:
    """Exposition name (counters with ``_total``) -> prometheus_client family."""
    from prometheus_client.parser import text_string_to_metric_families

    return {f"{f.name}_total" if f.type == "counter" else f.name: f for f in text_string_to_metric_families(text)}


def _labels(family: typing.Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for sample in family.samples:
        for key, value in sample.labels.items():
            if not key.startswith("otel_scope_") and key != "le":
                out.setdefault(key, set()).add(value)
    return out


def test_every_served_family_is_in_the_catalog_and_every_app_entry_is_served(emitted: Emitted) -> None:
    served = set(_families(emitted.prometheus)) - {HELPER}
    listed = {m.prom for m in APP_SIDE}
    unlisted, unserved = sorted(served - listed), sorted(listed - served)
    assert not unlisted, f"served but not in otel_trader/metric_catalog.py (add a row there): {unlisted}"
    assert not unserved, f"in the catalog but not served by an app that uses every instrument: {unserved}"


def test_served_families_have_the_catalogs_type_labels_values_and_help(emitted: Emitted) -> None:
    catalog = mc.by_prom()
    problems = []
    for name, family in _families(emitted.prometheus).items():
        metric = catalog.get(name)
        if metric is None:  # not in the catalog: the test above names it
            continue
        if family.type != metric.prom_type:
            problems.append(f"{name}: type {family.type}, catalog {metric.prom_type}")
        labels = _labels(family)
        expected = set(metric.label_names)
        # target_info carries the resource: the catalog lists ours, OTEL_RESOURCE_ATTRIBUTES may add more
        if (not expected <= set(labels)) if name == "target_info" else set(labels) != expected:
            problems.append(f"{name}: labels {sorted(labels)}, catalog {sorted(expected)}")
        for label in metric.labels:
            unexpected = labels.get(label.name, set()) - set(label.values) - {"", mc.OVERFLOW}
            if label.values and unexpected:
                problems.append(f"{name}{{{label.name}}}: values {sorted(unexpected)} not in {label.values}")
        if name != "target_info" and family.documentation != metric.description:
            problems.append(f"{name}: HELP {family.documentation!r}, catalog {metric.description!r}")
    assert not problems, "\n".join(problems)


_DATA = {"counter": ("Sum", True), "updown": ("Sum", False), "gauge": ("Gauge", None), "histogram": ("Histogram", None)}
_KIND_DATA = {
    "Counter": "counter", "ObservableCounter": "counter", "UpDownCounter": "updown",
    "ObservableUpDownCounter": "updown", "Gauge": "gauge", "ObservableGauge": "gauge", "Histogram": "histogram",
}


def test_otel_instruments_have_the_catalogs_names_kinds_units_buckets_and_attributes(emitted: Emitted) -> None:
    by_otel = {m.otel: m for m in APP_SIDE}
    seen, problems = set(), []
    for point in emitted.otel:
        if point.name == HELPER:
            continue
        metric = by_otel.get(point.name)
        if metric is None:
            problems.append(f"OTel metric {point.name!r} is not a catalog instrument name")
            continue
        seen.add(point.name)
        data_type, monotonic = _DATA[_KIND_DATA[metric.kind]]
        if type(point.data).__name__ != data_type or (monotonic is not None and point.data.is_monotonic != monotonic):
            problems.append(f"{point.name}: {type(point.data).__name__} (monotonic "
                            f"{getattr(point.data, 'is_monotonic', '-')}), catalog {metric.kind}")
        if (point.unit or "") != metric.unit:
            problems.append(f"{point.name}: unit {point.unit!r}, catalog {metric.unit!r}")
        if metric.buckets and any(tuple(p.explicit_bounds) != metric.buckets for p in point.data.data_points):
            problems.append(f"{point.name}: buckets differ from the catalog's {metric.buckets}")
        keys = {key for p in point.data.data_points for key in p.attributes}
        if keys != {label.attribute or label.name for label in metric.labels}:
            problems.append(f"{point.name}: attributes {sorted(keys)}, catalog {[lb.name for lb in metric.labels]}")
    # target_info is made by the Prometheus exporter from the resource, not by an instrument
    missing = {m.otel for m in APP_SIDE if m.prom != "target_info"} - seen
    assert not problems and not missing, "\n".join(problems + [f"not read by the OTel reader: {sorted(missing)}"])


def test_the_codes_constants_are_the_catalogs() -> None:
    from otel_trader import trading
    from otel_trader.telegram.settings import TelegramSettings
    from otel_trader.trading import redis_pool
    from otel_trader.web import middleware

    catalog = mc.by_prom()
    assert catalog["orders_total"].label("side").values == trading.SIDES
    assert catalog["orders_total"].label("status").values == trading.ORDER_STATUSES
    assert catalog["trading_orders_executed_total"].label("result").values == trading.RESULTS
    assert catalog["rate_limit_requests_total"].label("status").values == trading.RATE_LIMIT_STATUSES
    assert catalog["trading_execution_duration_seconds"].buckets == trading.EXECUTION_BUCKETS
    assert catalog["http_request_duration_seconds"].buckets == middleware.DURATION_BUCKETS
    assert set(catalog["http_requests_total"].label("method").values) == {*middleware._KNOWN_METHODS, "_OTHER"}
    assert catalog["redis_operation_duration_seconds"].buckets == redis_pool.OPERATION_BUCKETS
    levels = typing.get_args(TelegramSettings.model_fields["min_level"].annotation)
    assert catalog["otel_trader_error_reports_total"].label("level").values == levels
    assert mc.OVERFLOW == trading.OVERFLOW_VALUE
    from otel_trader.trading import lifecycle as trading_lifecycle
    from otel_trader.trading import loop_health
    from otel_trader.trading import market_data as trading_feed

    assert catalog["market_data_lag_seconds"].buckets == trading_feed.LAG_BUCKETS
    assert catalog["order_ack_latency_seconds"].buckets == trading_lifecycle.ACK_LATENCY_BUCKETS
    assert catalog["order_fill_latency_seconds"].buckets == trading_lifecycle.FILL_LATENCY_BUCKETS
    assert catalog["order_slippage_bps"].buckets == trading_lifecycle.SLIPPAGE_BUCKETS_BPS
    assert catalog["order_price_improvement_bps"].buckets == trading_lifecycle.SLIPPAGE_BUCKETS_BPS
    assert catalog["asyncio_event_loop_lag_seconds"].buckets == loop_health.LAG_BUCKETS


def test_the_catalog_is_consistent() -> None:
    """Unique names; Prometheus names follow from the OTel names as the exporters write them."""
    assert len({m.prom for m in mc.CATALOG}) == len(mc.CATALOG)
    assert len({m.otel for m in mc.CATALOG}) == len(mc.CATALOG)
    for metric in mc.CATALOG:
        assert metric.kind in mc.KINDS and metric.group and metric.description, metric.prom
        assert bool(metric.buckets) == (metric.prom_type == "histogram") or metric.source == mc.COLLECTOR, metric.prom
        if metric.source == mc.COLLECTOR:
            continue  # the collector's own exposition (units appended) is checked on real data by test_data_e2e.py
        expected = metric.otel.replace(".", "_")
        if metric.prom_type == "counter" and not expected.endswith("_total"):
            expected += "_total"
        assert metric.prom == expected, f"{metric.otel} is exposed as {expected}, the catalog says {metric.prom}"
