"""Order lifecycle: one trace from submit to done across asyncio tasks, latencies, slippage, timeouts."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Iterator

import pytest

import otel_trader
from otel_trader import trading
from otel_trader.trading import lifecycle
from tests.trading.promsamples import families, key

MOCK = key(exchange="mock")


@pytest.fixture(autouse=True)
def fresh_orders() -> Iterator[None]:
    lifecycle.configure_order_tracking()
    yield
    lifecycle.configure_order_tracking()


def _by_name(spans: list, name: str) -> list:
    return [s for s in spans if s.name == name]


def test_acks_and_fills_from_another_task_continue_the_order_trace(telemetry, samples):
    """The REST call in one task, the user-data WebSocket in another with its own traces."""
    fills: asyncio.Queue[tuple[float, float]] = asyncio.Queue()

    async def strategy() -> None:
        with otel_trader.trace_operation("strategy.tick"):
            async with trading.order(
                strategy="grid",
                side="buy",
                exchange="mock",
                symbol="BTC-USDT",
                client_order_id="c-1",
                quantity=2.0,
                decision_price=100.0,
            ) as o:
                await asyncio.sleep(0.02)  # the REST round trip
                o.ack("X-1")
                o.set_status("new")  # resting: followed after the block
        await fills.put((100.5, 1.0))
        await fills.put((101.0, 1.0))

    async def user_stream() -> None:
        for _ in range(2):
            price, qty = await fills.get()
            await asyncio.sleep(0.03)
            with otel_trader.trace_operation("ws.message"):
                assert trading.order_filled("c-1", price=price, quantity=qty)

    async def main() -> None:
        # The WebSocket reader starts from an empty context, as one started at start-up does.
        reader = asyncio.get_running_loop().create_task(user_stream(), context=contextvars.Context())
        await asyncio.gather(strategy(), reader)

    asyncio.run(main())
    spans = telemetry.finished_spans()
    (submit,) = _by_name(spans, "trading.order")
    ws = _by_name(spans, "ws.message")
    order_fills = _by_name(spans, "trading.order.fill")
    (done,) = _by_name(spans, "trading.order.lifecycle")
    trace_id = submit.context.trace_id
    assert len(ws) == 2 and all(w.context.trace_id != trace_id for w in ws)  # other traces
    for span in (*order_fills, done):
        assert span.context.trace_id == trace_id  # one trace for the order
        assert span.parent.span_id == submit.context.span_id
    for fill, message in zip(order_fills, ws, strict=True):
        assert [link.context.span_id for link in fill.links] == [message.context.span_id]
    assert [e.name for e in submit.events] == ["trading.order.ack"]
    assert submit.attributes["trading.client_order_id"] == "c-1"
    assert [f.attributes["trading.order.filled_quantity"] for f in order_fills] == [1.0, 2.0]
    assert done.attributes["trading.order.status"] == "filled"
    assert done.attributes["trading.order.average_price"] == pytest.approx(100.75)
    assert done.attributes["trading.order.slippage_bps"] == pytest.approx(75.0)
    assert abs(done.start_time - submit.start_time) < 5e6  # spans submit → done
    assert done.end_time - done.start_time >= 0.07e9

    # Counted once, with its final status, when it was done (not "new" at the block's exit).
    assert samples("orders_total") == {key(side="buy", status="filled", exchange="mock"): 1}
    assert samples("trading_orders_executed_total") == {key(strategy="grid", side="buy", result="success"): 1}
    assert samples("orders_submitted_total") == {MOCK: 1}
    assert samples("order_fills_total") == {MOCK: 2}
    assert samples("order_ack_latency_seconds_count") == {MOCK: 1}
    assert 0.02 <= samples("order_ack_latency_seconds_sum")[MOCK] < 0.05
    assert samples("order_fill_latency_seconds_count") == {MOCK: 1}
    assert samples("order_fill_latency_seconds_sum")[MOCK] >= 0.08
    slip = samples("order_slippage_bps_bucket")
    side = dict(exchange="mock", side="buy")
    assert slip[key(**side, le="50.0")] == 0 and slip[key(**side, le="100.0")] == 1
    assert samples("order_price_improvement_bps_sum") == {key(**side): 0.0}
    assert samples("orders_open") == {MOCK: 0}
    kinds = families(telemetry.scrape())
    assert kinds["order_slippage_bps"] == kinds["order_price_improvement_bps"] == "histogram"
    assert "order_slippage_bps_bps" not in telemetry.scrape()


def test_track_order_without_the_context_manager(telemetry, samples):
    async def main() -> None:
        with otel_trader.trace_operation("decide"):
            trading.track_order("c-2", exchange="mock", symbol="ETH-USDT", side="sell", decision_price=2000.0)
        assert samples("orders_open") == {MOCK: 1}

        async def ws() -> None:
            await asyncio.sleep(0.04)
            with otel_trader.trace_operation("ws.message"):
                assert trading.order_acked("c-2", exchange_order_id=77)
                assert trading.order_acked("c-2")  # a second ack changes nothing
                assert trading.order_filled("c-2", price=1990.0, quantity=0.5)  # sold lower: adverse
                assert trading.order_done("c-2", "cancelled")

        await asyncio.get_running_loop().create_task(ws(), context=contextvars.Context())

    asyncio.run(main())
    spans = telemetry.finished_spans()
    (decide,) = _by_name(spans, "decide")
    (submit,) = _by_name(spans, "trading.order.submit")
    (ack,) = _by_name(spans, "trading.order.ack")
    (fill,) = _by_name(spans, "trading.order.fill")
    (done,) = _by_name(spans, "trading.order.lifecycle")
    assert submit.parent.span_id == decide.context.span_id
    for span in (ack, fill, done):
        assert span.parent.span_id == submit.context.span_id
    assert ack.start_time == submit.start_time  # the ack span is the wait for the ack
    assert (ack.end_time - ack.start_time) / 1e9 >= 0.04
    assert ack.attributes["trading.exchange_order_id"] == "77"
    assert done.attributes["trading.order.status"] == "cancelled"
    assert done.attributes["trading.order.slippage_bps"] == pytest.approx(50.0)
    assert samples("orders_total") == {key(side="sell", status="cancelled", exchange="mock"): 1}
    assert samples("order_fill_latency_seconds_count") == {}  # never completely filled
    assert samples("order_slippage_bps_count") == {key(exchange="mock", side="sell"): 1}
    assert samples("order_slippage_bps_sum") == {key(exchange="mock", side="sell"): pytest.approx(50.0)}
    assert samples("orders_open") == {MOCK: 0}


def test_price_improvement_is_its_own_histogram(telemetry, samples):
    trading.track_order("c-3", exchange="mock", symbol="BTC-USDT", side="sell", quantity=1, decision_price=100.0)
    trading.order_filled("c-3", price=101.0, quantity=1)  # sold higher than decided: improvement
    side = key(exchange="mock", side="sell")
    assert samples("order_slippage_bps_sum") == {side: 0.0}
    assert samples("order_slippage_bps_bucket")[key(exchange="mock", side="sell", le="0.0")] == 1
    assert samples("order_price_improvement_bps_sum") == {side: pytest.approx(100.0)}
    assert samples("orders_total") == {key(side="sell", status="filled", exchange="mock"): 1}


def test_plain_order_blocks_feed_the_lifecycle_metrics(telemetry, samples):
    with trading.order(strategy="s", side="buy", exchange="mock", symbol="BTC-USDT"):
        time.sleep(0.01)  # a REST reply that is the fill
    with trading.order(strategy="s", side="buy", exchange="mock", symbol="BTC-USDT") as o:
        o.set_status("rejected")  # answered: an ack, no fill
    with pytest.raises(RuntimeError), trading.order(strategy="s", side="buy", exchange="mock", symbol="BTC-USDT"):
        raise RuntimeError("connection reset")  # no answer at all
    with trading.order(strategy="s", side="buy", exchange="mock", symbol="BTC-USDT") as o:
        o.set_status("new")  # open, but without an id nothing can follow it
    assert samples("orders_total") == {
        key(side="buy", status="filled", exchange="mock"): 1,
        key(side="buy", status="rejected", exchange="mock"): 1,
        key(side="buy", status="error", exchange="mock"): 1,
        key(side="buy", status="new", exchange="mock"): 1,
    }
    assert samples("order_ack_latency_seconds_count") == {MOCK: 2}
    assert samples("order_fill_latency_seconds_count") == {MOCK: 1}
    assert samples("order_fills_total") == {MOCK: 1}
    assert samples("orders_open") == {MOCK: 0}
    spans = _by_name(telemetry.finished_spans(), "trading.order")
    assert spans[0].attributes["trading.order.fill_latency_s"] >= 0.01
    assert not _by_name(telemetry.finished_spans(), "trading.order.lifecycle")  # all ended in their block
    kinds = families(telemetry.scrape())
    assert kinds["order_ack_latency_seconds"] == kinds["order_fill_latency_seconds"] == "histogram"
    assert kinds["orders_submitted"] == kinds["order_ack_timeouts"] == kinds["order_unknown_fills"] == "counter"
    assert kinds["orders_open"] == "gauge"


def test_fills_inside_the_block_complete_the_order(telemetry, samples):
    with trading.order(
        strategy="s", side="buy", exchange="mock", symbol="BTC-USDT", client_order_id="c-4", quantity=1.0
    ) as o:
        o.fill(10.0, 0.4)
        o.fill(10.0, 0.6)
    (span,) = _by_name(telemetry.finished_spans(), "trading.order")
    assert [e.name for e in span.events] == ["trading.order.fill", "trading.order.fill"]
    assert span.attributes["trading.order.status"] == "filled"
    assert samples("orders_total") == {key(side="buy", status="filled", exchange="mock"): 1}
    assert samples("order_fills_total") == {MOCK: 2}
    assert trading.open_orders() == []


def test_ack_timeout_is_counted_once_and_warned(telemetry, samples, caplog):
    lifecycle.configure_order_tracking(ack_timeout=0.05)
    with otel_trader.trace_operation("decide") as span:
        trading.track_order("c-5", exchange="mock", symbol="BTC-USDT", side="buy")
    trading.track_order("c-6", exchange="mock", symbol="BTC-USDT", side="buy", ack_timeout=60)
    assert samples("order_ack_timeouts_total") == {MOCK: 0}  # exists from the first order
    time.sleep(0.08)
    with caplog.at_level("WARNING", logger="otel_trader"):
        assert samples("order_ack_timeouts_total") == {MOCK: 1}
        assert samples("order_ack_timeouts_total") == {MOCK: 1}
    (warning,) = [r for r in caplog.records if "without an ack" in r.getMessage()]
    assert "mock/c-5" in warning.getMessage() and "c-6" not in warning.getMessage()
    assert format(span.get_span_context().trace_id, "032x") in warning.getMessage()
    states = {s.client_order_id: s for s in trading.open_orders()}
    assert states["c-5"].ack_timed_out and not states["c-6"].ack_timed_out
    trading.order_acked("c-5")  # late
    (ack,) = _by_name(telemetry.finished_spans(), "trading.order.ack")
    assert ack.attributes["trading.order.ack_late"] is True
    assert samples("order_ack_timeouts_total") == {MOCK: 1}


def test_unknown_fills_are_counted(telemetry, samples, caplog):
    with caplog.at_level("WARNING", logger="otel_trader"):
        assert not trading.order_filled("ghost", price=1.0, quantity=1.0, exchange="binance")
        assert not trading.order_filled("ghost-2", price=1.0, quantity=1.0)
    trading.track_order("c-7", exchange="mock", symbol="BTC-USDT", side="buy", quantity=1)
    trading.order_filled("c-7", price=1.0, quantity=1.0)
    assert not trading.order_filled("c-7", price=1.0, quantity=0.1, exchange="mock")  # after it was done
    assert samples("order_unknown_fills_total") == {key(exchange="binance"): 1, key(exchange="unknown"): 1, MOCK: 1}
    assert samples("order_fills_total") == {MOCK: 1}
    assert sum("not open: client_order_id=ghost" in r.getMessage() for r in caplog.records) == 1  # throttled


def test_open_orders_are_bounded(telemetry, samples, caplog):
    lifecycle.configure_order_tracking(max_orders=3)
    with caplog.at_level("WARNING", logger="otel_trader"):
        for i in range(5):
            trading.track_order(f"o-{i}", exchange="mock", symbol="BTC-USDT", side="buy")
    assert [s.client_order_id for s in trading.open_orders()] == ["o-2", "o-3", "o-4"]
    assert samples("orders_open") == {MOCK: 3}
    assert sum("orders are open" in r.getMessage() for r in caplog.records) == 1
    assert not trading.order_filled("o-0", price=1.0, quantity=1.0, exchange="mock")
    assert samples("order_unknown_fills_total") == {MOCK: 1}


def test_arguments_are_checked(telemetry):
    with pytest.raises(otel_trader.LabelValueError):
        trading.track_order("x", exchange="mock", symbol="BTC-USDT", side="long")
    with pytest.raises(ValueError, match="decision_price"):
        trading.track_order("x", exchange="mock", symbol="BTC-USDT", side="buy", decision_price=-1)
    with pytest.raises(ValueError, match="client_order_id"):
        trading.track_order("", exchange="mock", symbol="BTC-USDT", side="buy")
    trading.track_order("x", exchange="mock", symbol="BTC-USDT", side="buy")
    with pytest.raises(ValueError, match="positive price"):
        trading.order_filled("x", price=0.0, quantity=1.0)
    with pytest.raises(otel_trader.LabelValueError):
        trading.order_done("x", "new")  # not a final status


def test_without_a_provider_everything_is_a_noop(reset_otel):
    with trading.order(
        strategy="s", side="buy", exchange="mock", symbol="BTC-USDT", client_order_id="n-1", decision_price=5.0
    ) as o:
        o.set_status("new")
    assert trading.order_acked("n-1")
    assert trading.order_filled("n-1", price=5.0, quantity=1.0, final=True)
    assert trading.open_orders() == []
    assert not trading.order_filled("n-1", price=5.0, quantity=1.0)


def test_tracked_orders_use_the_label_limits_set_by_configure_trading(telemetry, samples):
    """configure_trading() replaces the trading state; the lifecycle must read the new one."""
    trading.configure_trading(max_exchanges=1)
    try:
        trading.track_order("c-a", exchange="venue-a", symbol="BTC-USDT", side="buy")
        trading.track_order("c-b", exchange="venue-b", symbol="BTC-USDT", side="buy")
        assert samples("orders_open") == {key(exchange="venue-a"): 1, key(exchange="__other__"): 1}
        assert samples("orders_submitted_total") == {key(exchange="venue-a"): 1, key(exchange="__other__"): 1}
    finally:
        trading.reset_state()
        trading.configure_trading()
