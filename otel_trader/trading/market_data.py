"""Market-data freshness: per-feed message counts, last-message age, lag, reconnects, sequence gaps.

==================================================  =========  ==========================================
Prometheus name                                     type       meaning
==================================================  =========  ==========================================
``market_data_messages_total``                      counter    messages received
``market_data_last_message_age_seconds``            gauge      seconds since the last message, computed
                                                               at export time (a stalled feed *grows*)
``market_data_lag_seconds_{bucket,sum,count}``      histogram  receive time − the exchange's event time
``market_data_reconnects_total``                    counter    reconnects reported with ``reconnected()``
``market_data_sequence_gaps_total``                 counter    messages whose sequence number skipped ahead
==================================================  =========  ==========================================

Every series has the labels ``exchange`` and ``stream`` (bounded like the trading labels: 50
exchanges, :data:`DEFAULT_MAX_STREAMS` streams, then ``__other__``).

Usage, once per message on the bot's hottest path::

    btc = trading.feed("binance", "BTC-USDT@trade")
    async for raw in ws:
        msg = json.loads(raw)
        btc.message(event_time=msg["E"], sequence=msg.get("u"))
    ...
    btc.reconnected()            # after re-subscribing; the sequence check starts over
    btc.close()                  # unsubscribed: its age series goes away, counts are kept

Cost: ``message()`` touches no OpenTelemetry API. It updates a few attributes of the feed
(≈ 0.3 µs); observable instruments read them at export time. Recording into an SDK histogram
costs ≈ 10 µs with two readers (Prometheus and OTLP), so ``market_data_lag_seconds`` takes at
most one record per :data:`LAG_WINDOW_SECONDS` window of a feed: a message that opens a window
after a quiet one (no other message in it) is recorded as it arrives, so a feed with fewer
messages than one per window has every message recorded; in a busy feed each window keeps its
largest lag, recorded when the next window opens (``_count`` then counts windows, far fewer
than the messages: use ``market_data_messages_total`` for rates). The worst, not a sample, so a
lag spike is never averaged away; at most 10 records a second per feed. Without an installed
MeterProvider ``message()`` returns at once, checking for one every
:data:`ACTIVATION_CHECK_EVERY` messages; messages before that are not counted.

``event_time`` is the exchange's timestamp of the event, in seconds since the epoch; integer
milliseconds, microseconds and nanoseconds (Binance's ``E`` is milliseconds) are recognised
by their magnitude. A negative lag (the exchange's clock ahead of ours) is recorded as 0.

A feed is meant to be fed from one thread (the event loop's): ``message()`` takes no lock.
The age of a feed that has not received a message yet is counted from its creation, so a
subscription that never delivers goes stale too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from otel_trader.trading.labels import OVERFLOW_VALUE, BoundedLabel, PerProvider, count_label_overflow

__all__ = [
    "ACTIVATION_CHECK_EVERY",
    "DEFAULT_MAX_FEEDS",
    "DEFAULT_MAX_STREAMS",
    "LAG_BUCKETS",
    "LAG_WINDOW_SECONDS",
    "Feed",
    "configure_feeds",
    "feed",
    "feeds",
    "reset_feeds",
]

#: Seconds. A co-located bot sees ~1 ms; a trade stream over the internet 10–100 ms; beyond a
#: second the data is no longer fit to trade on.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Each feed records at most one lag (its window's largest) per this many seconds.
LAG_WINDOW_SECONDS = 0.1
DEFAULT_MAX_STREAMS = 200
#: Feed objects kept; past it ``feed()`` hands out one shared overflow feed (warned once).
DEFAULT_MAX_FEEDS = 1000
#: While no MeterProvider is installed, a feed looks for one every this many messages.
ACTIVATION_CHECK_EVERY = 256

_METER_NAME = "otel_trader.trading"

logger = logging.getLogger("otel_trader")

_monotonic = time.monotonic
_wall = time.time


def _seconds(event_time: float) -> float:
    """An epoch timestamp in seconds, from seconds or integer ms/µs/ns (by magnitude)."""
    if event_time < 1e11:  # seconds until the year 5138
        return float(event_time)
    if event_time < 1e14:
        return event_time / 1e3
    if event_time < 1e17:
        return event_time / 1e6
    return event_time / 1e9


class Feed:
    """One market-data subscription; see the module docstring. Made by :func:`feed`."""

    __slots__ = (
        "exchange",
        "stream",
        "labels",
        "messages",
        "reconnects",
        "gaps",
        "last_message",
        "closed",
        "_on",
        "_countdown",
        "_window_end",
        "_window_lag",
        "_next_sequence",
        "_track_sequence",
        "_shared",
    )

    def __init__(self, exchange: str, stream: str, labels: dict[str, str], *, shared: bool = False) -> None:
        self.exchange = exchange
        self.stream = stream
        #: ``{"exchange": ..., "stream": ...}`` as recorded (``__other__`` past a label limit).
        self.labels = labels
        self.messages = 0
        self.reconnects = 0
        self.gaps = 0
        #: ``time.monotonic()`` of the last message (of the feed's creation before the first).
        self.last_message = _monotonic()
        self.closed = False
        self._on = False
        self._countdown = 0
        self._window_end = 0.0
        self._window_lag = -1.0  # below any recordable lag: "nothing in this window"
        self._next_sequence: int | None = None
        # Several subscriptions behind one shared overflow feed interleave their numbers.
        self._track_sequence = not shared
        self._shared = shared
        self._activate()

    def message(self, event_time: float | None = None, sequence: int | None = None) -> None:
        """One message received now; ``event_time`` (exchange time, epoch) and ``sequence`` if known.

        A ``sequence`` other than the previous one + 1 counts one gap when it is ahead; a lower
        one (a duplicate or a late message) is ignored. With ``sequence=None`` nothing is checked.
        """
        if not self._on:
            self._countdown -= 1
            if self._countdown <= 0:
                self._activate()
            return
        now = _monotonic()
        self.messages += 1
        self.last_message = now
        if sequence is not None and self._track_sequence:
            expected = self._next_sequence
            if expected is None or sequence >= expected:
                if expected is not None and sequence != expected:
                    self.gaps += 1
                self._next_sequence = sequence + 1
        if now >= self._window_end:
            self._open_window(now, event_time)
        elif event_time is not None:
            if event_time >= 1e11:  # integer ms (the common case) inline, µs/ns by _seconds
                event_time = event_time / 1e3 if event_time < 1e14 else _seconds(event_time)
            lag = _wall() - event_time
            if lag > self._window_lag:
                self._window_lag = lag if lag > 0.0 else 0.0

    def reconnected(self) -> None:
        """Count a reconnect; the next message's sequence number is not compared with the last one."""
        self.reconnects += 1
        self._next_sequence = None

    def reset_sequence(self) -> None:
        """Accept whatever sequence number comes next (after a snapshot resync, say) without a gap."""
        self._next_sequence = None

    def age(self) -> float:
        """Seconds since the last message (since creation before the first)."""
        return _monotonic() - self.last_message

    def close(self) -> None:
        """The subscription ended: stop reporting its age; its counts stay in the totals."""
        if not self._shared:
            _registry.retire(self)

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Feed({self.exchange!r}, {self.stream!r}, messages={self.messages})"

    def _activate(self) -> None:
        """Start counting once a MeterProvider is installed (the observable instruments exist then)."""
        inst = _instruments.get()
        self._on = inst is not None
        self._countdown = ACTIVATION_CHECK_EVERY
        if self._on:
            self.last_message = _monotonic()

    def _open_window(self, now: float, event_time: float | None) -> None:
        """This message opens a window: one record, of it (after a quiet window) or of the last window."""
        rest = self._window_lag
        lag = -1.0
        if event_time is not None:
            lag = _wall() - _seconds(event_time)
            lag = lag if lag > 0.0 else 0.0
        self._window_end = now + LAG_WINDOW_SECONDS
        inst = _instruments.get()  # also binds to a MeterProvider installed since the last window
        if rest >= 0.0:
            # Busy: the last window's worst now; this message counts towards the new window's.
            self._window_lag = lag
            if inst is not None:
                inst.lag.record(rest, self.labels)
        else:
            # Quiet: nothing else came in the last window, so this message is recorded as it arrives.
            self._window_lag = -1.0
            if inst is not None and lag >= 0.0:
                inst.lag.record(lag, self.labels)


# -- registry -------------------------------------------------------------------------------


class _Registry:
    """Live feeds by (exchange, stream), and the counts of closed ones per label pair."""

    def __init__(self, max_streams: int, max_feeds: int) -> None:
        if max_feeds < 1:
            raise ValueError(f"max_feeds must be at least 1, got {max_feeds}")
        self.lock = threading.Lock()
        self.stream = BoundedLabel("stream", max_streams, count_label_overflow)
        self.max_feeds = max_feeds
        self.live: dict[tuple[str, str], Feed] = {}
        #: (exchange label, stream label) -> [messages, reconnects, gaps] of closed feeds, so the
        #: counters stay monotonic when a stream is unsubscribed and subscribed again.
        self.retired: dict[tuple[str, str], list[int]] = {}
        self.shared: Feed | None = None
        self.warned = False

    def get(self, exchange: str, stream: str) -> Feed:
        from otel_trader.trading import orders

        key = (exchange, stream)
        existing = self.live.get(key)
        if existing is not None:
            return existing
        exchange_label = orders.state().exchange(exchange)
        stream_label = self.stream(stream)
        warn = False
        with self.lock:
            existing = self.live.get(key)
            if existing is not None:
                return existing
            if len(self.live) >= self.max_feeds:
                if self.shared is None:
                    labels = {"exchange": OVERFLOW_VALUE, "stream": OVERFLOW_VALUE}
                    self.shared = Feed(OVERFLOW_VALUE, OVERFLOW_VALUE, labels, shared=True)
                warn, self.warned = not self.warned, True
                made = self.shared
            else:
                made = Feed(exchange, stream, {"exchange": exchange_label, "stream": stream_label})
                self.live[key] = made
        if warn:
            logger.warning(
                "otel-trader: more than %d market-data feeds are open; further ones share one feed "
                "labelled %s (close feeds you unsubscribe with feed.close(), or raise "
                "configure_feeds(max_feeds=...))",
                self.max_feeds,
                OVERFLOW_VALUE,
            )
        return made

    def retire(self, feed_: Feed) -> None:
        with self.lock:
            if self.live.get((feed_.exchange, feed_.stream)) is not feed_:
                return
            del self.live[(feed_.exchange, feed_.stream)]
            feed_.closed = True
            key = (feed_.labels["exchange"], feed_.labels["stream"])
            totals = self.retired.setdefault(key, [0, 0, 0])
            totals[0] += feed_.messages
            totals[1] += feed_.reconnects
            totals[2] += feed_.gaps

    def snapshot(self) -> tuple[list[Feed], dict[tuple[str, str], list[int]]]:
        with self.lock:
            live = list(self.live.values())
            if self.shared is not None:
                live.append(self.shared)
            return live, {k: list(v) for k, v in self.retired.items()}


_registry = _Registry(DEFAULT_MAX_STREAMS, DEFAULT_MAX_FEEDS)


def feed(exchange: str, stream: str) -> Feed:
    """The feed for ``stream`` on ``exchange`` (the same object for the same pair while it is open).

    ``exchange`` and ``stream`` are bounded free-text labels (non-empty, at most 64 characters):
    past the limits (:func:`configure_feeds`) values are recorded as ``__other__``. Inside a
    running event loop this also starts the loop-lag probe (:mod:`otel_trader.trading.loop_health`).
    """
    made = _registry.get(exchange, stream)
    from otel_trader.trading.loop_health import ensure_monitor

    ensure_monitor()
    return made


def feeds() -> list[Feed]:
    """The open feeds (the shared overflow feed included, once it exists)."""
    return _registry.snapshot()[0]


def configure_feeds(*, max_streams: int = DEFAULT_MAX_STREAMS, max_feeds: int = DEFAULT_MAX_FEEDS) -> None:
    """Set the stream label limit and the number of feed objects kept; forgets every feed (start-up)."""
    global _registry
    _registry = _Registry(max_streams, max_feeds)


def reset_feeds() -> None:
    """Forget every feed and count, keeping the limits (tests; a forked child)."""
    configure_feeds(max_streams=_registry.stream.max_values, max_feeds=_registry.max_feeds)


# -- instruments ----------------------------------------------------------------------------


def _totals(index: int) -> Any:
    """Callback summing one count per label pair over open and closed feeds."""

    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        live, retired = _registry.snapshot()
        sums: dict[tuple[str, str], int] = {k: v[index] for k, v in retired.items()}
        for f in live:
            key = (f.labels["exchange"], f.labels["stream"])
            sums[key] = sums.get(key, 0) + (f.messages, f.reconnects, f.gaps)[index]
        return [Observation(v, {"exchange": e, "stream": s}) for (e, s), v in sums.items()]

    return callback


def _observe_age(_options: CallbackOptions) -> Iterable[Observation]:
    live, _ = _registry.snapshot()
    now = _monotonic()
    ages: dict[tuple[str, str], float] = {}
    for f in live:
        key = (f.labels["exchange"], f.labels["stream"])
        # Several feeds behind one __other__ label: the stalest one speaks for them.
        ages[key] = max(ages.get(key, 0.0), now - f.last_message)
    return [Observation(v, {"exchange": e, "stream": s}) for (e, s), v in ages.items()]


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        meter.create_observable_counter(
            "market_data_messages_total",
            callbacks=[_totals(0)],
            unit="{message}",
            description="Market-data messages received, by exchange and stream.",
        )
        meter.create_observable_counter(
            "market_data_reconnects_total",
            callbacks=[_totals(1)],
            unit="{reconnect}",
            description="Market-data reconnects, by exchange and stream.",
        )
        meter.create_observable_counter(
            "market_data_sequence_gaps_total",
            callbacks=[_totals(2)],
            unit="{gap}",
            description="Market-data messages whose sequence number skipped ahead of the expected one.",
        )
        meter.create_observable_gauge(
            "market_data_last_message_age_seconds",
            callbacks=[_observe_age],
            unit="s",
            description="Seconds since the feed's last message (since its creation before the first), "
            "computed when metrics are read.",
        )
        self.lag = meter.create_histogram(
            "market_data_lag_seconds",
            unit="s",
            description="Receive time minus the exchange's event time, in seconds (a busy feed: the worst "
            f"message of each {LAG_WINDOW_SECONDS:g} s window).",
            explicit_bucket_boundaries_advisory=LAG_BUCKETS,
        )


_instruments: PerProvider[_Instruments] = PerProvider(_Instruments, _METER_NAME)


def _after_fork_in_child() -> None:
    # The parent's counts would be reported again under the child's identity; feed objects the
    # child inherited start from zero (their labels stay admitted). A parent thread may have
    # held the lock at the fork.
    _registry.lock = threading.Lock()
    live, _ = _registry.snapshot()
    _registry.retired.clear()
    for f in live:
        f.messages = f.reconnects = f.gaps = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
