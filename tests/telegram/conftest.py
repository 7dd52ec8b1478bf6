"""Fixtures for the Telegram reporter tests: the fake Bot API server and a clean process reporter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from otel_trader.telegram import set_error_reporter

from .fake_telegram import FakeTelegram, FakeTelegramServer

T = TypeVar("T")


@pytest.fixture(scope="session")
def telegram_server() -> Iterator[FakeTelegramServer]:
    server = FakeTelegramServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_telegram(telegram_server: FakeTelegramServer, reset_otel: None) -> Iterator[FakeTelegram]:
    """The fake Bot API, reset; no process reporter before or after the test."""
    telegram_server.fake.reset()
    set_error_reporter(None)
    yield telegram_server.fake
    set_error_reporter(None)


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    """Run ``coro`` on a fresh event loop with a deadline."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll ``condition`` on the loop until true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
