"""Trading metrics: exact Prometheus names and labels, label checks, symbol overflow, negative PnL."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest
from opentelemetry.trace import StatusCode

from otel_trader import LabelValueError, trading
from tests.trading.promsamples import families, key, parse_samples


def test_order_context_counts_times_and_spans(telemetry, samples):
    with trading.order(strategy="grid", side="buy", exchange="okx", symbol="BTC-USDT"):
        pass
    with trading.order(strategy="grid", side="SELL", exchange="okx", symbol="ETH-USDT") as o:
        o.set_status("rejected")
    with (
        pytest.raises(RuntimeError),
        trading.order(strategy="grid", side="buy", exchange="okx", symbol="BTC-USDT") as o,
    ):
        o.set_status("filled")
        raise RuntimeError("exchange down")

    assert samples("orders_total") == {
        key(side="buy", status="filled", exchange="okx"): 1.0,
        key(side="sell", status="rejected", exchange="okx"): 1.0,
        key(side="buy", status="error", exchange="okx"): 1.0,
    }
    assert samples("trading_orders_executed_total") == {
        key(strategy="grid", side="buy", result="success"): 1.0,
        key(strategy="grid", side="sell", result="rejected"): 1.0,
        key(strategy="grid", side="buy", result="error"): 1.0,
    }
    assert samples("trading_execution_duration_seconds_count") == {key(strategy="grid", exchange="okx"): 3.0}
    buckets = samples("trading_execution_duration_seconds_bucket")
    assert sorted(float(dict(k)["le"]) for k in buckets) == [0.1, 0.5, 1, 2, 5, 10, float("inf")]
    assert 'le="10.0"' in telemetry.scrape()  # the parser above normalises; the text has the bounds too

    spans = [s for s in telemetry.finished_spans() if s.name == "trading.order"]
    assert [s.attributes["trading.order.status"] for s in spans] == ["filled", "rejected", "error"]
    assert spans[0].attributes["trading.symbol"] == "BTC-USDT"
    assert spans[2].status.status_code is StatusCode.ERROR
    assert spans[1].status.status_code is not StatusCode.ERROR  # a rejection is an outcome, not a fault


def test_async_order_context(telemetry, samples):
    async def place() -> None:
        async with trading.order(strategy="s1", side="buy", exchange="binance", symbol="SOL-USDT") as o:
            await asyncio.sleep(0.12)
            o.set_status("partially_filled")

    asyncio.run(place())
    assert samples("orders_total") == {key(side="buy", status="partially_filled", exchange="binance"): 1.0}
    buckets = samples("trading_execution_duration_seconds_bucket")
    assert buckets[key(strategy="s1", exchange="binance", le="0.1")] == 0.0
    assert buckets[key(strategy="s1", exchange="binance", le="0.5")] == 1.0


def test_prometheus_types_and_names(telemetry):
    with trading.order(strategy="grid", side="buy", exchange="okx", symbol="BTC-USDT"):
        pass
    trading.set_open_positions("BTC-USDT", 1, strategy="grid")
    trading.add_realized_pnl("BTC-USDT", 1.0)
    trading.record_rate_limit("allowed")
    with trading.websocket_connection():
        text = telemetry.scrape()
    kinds = families(text)
    # prometheus_client's parser names counter families without the _total suffix.
    assert kinds["orders"] == "counter"
    assert kinds["trading_orders_executed"] == "counter"
    assert kinds["rate_limit_requests"] == "counter"
    assert kinds["trading_execution_duration_seconds"] == "histogram"
    for gauge in ("positions_open", "trading_current_positions", "realized_pnl", "websocket_connections"):
        assert kinds[gauge] == "gauge", gauge
    names = {name for name, _, _ in parse_samples(text)}
    for wrong in ("realized_pnl_total", "websocket_connections_total", "realized_pnl_USD"):
        assert wrong not in names


def test_realized_pnl_goes_negative(telemetry, samples):
    trading.add_realized_pnl("BTC-USDT", 10.0)
    trading.add_realized_pnl("BTC-USDT", -25.5)
    trading.add_realized_pnl("ETH-USDT", -1000.25)
    assert samples("realized_pnl") == {key(symbol="BTC-USDT"): -15.5, key(symbol="ETH-USDT"): -1000.25}
    assert "realized_pnl{" in telemetry.scrape() and "-1000.25" in telemetry.scrape()
    # The documented daily-loss alert, sum(realized_pnl) < -1000, would fire:
    assert sum(samples("realized_pnl").values()) < -1000
    trading.reset_realized_pnl()
    assert set(samples("realized_pnl").values()) == {0.0}


def test_positions_sum_over_strategies(telemetry, samples):
    trading.set_open_positions("BTC-USDT", 2, strategy="grid")
    trading.set_open_positions("BTC-USDT", 1, strategy="rsi")
    trading.set_open_positions("ETH-USDT", 1)
    assert samples("positions_open") == {key(symbol="BTC-USDT"): 3.0, key(symbol="ETH-USDT"): 1.0}
    assert samples("trading_current_positions") == {
        key(strategy="grid", symbol="BTC-USDT"): 2.0,
        key(strategy="rsi", symbol="BTC-USDT"): 1.0,
        key(strategy="default", symbol="ETH-USDT"): 1.0,
    }
    trading.set_open_positions("BTC-USDT", 0, strategy="grid")
    assert samples("positions_open")[key(symbol="BTC-USDT")] == 1.0


def test_websocket_connections_gauge(telemetry, samples):
    with trading.websocket_connection(), trading.websocket_connection():
        assert samples("websocket_connections") == {(): 2.0}
    assert samples("websocket_connections") == {(): 0.0}


def test_rate_limit_counter(telemetry, samples):
    for status in ("allowed", "allowed", "limited"):
        trading.record_rate_limit(status)
    assert samples("rate_limit_requests_total") == {key(status="allowed"): 2.0, key(status="limited"): 1.0}


@pytest.mark.parametrize(
    ("call", "label", "value"),
    [
        (lambda: trading.order(strategy="g", side="hold", exchange="okx", symbol="BTC"), "side", "hold"),
        (lambda: trading.record_order(side="buy", status="done", exchange="okx"), "status", "done"),
        (
            lambda: trading.record_order(side="buy", status="filled", exchange="okx", result="ok"),
            "result",
            "ok",
        ),
        (lambda: trading.record_rate_limit("blocked"), "status", "blocked"),
        (lambda: trading.set_open_positions("", 1), "symbol", ""),
        (lambda: trading.add_realized_pnl("X" * 65, 1.0), "symbol", "X" * 65),
        (lambda: trading.order(strategy="g", side="buy", exchange=None, symbol="BTC"), "exchange", None),  # type: ignore[arg-type]
    ],
)
def test_label_values_are_checked(telemetry, samples, call, label, value):
    with pytest.raises(LabelValueError) as info:
        call()
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.label, err.value) == (label, value)
    assert repr(label) in str(err) and repr(value)[:20] in str(err)
    assert not samples("orders_total")  # nothing half-recorded


def test_error_message_lists_allowed_values(telemetry):
    with pytest.raises(LabelValueError, match=r"'side' does not accept 'hold': expected one of buy, sell"):
        trading.order(strategy="g", side="hold", exchange="okx", symbol="BTC")
    order = trading.order(strategy="g", side="buy", exchange="okx", symbol="BTC")
    with pytest.raises(LabelValueError, match="filled, partially_filled"):
        order.set_status("done")


def test_symbol_overflow_is_bounded_and_counted(telemetry, samples):
    trading.configure_trading(max_symbols=3)
    for i in range(6):
        trading.set_open_positions(f"SYM{i}", 1)
        trading.add_realized_pnl(f"SYM{i}", -1.0)
    positions = samples("positions_open")
    assert positions == {
        key(symbol="SYM0"): 1.0,
        key(symbol="SYM1"): 1.0,
        key(symbol="SYM2"): 1.0,
        key(symbol="__other__"): 3.0,  # the three later symbols, summed
    }
    assert samples("realized_pnl")[key(symbol="__other__")] == -3.0
    # 3 overflowing symbols x (position + pnl) recordings.
    assert samples("otel_trader_label_overflow_total") == {key(label="symbol"): 6.0}
    # A symbol admitted first keeps its series.
    trading.set_open_positions("SYM0", 2)
    assert samples("positions_open")[key(symbol="SYM0")] == 2.0


def test_default_symbol_limit_is_200(telemetry, samples):
    for i in range(250):
        trading.add_realized_pnl(f"S{i}", 1.0)
    pnl = samples("realized_pnl")
    assert len(pnl) == 201
    assert pnl[key(symbol="__other__")] == 50.0


def test_no_provider_is_a_noop(reset_otel):
    # No telemetry configured: nothing raises, label checks still apply.
    with trading.order(strategy="g", side="buy", exchange="okx", symbol="BTC") as o:
        o.set_status("filled")
    trading.record_rate_limit("limited")
    trading.add_realized_pnl("BTC", -3)
    assert trading.get_realized_pnl() == {"BTC": -3.0}
    with pytest.raises(LabelValueError):
        trading.record_rate_limit("nope")


@pytest.mark.timeout(120)
def test_state_stays_bounded_past_the_label_limits(telemetry, samples):
    symbols = 300_000
    for i in range(symbols):
        trading.set_open_positions(f"S{i}", 1, strategy="grid")
    positions = samples("positions_open")
    assert len(positions) == 201
    assert positions[key(symbol="__other__")] == symbols - 200
    assert samples("trading_current_positions")[key(strategy="grid", symbol="__other__")] == symbols - 200

    # Memory does not grow with further symbols (kept one by one it was ~160 bytes each).
    more = 30_000
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(symbols, symbols + more):
            trading.set_open_positions(f"S{i}", 1, strategy="grid")
            trading.add_realized_pnl(f"S{i}", -1.0)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 256 * 1024, f"kept {(after - before) / 1024:.0f} KiB for {more} symbols"
    assert peak - before < 1024 * 1024, f"peak {(peak - before) / 1024:.0f} KiB"
    state = trading.orders.state()
    # One number per label pair, and a bounded set of pairs kept one by one behind __other__.
    assert len(state.positions) == 201 and len(state.pnl) == 1
    assert len(state.overflow_positions) == trading.DEFAULT_MAX_OVERFLOW_POSITIONS
    assert samples("positions_open")[key(symbol="__other__")] == symbols + more - 200
    assert samples("realized_pnl") == {key(symbol="__other__"): -float(more)}


def test_overflowed_positions_are_replaced_while_kept(telemetry, samples, caplog):
    trading.configure_trading(max_symbols=2, max_overflow_positions=2)
    other = key(symbol="__other__")
    for symbol, count in (("A", 1), ("B", 1), ("C", 2), ("D", 3)):
        trading.set_open_positions(symbol, count)
    assert samples("positions_open") == {key(symbol="A"): 1.0, key(symbol="B"): 1.0, other: 5.0}
    trading.set_open_positions("C", 0)  # closed: removed from __other__
    trading.set_open_positions("D", 1)  # changed: replaced, not added
    assert samples("positions_open")[other] == 1.0
    with caplog.at_level("WARNING", logger="otel_trader"):
        trading.set_open_positions("E", 4)  # kept (C's place is free again)
        trading.set_open_positions("F", 5)  # past the bound: added to the total only
        trading.set_open_positions("G", 1)
    assert samples("positions_open")[other] == 11.0
    assert len(trading.orders.state().overflow_positions) == 2
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "more than 2 open positions" in caplog.records[0].getMessage()
    assert trading.get_open_positions() == {
        ("default", "A"): 1.0,
        ("default", "B"): 1.0,
        ("default", "D"): 1.0,
        ("default", "E"): 4.0,
    }
