"""Helpers for the trading/redis/health tests: Prometheus samples without OTel's scope labels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from otel_trader import trading
from otel_trader.trading import redis_pool
from tests.conftest import start_redis
from tests.trading.promsamples import parse_samples

Sampler = Callable[..., dict[tuple[tuple[str, str], ...], float]]


@pytest.fixture
def samples(telemetry) -> Sampler:  # type: ignore[no-untyped-def]
    """``samples("orders_total")`` → {sorted label items: value} from a fresh scrape."""

    def get(name: str, text: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
        body = telemetry.scrape() if text is None else text
        return {
            tuple(sorted(labels.items())): value
            for sample, labels, value in parse_samples(body)
            if sample == name
        }

    return get


@pytest.fixture(autouse=True)
def fresh_trading_state() -> Iterator[None]:
    """Every test starts with no positions, PnL, websockets, seen label values or pool monitors."""
    trading.configure_trading()
    # A monitor another test (or the demo app) left open would still be observed, under
    # whatever pool name it had.
    for monitor in redis_pool._live_monitors():
        monitor.close()
    yield
    trading.configure_trading()


@pytest.fixture
def private_redis() -> Iterator[Any]:
    """A redis-server of this test only (tests/conftest.py's start_redis), stopped at the end."""
    server = start_redis()
    yield server
    server.stop()
