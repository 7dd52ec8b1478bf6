"""The demo trading API in-process (TestClient) against a real mock exchange, Redis and database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from otel_trader import trading
from otel_trader.demo.api import PositionRow, apply_fill, async_database_url
from otel_trader.demo.processes import free_port, http_get
from otel_trader.demo.summary import histogram_quantile, parse


@pytest.fixture(scope="module")
def exchange_url() -> Iterator[str]:
    """The mock exchange as its own uvicorn process (no telemetry, no random failures)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_"))}
    for name in ("ERROR_RATE", "RATE_LIMIT_RATE", "TIMESTAMP_ERROR_RATE"):
        env[f"MOCK_EXCHANGE_{name}"] = "0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "otel_trader.demo.exchange:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_get(f"{url}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "mock exchange did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(autouse=True)
def fresh_trading_state() -> Iterator[None]:
    trading.configure_trading()
    yield
    trading.configure_trading()


def _values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in parse(text) if s.name == name}


def _client(monkeypatch, exchange_url: str, database_url: str, redis_url: str | None = None, **env: str) -> TestClient:
    monkeypatch.setenv("EXCHANGE_URL", exchange_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    if redis_url:
        monkeypatch.setenv("REDIS_URL", redis_url)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    # Exact order counts below: the demo bot's own orders would add to them (tests/demo/test_demo_bot.py).
    monkeypatch.setenv("DEMO_BOT", "false")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from otel_trader.demo.api import create_app

    return TestClient(create_app(), raise_server_exceptions=False)


def _order_flow(client: TestClient) -> None:
    buy = client.post("/orders", json={"symbol": "BTC-USDT", "side": "buy", "quantity": 0.01, "strategy": "grid"})
    assert buy.status_code == 201, buy.text
    order = buy.json()
    assert order["status"] == "filled" and order["price"] > 0
    sell = client.post("/orders", json={"symbol": "BTC-USDT", "side": "sell", "quantity": 0.01, "strategy": "grid"})
    assert sell.json()["status"] == "filled"
    rejected = client.post("/orders", json={"symbol": "XRP-USDT", "side": "buy", "quantity": 1})
    assert rejected.status_code == 201 and rejected.json()["status"] == "rejected"
    assert rejected.json()["reason"] == "Market is closed."  # the venue's own message
    too_big = client.post("/orders", json={"symbol": "BTC-USDT", "side": "buy", "quantity": 100})
    assert too_big.json()["status"] == "rejected"
    invalid = client.post("/orders", json={"symbol": "BTC-USDT", "side": "hold", "quantity": 1})
    assert invalid.status_code == 422
    assert client.get(f"/orders/{order['id']}").json()["id"] == order["id"]
    assert client.get("/orders/nope").status_code == 404
    assert client.get("/positions").json() == []  # bought and sold the same quantity
    pnl = client.get("/pnl").json()
    assert set(pnl["realized"]) == {"BTC-USDT"}

    text = client.get("/metrics").text
    assert _values(text, "orders_total") == {
        (("exchange", "mock"), ("side", "buy"), ("status", "filled")): 1.0,
        (("exchange", "mock"), ("side", "sell"), ("status", "filled")): 1.0,
        (("exchange", "mock"), ("side", "buy"), ("status", "rejected")): 2.0,
    }
    executed = _values(text, "trading_orders_executed_total")
    assert executed[(("result", "rejected"), ("side", "buy"), ("strategy", "demo"))] == 2.0
    assert sum(_values(text, "trading_execution_duration_seconds_count").values()) == 4.0
    # realized_pnl shows exactly what the database says (whatever its sign).
    assert _values(text, "realized_pnl")[(("symbol", "BTC-USDT"),)] == pytest.approx(pnl["total"])
    assert _values(text, "positions_open")[(("symbol", "BTC-USDT"),)] == 0.0
    assert _values(text, "http_requests_total")[(("method", "POST"), ("path", "/orders"), ("status", "422"))] == 1.0


@pytest.mark.timeout(60)
def test_orders_sqlite_with_redis_cache(telemetry, monkeypatch, exchange_url, redis_server, tmp_path):
    with _client(monkeypatch, exchange_url, f"sqlite:///{tmp_path / 'demo.db'}", redis_server.url) as client:
        _order_flow(client)
        first = client.post("/orders", json={"symbol": "ETH-USDT", "side": "buy", "quantity": 0.1}).json()
        assert client.get(f"/orders/{first['id']}").json()["cached"] is True  # from Redis
        text = client.get("/metrics").text
        # (monitors of apps from other tests may still be alive under other pool names)
        assert _values(text, "redis_pool_max_connections")[(("pool", "cache"),)] == 20.0
        operations = _values(text, "redis_operation_duration_seconds_count")
        assert operations[(("operation", "set"), ("pool", "cache"))] >= 5
        health = client.get("/health").json()
        assert health["status"] == "healthy" and set(health["checks"]) == {"redis", "db"}
    # The orders really are in the SQLite file.
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("select count(*) from demo_orders")).scalar() == 5
    spans = {s.name for s in telemetry.finished_spans()}
    # server, order, ccxt call and its aiohttp client span
    assert {"POST /orders", "trading.order", "ccxt.mock.create_order", "POST /api/v3/order"} <= spans


@pytest.mark.timeout(90)
def test_orders_postgresql(telemetry, monkeypatch, exchange_url, postgres_url):
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")  # as users write it
    assert async_database_url(url).startswith("postgresql+psycopg://")
    with _client(monkeypatch, exchange_url, url) as client:
        engine = sqlalchemy.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("delete from demo_orders"))
            conn.execute(sqlalchemy.text("delete from demo_positions"))
        _order_flow(client)
        assert client.get("/health/db").json()["checks"]["db"]["dialect"] == "postgresql"
    with engine.connect() as conn:
        statuses = conn.execute(sqlalchemy.text("select status, count(*) from demo_orders group by status")).all()
    assert dict(statuses) == {"filled": 2, "rejected": 2}


@pytest.mark.timeout(60)
def test_rate_limiter_counts_allowed_and_limited(telemetry, monkeypatch, exchange_url, tmp_path):
    with _client(monkeypatch, exchange_url, f"sqlite:///{tmp_path / 'd.db'}",
                 DEMO_RATE_LIMIT_BURST="3", DEMO_RATE_LIMIT_PER_SEC="0.001") as client:
        codes = [client.get("/positions", headers={"X-Client-Id": "bot"}).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        assert client.get("/positions", headers={"X-Client-Id": "other"}).status_code == 200
        assert client.get("/random_sleep").status_code == 200  # not rate limited
        text = client.get("/metrics").text
    assert _values(text, "rate_limit_requests_total") == {(("status", "allowed"),): 4.0, (("status", "limited"),): 2.0}


@pytest.mark.timeout(60)
def test_websocket_updates_websocket_connections(telemetry, monkeypatch, exchange_url, tmp_path):
    with _client(monkeypatch, exchange_url, f"sqlite:///{tmp_path / 'd.db'}") as client:
        with client.websocket_connect("/ws/prices?count=200&interval=0.01") as ws:
            tick = ws.receive_json()
            assert tick["symbol"] in {"BTC-USDT", "ETH-USDT", "SOL-USDT", "DOGE-USDT"} and tick["price"] > 0
            assert _values(client.get("/metrics").text, "websocket_connections") == {(): 1.0}
        deadline = time.monotonic() + 5  # the server notices the close on its next send
        while _values(client.get("/metrics").text, "websocket_connections") != {(): 0.0}:
            assert time.monotonic() < deadline, "websocket_connections did not go back to 0"
            time.sleep(0.05)


@pytest.mark.timeout(60)
def test_test_error_and_random_sleep(telemetry, monkeypatch, exchange_url, tmp_path):
    with _client(monkeypatch, exchange_url, f"sqlite:///{tmp_path / 'd.db'}", DEMO_MAX_SLEEP="0.05") as client:
        assert client.get("/test-error").status_code == 500
        assert client.get("/random_sleep").json()["slept"] <= 0.05
        text = client.get("/metrics").text
    requests = _values(text, "http_requests_total")
    assert requests[(("method", "GET"), ("path", "/test-error"), ("status", "500"))] == 1.0
    assert requests[(("method", "GET"), ("path", "/random_sleep"), ("status", "200"))] == 1.0


def test_apply_fill_realizes_losses_and_profits():
    position = PositionRow(strategy="s", symbol="BTC-USDT", quantity=0.0, avg_price=0.0, realized_pnl=0.0)
    assert apply_fill(position, "buy", 2.0, 100.0) == 0.0
    assert apply_fill(position, "buy", 2.0, 200.0) == 0.0
    assert position.avg_price == 150.0
    assert apply_fill(position, "sell", 1.0, 120.0) == pytest.approx(-30.0)  # a loss is negative
    assert apply_fill(position, "sell", 5.0, 160.0) == pytest.approx(30.0)  # closes 3 at +10, opens a short
    assert position.quantity == -2.0 and position.avg_price == 160.0
    assert apply_fill(position, "buy", 2.0, 170.0) == pytest.approx(-20.0)  # the short loses
    assert position.quantity == 0.0 and position.realized_pnl == pytest.approx(-20.0)


def test_histogram_quantile_matches_promql():
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (float("inf"), 40.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (20 - 10) / 20)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1 * 10 / 10)
    assert histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 2.0)]) == 1.0  # +Inf bucket: last bound
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None
