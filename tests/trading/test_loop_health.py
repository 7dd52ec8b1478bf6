"""Event-loop health: lag histogram from a real loop, blocked-loop warnings with the blocker's trace id."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import otel_trader
from otel_trader import trading
from otel_trader.trading import loop_health
from tests.trading.promsamples import key


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "event loop has been blocked" in r.getMessage()]


def test_a_blocking_task_is_reported_with_its_trace_id(telemetry, samples, caplog):
    seen: dict[str, str] = {}

    def parse_tick() -> None:
        time.sleep(0.4)  # a synchronous call in a coroutine: holds the loop

    async def handler() -> None:
        with otel_trader.trace_operation("on_message") as span:
            seen["trace_id"] = format(span.get_span_context().trace_id, "032x")
            await asyncio.sleep(0.1)
            parse_tick()
            await asyncio.sleep(0.1)

    async def main() -> None:
        monitor = loop_health.monitor_event_loop(interval=0.05, block_threshold=0.1)
        assert monitor is not None and monitor.running
        await asyncio.sleep(0.2)
        await asyncio.create_task(handler(), name="ws-reader")
        await asyncio.sleep(0.2)
        monitor.stop(timeout=1.0)

    with caplog.at_level("WARNING", logger="otel_trader"):
        asyncio.run(main())
    (record,) = _warnings(caplog)
    text = record.getMessage()
    assert "task 'ws-reader'" in text
    assert f"trace_id={seen['trace_id']}" in text
    assert "parse_tick" in text and "time.sleep(0.4)" in text  # the innermost frames
    assert record.trace_id == seen["trace_id"]  # emitted in the blocked task's context
    assert record.threadName == "otel-trader-loop-monitor"

    count = samples("asyncio_event_loop_lag_seconds_count")[()]
    buckets = samples("asyncio_event_loop_lag_seconds_bucket")
    # The 0.4 s block: one probe saw ~0.3 s or more, and the probes it held back are counted too
    # (~0.25, 0.2, ...), so the block weighs by its length.
    assert count - buckets[key(le="0.25")] >= 1
    assert count - buckets[key(le="0.1")] >= 4
    assert samples("asyncio_event_loop_lag_seconds_sum")[()] >= 0.8
    assert buckets[key(le="0.01")] >= 5  # the idle probes answered at once


def test_a_healthy_loop_warns_nothing(telemetry, samples, caplog):
    async def main() -> None:
        monitor = loop_health.monitor_event_loop(interval=0.02, block_threshold=0.1)
        assert monitor is not None
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert monitor.blocks == 0 and monitor.probes >= 5

    with caplog.at_level("WARNING", logger="otel_trader"):
        asyncio.run(main())
    assert not _warnings(caplog)
    count = samples("asyncio_event_loop_lag_seconds_count")[()]
    assert count >= 5
    assert samples("asyncio_event_loop_lag_seconds_bucket")[key(le="0.05")] == count


def test_a_blocking_callback_outside_any_task(telemetry, caplog):
    async def main() -> None:
        loop_health.monitor_event_loop(interval=0.05, block_threshold=0.05)
        await asyncio.sleep(0.1)
        asyncio.get_running_loop().call_soon(time.sleep, 0.2)
        await asyncio.sleep(0.3)

    with caplog.at_level("WARNING", logger="otel_trader"):
        asyncio.run(main())
    (record,) = _warnings(caplog)
    assert "a callback outside any task" in record.getMessage()
    assert "trace_id=" not in record.getMessage()


def test_repeated_blocks_are_throttled_per_place(telemetry, caplog):
    async def hot_loop() -> None:
        for _ in range(4):
            time.sleep(0.1)
            await asyncio.sleep(0.05)

    async def elsewhere() -> None:
        time.sleep(0.1)

    async def main() -> loop_health.LoopMonitor:
        monitor = loop_health.monitor_event_loop(interval=0.02, block_threshold=0.03)
        assert monitor is not None
        await asyncio.create_task(hot_loop())
        await asyncio.create_task(elsewhere())
        return monitor

    with caplog.at_level("WARNING", logger="otel_trader"):
        monitor = asyncio.run(main())
    assert monitor.blocks >= 4
    warnings = _warnings(caplog)
    # One per place per WARN_EVERY_SECONDS: hot_loop's repeats are held back, elsewhere still shows.
    assert len(warnings) == 2
    assert "in hot_loop" in warnings[0].getMessage() and "in elsewhere" in warnings[1].getMessage()


def test_the_monitor_ends_with_its_loop(telemetry):
    async def main() -> loop_health.LoopMonitor:
        monitor = loop_health.monitor_event_loop(interval=0.02)
        assert monitor is not None
        assert loop_health.monitor_event_loop() is monitor  # one per loop
        await asyncio.sleep(0.05)
        return monitor

    monitor = asyncio.run(main())
    deadline = time.monotonic() + 2
    while monitor.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not monitor.running


def test_instrument_app_and_feeds_start_it(telemetry):
    app = FastAPI()
    otel_trader.instrument_app(app)
    seen: list[int] = []

    @app.get("/monitors")
    async def monitors() -> int:
        return len(loop_health.monitors())

    with TestClient(app) as client:
        seen.append(client.get("/monitors").json())
    assert seen == [1]

    async def bot() -> int:
        trading.feed("binance", "BTC-USDT@trade")
        return len(loop_health.monitors())

    assert asyncio.run(bot()) >= 1


def test_switched_off_or_without_telemetry(reset_otel, monkeypatch):
    async def probe() -> object:
        trading.feed("binance", "BTC-USDT@trade")
        return loop_health.monitor_event_loop()

    assert asyncio.run(probe()) is None  # no MeterProvider: nothing started
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_EXPORTER", "none")
    monkeypatch.setenv("TELEMETRY_LOOP_MONITOR", "false")
    otel_trader.get_telemetry_manager()
    assert asyncio.run(probe()) is None
    with pytest.raises(RuntimeError, match="running event loop"):
        loop_health.monitor_event_loop()


def test_under_uvloop_the_trace_id_comes_from_the_task(telemetry, caplog):
    """uvloop (what uvicorn runs on when installed) has compiled handles: no Handle._run frame."""
    import uvloop

    seen: dict[str, str] = {}

    async def handler() -> None:
        with otel_trader.trace_operation("on_fill") as span:
            seen["trace_id"] = format(span.get_span_context().trace_id, "032x")
            time.sleep(0.3)

    async def main() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        loop_health.monitor_event_loop(interval=0.05, block_threshold=0.1)
        await asyncio.sleep(0.1)
        await asyncio.create_task(handler(), name="fills")
        await asyncio.sleep(0.1)

    loop = uvloop.new_event_loop()
    try:
        with caplog.at_level("WARNING", logger="otel_trader"):
            loop.run_until_complete(main())
    finally:
        loop.close()
    (record,) = _warnings(caplog)
    assert "task 'fills'" in record.getMessage()
    assert f"trace_id={seen['trace_id']}" in record.getMessage()
    assert record.trace_id == seen["trace_id"]
    assert "time.sleep(0.3)" in record.getMessage()
