"""Market-data freshness: counts, age computed at scrape time, lag windows, gaps, reconnects, bounds."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import otel_trader
from otel_trader import LabelValueError, trading
from otel_trader.trading import market_data as feed_module
from tests.trading.promsamples import families, key, parse_samples

BTC = key(exchange="binance", stream="BTC-USDT@trade")


@pytest.fixture(autouse=True)
def fresh_feeds() -> Iterator[None]:
    feed_module.configure_feeds()
    yield
    feed_module.configure_feeds()


def test_names_types_and_counts(telemetry, samples):
    f = trading.feed("binance", "BTC-USDT@trade")
    for seq in range(1, 6):
        f.message(event_time=time.time() - 0.02, sequence=seq)
    f.reconnected()
    text = telemetry.scrape()
    kinds = families(text)
    assert kinds["market_data_messages"] == "counter"
    assert kinds["market_data_reconnects"] == "counter"
    assert kinds["market_data_sequence_gaps"] == "counter"
    assert kinds["market_data_last_message_age_seconds"] == "gauge"
    assert kinds["market_data_lag_seconds"] == "histogram"
    assert samples("market_data_messages_total", text) == {BTC: 5.0}
    assert samples("market_data_reconnects_total", text) == {BTC: 1.0}
    assert samples("market_data_sequence_gaps_total", text) == {BTC: 0.0}
    assert 0 <= samples("market_data_last_message_age_seconds", text)[BTC] < 1.0
    # The first message of a fresh window is recorded at once; the rest of the burst shares its window.
    count = samples("market_data_lag_seconds_count", text)[BTC]
    assert 1 <= count < 5
    buckets = samples("market_data_lag_seconds_bucket", text)
    assert buckets[key(exchange="binance", stream="BTC-USDT@trade", le="0.01")] == 0
    assert buckets[key(exchange="binance", stream="BTC-USDT@trade", le="0.025")] == count
    assert trading.feed("binance", "BTC-USDT@trade") is f  # one object per pair


def test_stalled_feed_age_keeps_growing_between_scrapes(telemetry):
    """Through the app's real /metrics: a feed that stops sending reads older at every scrape."""
    app = FastAPI()
    otel_trader.instrument_app(app)
    f = trading.feed("okx", "ETH-USDT@books5")
    f.message()
    with TestClient(app) as client:

        def age() -> float:
            body = client.get("/metrics").text
            (value,) = [
                v
                for name, labels, v in parse_samples(body)
                if name == "market_data_last_message_age_seconds" and labels["stream"] == "ETH-USDT@books5"
            ]
            return value

        ages = []
        for _ in range(3):
            ages.append(age())
            time.sleep(0.25)
        assert ages[0] < ages[1] < ages[2], ages
        assert ages[2] - ages[0] >= 0.45
        f.message()
        assert age() < 0.2  # a message makes it fresh again


def test_lag_from_event_time_in_seconds_and_milliseconds(telemetry, samples):
    f = trading.feed("binance", "SOL-USDT@trade")
    f.message(event_time=int((time.time() - 0.3) * 1000))  # Binance's "E": integer milliseconds
    time.sleep(feed_module.LAG_WINDOW_SECONDS + 0.01)
    f.message(event_time=time.time() - 0.003)  # seconds
    time.sleep(feed_module.LAG_WINDOW_SECONDS + 0.01)
    f.message(event_time=time.time() + 5)  # the exchange's clock ahead: recorded as 0
    stream = dict(exchange="binance", stream="SOL-USDT@trade")
    buckets = samples("market_data_lag_seconds_bucket")
    assert samples("market_data_lag_seconds_count")[key(**stream)] == 3
    assert buckets[key(**stream, le="0.001")] == 1  # the clamped one
    assert buckets[key(**stream, le="0.005")] == 2
    assert buckets[key(**stream, le="0.25")] == 2
    assert buckets[key(**stream, le="0.5")] == 3
    assert 0.3 <= samples("market_data_lag_seconds_sum")[key(**stream)] < 0.4


def test_a_burst_records_the_worst_lag_of_each_window(telemetry, samples):
    f = trading.feed("binance", "BTC-USDT@depth")
    now = time.time()
    for i in range(10_000):
        # One stale message in the middle of a fresh burst.
        f.message(event_time=now - (2.0 if i == 5000 else 0.001))
    stream = dict(exchange="binance", stream="BTC-USDT@depth")
    time.sleep(feed_module.LAG_WINDOW_SECONDS + 0.01)
    f.message(event_time=time.time() - 0.001)  # closes the burst's window
    assert samples("market_data_messages_total")[key(**stream)] == 10_001
    count = samples("market_data_lag_seconds_count")[key(**stream)]
    assert count < 100  # windows, not messages
    buckets = samples("market_data_lag_seconds_bucket")
    assert buckets[key(**stream, le="1.0")] == count - 1  # the 2 s message was not averaged away
    assert buckets[key(**stream, le="2.5")] == count


def test_a_busy_feed_records_at_most_one_lag_per_window(telemetry, samples):
    f = trading.feed("binance", "ETH-USDT@depth")
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < 0.55:  # a message every ~0.5 ms for 5.5 windows
        f.message(event_time=time.time() - 0.002)
        sent += 1
        time.sleep(0.0005)
    stream = key(exchange="binance", stream="ETH-USDT@depth")
    count = samples("market_data_lag_seconds_count")[stream]
    assert sent > 300
    assert 3 <= count <= 7, count  # the first message, then one per 0.1 s window
    assert samples("market_data_messages_total")[stream] == sent


def test_sequence_gaps(telemetry, samples):
    f = trading.feed("bybit", "orderbook.50.BTCUSDT")
    for seq in (1, 2, 3, 5, 6, 6, 4, 7, 10, 11):  # 3->5 and 7->10 skip; 6 again and 4 are late
        f.message(sequence=seq)
    stream = key(exchange="bybit", stream="orderbook.50.BTCUSDT")
    assert samples("market_data_sequence_gaps_total")[stream] == 2
    f.reconnected()
    f.message(sequence=500)  # numbering restarts after a reconnect: not a gap
    f.message(sequence=501)
    f.reset_sequence()
    f.message(sequence=900)  # after a snapshot resync
    f.message(sequence=902)
    assert samples("market_data_sequence_gaps_total")[stream] == 3
    assert samples("market_data_reconnects_total")[stream] == 1


def test_close_drops_the_age_and_keeps_the_counts(telemetry, samples):
    f = trading.feed("kraken", "XBT/USD")
    for _ in range(3):
        f.message()
    stream = key(exchange="kraken", stream="XBT/USD")
    assert stream in samples("market_data_last_message_age_seconds")
    f.close()
    assert stream not in samples("market_data_last_message_age_seconds")  # unsubscribed: never stale
    assert samples("market_data_messages_total")[stream] == 3
    with trading.feed("kraken", "XBT/USD") as again:
        assert again is not f
        again.message()
        assert samples("market_data_messages_total")[stream] == 4  # monotonic across re-subscribing
    assert stream not in samples("market_data_last_message_age_seconds")


def test_a_feed_that_never_delivers_goes_stale(telemetry, samples):
    trading.feed("binance", "PEPE-USDT@trade")
    time.sleep(0.2)
    assert samples("market_data_last_message_age_seconds")[key(exchange="binance", stream="PEPE-USDT@trade")] >= 0.2
    assert samples("market_data_messages_total")[key(exchange="binance", stream="PEPE-USDT@trade")] == 0


def test_labels_are_checked_and_bounded(telemetry, samples, caplog):
    with pytest.raises(LabelValueError):
        trading.feed("binance", "")
    with pytest.raises(LabelValueError):
        trading.feed("x" * 65, "s")
    feed_module.configure_feeds(max_streams=2, max_feeds=3)
    for i in range(3):
        trading.feed("binance", f"S{i}").message()
    assert samples("market_data_messages_total") == {
        key(exchange="binance", stream="S0"): 1,
        key(exchange="binance", stream="S1"): 1,
        key(exchange="binance", stream="__other__"): 1,
    }
    assert samples("otel_trader_label_overflow_total")[key(label="stream")] == 1
    with caplog.at_level("WARNING", logger="otel_trader"):
        extra = [trading.feed("binance", f"T{i}") for i in range(3)]
    assert extra[0] is extra[1] is extra[2]  # past max_feeds: one shared overflow feed
    assert len(trading.feeds()) == 4
    assert sum("more than 3 market-data feeds" in r.getMessage() for r in caplog.records) == 1
    for f in extra:
        f.message(sequence=1)  # interleaved numbers behind one feed are not gaps
    other = key(exchange="__other__", stream="__other__")
    assert samples("market_data_messages_total")[other] == 3
    assert samples("market_data_sequence_gaps_total")[other] == 0


def test_no_provider_is_a_noop_that_wakes_up_once_one_is_installed(reset_otel, monkeypatch):
    f = trading.feed("binance", "BTC-USDT@trade")
    for _ in range(1000):
        f.message(event_time=time.time(), sequence=1)
    assert f.messages == 0 and f.gaps == 0  # nothing counted without a MeterProvider

    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_EXPORTER", "none")
    otel_trader.get_telemetry_manager()
    for _ in range(feed_module.ACTIVATION_CHECK_EVERY):
        f.message()
    f.message()
    assert f.messages >= 1
    from prometheus_client import REGISTRY, generate_latest

    text = generate_latest(REGISTRY).decode()
    counted = [v for n, labels, v in parse_samples(text) if n == "market_data_messages_total"]
    assert counted == [f.messages]


def test_forked_child_starts_from_zero(telemetry):
    f = trading.feed("binance", "BTC-USDT@trade")
    for _ in range(7):
        f.message()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports over the pipe and leaves through os._exit
        code = 1
        try:
            f.message()
            counted = [
                v for n, _, v in parse_samples(telemetry.scrape()) if n == "market_data_messages_total"
            ]
            os.write(write, json.dumps(counted).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        reported = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(reported) == [1.0]  # the child's own message, not the parent's seven again
    assert f.messages == 7
