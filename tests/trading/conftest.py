"""Helpers for the trading/redis/health tests: Prometheus samples without OTel's scope labels."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from promsamples import parse_samples

from otel_trader import trading

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
    """Every test starts with no positions, PnL, websockets or seen label values."""
    trading.configure_trading()
    yield
    trading.configure_trading()


def _root_conftest() -> Any:
    # tests/conftest.py is not importable by name here (every conftest module is "conftest").
    spec = importlib.util.spec_from_file_location("_otel_trader_root_conftest", Path(__file__).parents[1] / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    return module


@pytest.fixture
def private_redis() -> Iterator[Any]:
    """A redis-server of this test only (tests/conftest.py's start_redis), stopped at the end."""
    server = _root_conftest().start_redis()
    yield server
    server.stop()
