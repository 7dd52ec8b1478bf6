"""An application's own prometheus_client metrics next to ours: never a duplicate family.

The guides define ``trading_orders_executed_total`` with prometheus_client, and otel-trader's
trading metrics emit the same name. /metrics must list each family once (checked with the real
``promtool check metrics``), keep the application's, and say so once. A second ``/metrics`` the
application mounts itself is not silently shadowed.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections import Counter as Tally

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, Counter, make_asgi_app

import otel_trader
from otel_trader import trading


@pytest.fixture
def own_metrics():
    created: list[object] = []

    def make(*args: object, **kwargs: object) -> Counter:
        metric = Counter(*args, **kwargs)  # type: ignore[arg-type]
        created.append(metric)
        return metric

    yield make
    for metric in created:
        REGISTRY.unregister(metric)  # type: ignore[arg-type]


def families(text: str) -> Tally[str]:
    return Tally(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE "))


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: run `make system-deps`")
    return subprocess.run([binary, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)


def test_the_guides_own_counter_and_ours_give_one_family(telemetry, own_metrics, caplog):
    seed_counter = own_metrics(
        "trading_orders_executed_total", "Total number of orders executed", ["strategy", "side", "result"]
    )
    seed_counter.labels("grid", "buy", "success").inc(3)
    trading.record_order(side="buy", status="filled", exchange="okx", strategy="grid")
    app = otel_trader.instrument_app(FastAPI())
    with caplog.at_level(logging.WARNING, logger="otel_trader"), TestClient(app) as client:
        text = client.get("/metrics").text
        client.get("/metrics")
    counts = families(text)
    assert counts["trading_orders_executed_total"] == 1 or counts["trading_orders_executed"] == 1
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
    assert 'trading_orders_executed_total{result="success",side="buy",strategy="grid"} 3.0' in text
    assert 'orders_total{' in text  # the rest of ours is still there
    result = promtool_check(text)
    assert "second HELP" not in result.stdout + result.stderr, result.stdout + result.stderr
    warned = [r.getMessage() for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING]
    assert len([w for w in warned if "trading_orders_executed" in w]) == 1, warned


def test_a_clash_with_the_middleware_names_is_found_at_start_up(telemetry, own_metrics, caplog):
    own_metrics("http_requests_total", "the app's own", ["method", "endpoint"])
    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        otel_trader.instrument_app(FastAPI())
    warned = [r.getMessage() for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING]
    assert any("http_requests_total" in w for w in warned), warned


def test_an_own_metrics_mount_is_not_shadowed_silently(telemetry, caplog):
    app = FastAPI()
    app.mount("/metrics", make_asgi_app())

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        otel_trader.instrument_app(app)
    warned = [r.getMessage() for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING]
    assert any("already serves /metrics" in w for w in warned), warned
    with TestClient(app) as client:
        client.get("/ping")
        text = client.get("/metrics/").text
    assert "http_requests_total{" in text  # the app's mount shows ours too: one registry
    assert all(n == 1 for n in families(text).values())
