# Long because an order's states (submit, ack, fills, done, timeouts) are one state machine with
# its trace, links and metrics; the transitions only read correctly side by side.
"""Order lifecycle by client order id: submit → ack → (partial) fills → done, as one trace.

==============================================  =========  ==================================================
Prometheus name                                 type       meaning
==============================================  =========  ==================================================
``orders_submitted_total{exchange}``            counter    orders sent to the exchange
``order_ack_latency_seconds{exchange}``         histogram  submit → the exchange acknowledged the order
``order_fill_latency_seconds{exchange}``        histogram  submit → the order was completely filled
``order_fills_total{exchange}``                 counter    fills, partial ones included
``order_slippage_bps{exchange,side}``           histogram  adverse slippage of an order's average fill price
                                                           against its decision price, in basis points;
                                                           a price improvement counts as 0
``order_price_improvement_bps{exchange,side}``  histogram  the favourable side of the same (0 when adverse)
``order_ack_timeouts_total{exchange}``          counter    orders without an ack past their deadline
``order_unknown_fills_total{exchange}``         counter    fills whose client order id is not an open order
``orders_open{exchange}``                       gauge      orders being followed (submitted, not done)
==============================================  =========  ==================================================

Slippage is two histograms because OpenTelemetry histograms only take non-negative values (the
SDK drops a negative one with a warning): ``order_slippage_bps`` is the cost side, so its
quantiles read "95 % of orders lost at most X bps"; the signed mean is
``(slippage_sum − improvement_sum) / count``. Buy: ``(fill − decision) / decision × 10⁴``;
sell: the opposite sign.

Usage, when acks and fills arrive later on the exchange's user-data WebSocket (another task,
another trace)::

    async with trading.order(strategy="grid", side="buy", exchange="binance", symbol="BTC-USDT",
                             client_order_id=coid, quantity=0.01, decision_price=mid) as o:
        reply = await rest.new_order(..., newClientOrderId=coid)
        o.set_status("new")                      # accepted, resting: followed after the block
    ...
    # in the WebSocket task
    trading.order_acked(coid, exchange_order_id=ev["i"])       # once, if the REST reply was not the ack
    trading.order_filled(coid, price=float(ev["L"]), quantity=float(ev["l"]))   # done at the full quantity
    trading.order_done(coid, "cancelled")                      # or expired / rejected

``trading.track_order(coid, ...)`` starts following an order without the context manager. A
plain ``trading.order(...)`` block whose status is final at exit (a REST reply that is the
fill) feeds the same histograms: the reply was the ack, and ``filled`` the fill.

Traces: the lifecycle is one trace, without a long-lived span. The submit span (the
``trading.order`` span of the block, or a ``trading.order.submit`` span from ``track_order``)
ends with the call; the ack, every fill and the end of an order that outlives it are short
spans made when they happen, **children of the submit span's context** (the messaging
convention for a message processed on its own: it continues its creator's trace), with a
**link** to the span current where the event was received (the WebSocket message's trace).
``trading.order.ack`` starts at the submit, so its length is the ack latency;
``trading.order.fill`` starts at the previous event; ``trading.order.lifecycle`` spans submit
to done. Each span is exported as soon as it ends: an order that never completes, or a process
that dies with orders open, loses nothing already seen, and nothing is held in memory for hours.
A long-lived order span would be exported only at its end (lost on a crash, shown late, cut
by tail samplers' decision windows).

Memory is bounded: :data:`DEFAULT_MAX_ORDERS` open orders are followed; past it the oldest is
dropped (warned once). The ack deadline (:data:`DEFAULT_ACK_TIMEOUT_SECONDS`, per order with
``ack_timeout=``) is checked when metrics are read and on every lifecycle call: no task is
needed. Each call costs one SDK measurement or two (≈ 10 µs each with two readers): orders
are not the hot path; market data is (:mod:`otel_trader.trading.market_data`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind

from otel_trader.sdk import span_helpers as _tracing
from otel_trader.trading import orders
from otel_trader.trading.labels import PerProvider, choice
from otel_trader.trading.orders import SIDES, Order, record_order

__all__ = [
    "ACK_LATENCY_BUCKETS",
    "DEFAULT_ACK_TIMEOUT_SECONDS",
    "DEFAULT_MAX_ORDERS",
    "FILL_LATENCY_BUCKETS",
    "FINAL_STATUSES",
    "SLIPPAGE_BUCKETS_BPS",
    "OrderState",
    "TrackedOrder",
    "configure_order_tracking",
    "open_orders",
    "order_acked",
    "order_done",
    "order_filled",
    "reset_order_tracking",
    "track_order",
]

#: Seconds: a REST ack takes 5–100 ms, a congested matching engine seconds.
ACK_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds: a market order fills with its ack, a resting limit order in minutes or hours.
FILL_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
#: Basis points; 0 is its own bucket: "no adverse slippage".
SLIPPAGE_BUCKETS_BPS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
FINAL_STATUSES = ("filled", "cancelled", "rejected", "expired", "error")
DEFAULT_ACK_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_ORDERS = 10_000
#: At most one warning per this many seconds for unknown fills and for ack timeouts each.
WARN_EVERY_SECONDS = 10.0
#: Label of unknown fills when the caller does not say which exchange sent them.
UNKNOWN_EXCHANGE = "unknown"

_METER_NAME = "otel_trader.trading"

logger = logging.getLogger("otel_trader")


@dataclass(frozen=True)
class OrderState:
    """A snapshot of one followed order (see :func:`open_orders`)."""

    client_order_id: str
    exchange: str
    symbol: str
    side: str
    acked: bool
    filled_quantity: float
    age_seconds: float
    ack_timed_out: bool


class _Life:
    """One order being followed."""

    __slots__ = (
        "client_order_id",
        "exchange",
        "exchange_label",
        "symbol",
        "side",
        "strategy",
        "quantity",
        "decision_price",
        "submitted",
        "submitted_ns",
        "ack_timeout",
        "deadline",
        "acked",
        "exchange_order_id",
        "filled",
        "notional",
        "fills",
        "last_event_ns",
        "context",
        "timed_out",
        "done",
        "in_block",
        "block_span",
    )

    def __init__(
        self,
        client_order_id: str | None,
        exchange: str,
        symbol: str,
        side: str,
        strategy: str | None,
        quantity: float | None,
        decision_price: float | None,
        ack_timeout: float,
    ) -> None:
        self.client_order_id = client_order_id
        self.exchange = exchange
        self.exchange_label = orders.state().exchange(exchange)
        self.symbol = symbol
        self.side = side
        self.strategy = strategy
        self.quantity = _positive_or_none("quantity", quantity)
        self.decision_price = _positive_or_none("decision_price", decision_price)
        self.submitted = perf_counter()
        self.submitted_ns = time.time_ns()
        if not ack_timeout > 0:
            raise ValueError(f"ack_timeout must be positive, got {ack_timeout!r}")
        self.ack_timeout = ack_timeout
        self.deadline = self.submitted + ack_timeout
        self.acked: float | None = None
        self.exchange_order_id: str | None = None
        self.filled = 0.0
        self.notional = 0.0
        self.fills = 0
        self.last_event_ns = self.submitted_ns
        self.context: SpanContext | None = None
        self.timed_out = False
        self.done = False
        #: Inside a ``trading.order`` block: its span is still open and gets the attributes.
        self.in_block = False
        self.block_span: Any = None


def _positive_or_none(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


class _Throttled:
    """A warning logged at most once per :data:`WARN_EVERY_SECONDS`, with the count in between."""

    def __init__(self) -> None:
        self.last = -math.inf
        self.suppressed = 0

    def due(self) -> tuple[bool, int]:
        now = time.monotonic()
        if now - self.last < WARN_EVERY_SECONDS:
            self.suppressed += 1
            return False, 0
        self.last = now
        suppressed, self.suppressed = self.suppressed, 0
        return True, suppressed


class _Tracker:
    def __init__(self, ack_timeout: float, max_orders: int) -> None:
        if not ack_timeout > 0:
            raise ValueError(f"ack_timeout must be positive, got {ack_timeout}")
        if max_orders < 1:
            raise ValueError(f"max_orders must be at least 1, got {max_orders}")
        self.lock = threading.Lock()
        self.ack_timeout = ack_timeout
        self.max_orders = max_orders
        self.orders: dict[str, _Life] = {}
        self.awaiting_ack: dict[str, _Life] = {}
        #: exchange label -> orders that passed their ack deadline (cumulative)
        self.timeouts: dict[str, int] = {}
        self.evicted = 0
        self.unknown_warning = _Throttled()
        self.timeout_warning = _Throttled()


_tracker = _Tracker(DEFAULT_ACK_TIMEOUT_SECONDS, DEFAULT_MAX_ORDERS)


def configure_order_tracking(
    *, ack_timeout: float = DEFAULT_ACK_TIMEOUT_SECONDS, max_orders: int = DEFAULT_MAX_ORDERS
) -> None:
    """Set the default ack deadline (seconds) and how many open orders are followed; forgets them all."""
    global _tracker
    _tracker = _Tracker(ack_timeout, max_orders)


def reset_order_tracking() -> None:
    """Forget every followed order and count, keeping the settings (tests; a forked child)."""
    configure_order_tracking(ack_timeout=_tracker.ack_timeout, max_orders=_tracker.max_orders)


# -- instruments ------------------------------------------------------------------------------


def _observe_timeouts(_options: CallbackOptions) -> Iterable[Observation]:
    _sweep()
    tracker = _tracker
    with tracker.lock:
        items = list(tracker.timeouts.items())
    return [Observation(v, {"exchange": e}) for e, v in items]


def _observe_open(_options: CallbackOptions) -> Iterable[Observation]:
    tracker = _tracker
    with tracker.lock:
        counts = dict.fromkeys(tracker.timeouts, 0)  # every exchange seen reports, 0 included
        for life in tracker.orders.values():
            counts[life.exchange_label] = counts.get(life.exchange_label, 0) + 1
    return [Observation(v, {"exchange": e}) for e, v in counts.items()]


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        self.submitted = meter.create_counter(
            "orders_submitted_total", unit="{order}", description="Orders sent to the exchange, by exchange."
        )
        self.ack_latency = meter.create_histogram(
            "order_ack_latency_seconds",
            unit="s",
            description="Submit to the exchange's acknowledgement of the order, in seconds.",
            explicit_bucket_boundaries_advisory=ACK_LATENCY_BUCKETS,
        )
        self.fill_latency = meter.create_histogram(
            "order_fill_latency_seconds",
            unit="s",
            description="Submit to the order's complete fill, in seconds.",
            explicit_bucket_boundaries_advisory=FILL_LATENCY_BUCKETS,
        )
        self.fills = meter.create_counter(
            "order_fills_total",
            unit="{fill}",
            description="Order fills (partial ones included), by exchange.",
        )
        # No unit: "bp" would be appended to the Prometheus name.
        self.slippage = meter.create_histogram(
            "order_slippage_bps",
            description="Adverse slippage of an order's average fill price against its decision price, "
            "in basis points (a price improvement counts as 0).",
            explicit_bucket_boundaries_advisory=SLIPPAGE_BUCKETS_BPS,
        )
        self.improvement = meter.create_histogram(
            "order_price_improvement_bps",
            description="Price improvement of an order's average fill price over its decision price, "
            "in basis points (adverse slippage counts as 0).",
            explicit_bucket_boundaries_advisory=SLIPPAGE_BUCKETS_BPS,
        )
        self.unknown_fills = meter.create_counter(
            "order_unknown_fills_total",
            unit="{fill}",
            description="Fills whose client order id is not an order being followed (unknown, done or dropped).",
        )
        meter.create_observable_counter(
            "order_ack_timeouts_total",
            callbacks=[_observe_timeouts],
            unit="{order}",
            description="Orders without an acknowledgement past their ack deadline, by exchange.",
        )
        meter.create_observable_up_down_counter(
            "orders_open",
            callbacks=[_observe_open],
            unit="{order}",
            description="Orders being followed: submitted and not yet done, by exchange.",
        )


_instruments: PerProvider[_Instruments] = PerProvider(_Instruments, _METER_NAME)


# -- spans ------------------------------------------------------------------------------------


def _span_attributes(life: _Life) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "trading.exchange": life.exchange,
        "trading.symbol": life.symbol,
        "trading.side": life.side,
    }
    if life.client_order_id is not None:
        attributes["trading.client_order_id"] = life.client_order_id
    if life.exchange_order_id is not None:
        attributes["trading.exchange_order_id"] = life.exchange_order_id
    if life.strategy is not None:
        attributes["trading.strategy"] = life.strategy
    return attributes


def _event_span(life: _Life, name: str, start_ns: int, attributes: dict[str, Any]) -> None:
    """A finished span ``name`` in the order's trace, linked to the span current here."""
    tracer = _tracing._tracer
    parent = life.context
    current = trace.get_current_span().get_span_context()
    links = []
    if current.is_valid and (parent is None or current.trace_id != parent.trace_id):
        links.append(Link(current, {"trading.link": "received_in"}))
    context = (
        trace.set_span_in_context(NonRecordingSpan(parent))
        if parent is not None and parent.is_valid
        else None
    )
    span = tracer.start_span(
        name,
        context=context,
        kind=SpanKind.INTERNAL,
        attributes={**_span_attributes(life), **attributes},
        links=links,
        start_time=start_ns,
    )
    span.end()


# -- the lifecycle ----------------------------------------------------------------------------


def _submit(life: _Life) -> None:
    tracker = _tracker
    evicted: _Life | None = None
    with tracker.lock:
        first = life.exchange_label not in tracker.timeouts
        tracker.timeouts.setdefault(life.exchange_label, 0)
        tracker.awaiting_ack[id_of(life)] = life
        if life.client_order_id is not None:
            previous = tracker.orders.pop(life.client_order_id, None)
            if previous is not None:
                previous.done = True
            tracker.orders[life.client_order_id] = life
            if len(tracker.orders) > tracker.max_orders:
                oldest = next(iter(tracker.orders))
                evicted = tracker.orders.pop(oldest)
                tracker.awaiting_ack.pop(id_of(evicted), None)
                tracker.evicted += 1
    inst = _instruments.get()
    if inst is not None:
        attrs = {"exchange": life.exchange_label}
        inst.submitted.add(1, attrs)
        if first:  # the series exist from an exchange's first order: "no fills" reads 0, not "no data"
            inst.fills.add(0, attrs)
            inst.unknown_fills.add(0, attrs)
    if evicted is not None and tracker.evicted == 1:
        logger.warning(
            "otel-trader: more than %d orders are open; the oldest are no longer followed (their "
            "later fills count as unknown). configure_order_tracking(max_orders=...) raises the bound.",
            tracker.max_orders,
        )


def id_of(life: _Life) -> str:
    """The key of ``life`` among orders awaiting their ack."""
    return life.client_order_id if life.client_order_id is not None else f"@{id(life)}"


def _ack(life: _Life, exchange_order_id: str | None, *, span: bool) -> None:
    if life.acked is not None:
        if exchange_order_id is not None:
            life.exchange_order_id = str(exchange_order_id)
        return
    now = perf_counter()
    life.acked = now
    if exchange_order_id is not None:
        life.exchange_order_id = str(exchange_order_id)
    with _tracker.lock:
        _tracker.awaiting_ack.pop(id_of(life), None)
    latency = now - life.submitted
    inst = _instruments.get()
    if inst is not None:
        inst.ack_latency.record(latency, {"exchange": life.exchange_label})
    attributes: dict[str, Any] = {"trading.order.ack_latency_s": latency}
    if life.timed_out:
        attributes["trading.order.ack_late"] = True
    if life.in_block:
        if span:
            _block_event(life, "trading.order.ack", attributes)
        else:  # implied by a fill or the end: no event of its own
            _set_on_block(life, attributes)
    elif span:
        _event_span(life, "trading.order.ack", life.submitted_ns, attributes)
    life.last_event_ns = time.time_ns()


def _fill(life: _Life, price: float, quantity: float, final: bool | None) -> None:
    price = float(price)
    quantity = float(quantity)
    if not price > 0 or not quantity > 0 or math.isinf(price) or math.isinf(quantity):
        raise ValueError(
            f"a fill needs a positive price and quantity, got price={price!r} quantity={quantity!r}"
        )
    if life.acked is None:  # a fill is an acknowledgement too
        _ack(life, None, span=False)
    life.filled += quantity
    life.notional += price * quantity
    life.fills += 1
    inst = _instruments.get()
    if inst is not None:
        inst.fills.add(1, {"exchange": life.exchange_label})
    attributes: dict[str, Any] = {
        "trading.fill.price": price,
        "trading.fill.quantity": quantity,
        "trading.order.filled_quantity": life.filled,
    }
    start_ns = life.last_event_ns
    life.last_event_ns = time.time_ns()
    if life.in_block:
        _block_event(life, "trading.order.fill", attributes)
    else:
        _event_span(life, "trading.order.fill", start_ns, attributes)
    complete = (
        final
        if final is not None
        else (life.quantity is not None and life.filled >= life.quantity * (1 - 1e-9))
    )
    if complete:
        _finish(life, "filled")


def _slippage(life: _Life) -> float | None:
    """Signed slippage of the average fill price in bps (positive: adverse), or None."""
    if life.decision_price is None or life.filled <= 0:
        return None
    average = life.notional / life.filled
    signed = (average - life.decision_price) / life.decision_price * 1e4
    return signed if life.side == "buy" else -signed


def _finish(life: _Life, status: str) -> None:
    """The order is done with ``status``: latencies, slippage, ``orders_total`` (outside a block)."""
    if life.done:
        return
    life.done = True
    tracker = _tracker
    with tracker.lock:
        tracker.awaiting_ack.pop(id_of(life), None)
        if life.client_order_id is not None and tracker.orders.get(life.client_order_id) is life:
            del tracker.orders[life.client_order_id]
    if life.acked is None and status != "error":  # the exchange answered: the answer was the ack
        _ack(life, None, span=False)
    now = perf_counter()
    inst = _instruments.get()
    attributes: dict[str, Any] = {"trading.order.status": status, "trading.order.fills": life.fills}
    if life.filled:
        attributes["trading.order.filled_quantity"] = life.filled
        attributes["trading.order.average_price"] = life.notional / life.filled
    if life.timed_out:
        attributes["trading.order.ack_timed_out"] = True
    if status == "filled":
        if life.fills == 0 and inst is not None:  # filled without fill reports: one fill
            inst.fills.add(1, {"exchange": life.exchange_label})
        latency = now - life.submitted
        attributes["trading.order.fill_latency_s"] = latency
        if inst is not None:
            inst.fill_latency.record(latency, {"exchange": life.exchange_label})
    slippage = _slippage(life)
    if slippage is not None:
        attributes["trading.order.slippage_bps"] = slippage
        if inst is not None:
            attrs = {"exchange": life.exchange_label, "side": life.side}
            inst.slippage.record(max(0.0, slippage), attrs)
            inst.improvement.record(max(0.0, -slippage), attrs)
    if life.in_block:
        _set_on_block(life, attributes)
        return
    _event_span(life, "trading.order.lifecycle", life.submitted_ns, attributes)
    record_order(side=life.side, status=status, exchange=life.exchange)


def _set_on_block(life: _Life, attributes: dict[str, Any]) -> None:
    span = life.block_span
    if span is not None and span.is_recording():
        span.set_attributes(attributes)


def _block_event(life: _Life, name: str, attributes: dict[str, Any]) -> None:
    span = life.block_span
    if span is not None and span.is_recording():
        span.add_event(name, attributes)


def _forget(life: _Life) -> None:
    """Stop following ``life`` without recording anything."""
    life.done = True
    with _tracker.lock:
        _tracker.awaiting_ack.pop(id_of(life), None)
        if life.client_order_id is not None and _tracker.orders.get(life.client_order_id) is life:
            del _tracker.orders[life.client_order_id]


def _sweep() -> None:
    """Count orders past their ack deadline (once each) and warn about them."""
    tracker = _tracker
    now = perf_counter()
    late: list[_Life] = []
    with tracker.lock:
        for key, life in list(tracker.awaiting_ack.items()):
            if now > life.deadline:
                del tracker.awaiting_ack[key]
                life.timed_out = True
                tracker.timeouts[life.exchange_label] = tracker.timeouts.get(life.exchange_label, 0) + 1
                late.append(life)
    if not late:
        return
    due, suppressed = tracker.timeout_warning.due()
    if not due:
        return
    first = late[0]
    trace_id = (
        format(first.context.trace_id, "032x")
        if first.context is not None and first.context.is_valid
        else None
    )
    logger.warning(
        "otel-trader: %d order(s) without an ack past the deadline (%s)%s%s",
        len(late),
        ", ".join(f"{life.exchange}/{life.client_order_id or '-'}" for life in late[:5])
        + (" …" if len(late) > 5 else ""),
        f"; trace_id={trace_id}" if trace_id else "",
        f"; {suppressed} earlier reports suppressed" if suppressed else "",
    )


# -- public API -------------------------------------------------------------------------------


def track_order(
    client_order_id: str,
    *,
    exchange: str,
    symbol: str,
    side: str,
    strategy: str | None = None,
    quantity: float | None = None,
    decision_price: float | None = None,
    ack_timeout: float | None = None,
) -> None:
    """Start following an order sent now (without ``trading.order``): a ``trading.order.submit`` span.

    ``quantity`` lets a fill that completes it finish the order; ``decision_price`` (the price the
    strategy decided at) gives the slippage; ``ack_timeout`` overrides the default deadline.
    Submitting the same id again replaces the earlier order.
    """
    if not isinstance(client_order_id, str) or not client_order_id:
        raise ValueError(f"client_order_id must be a non-empty string, got {client_order_id!r}")
    side = choice("side", side, SIDES)
    if strategy is not None:
        orders.state().strategy(strategy)
    orders.state().symbol(symbol)
    life = _Life(
        client_order_id,
        exchange,
        symbol,
        side,
        strategy,
        quantity,
        decision_price,
        ack_timeout if ack_timeout is not None else _tracker.ack_timeout,
    )
    span = _tracing._tracer.start_span(
        "trading.order.submit",
        kind=SpanKind.INTERNAL,
        attributes=_span_attributes(life),
        start_time=life.submitted_ns,
    )
    life.context = span.get_span_context()
    span.end()
    _sweep()
    _submit(life)


def _find(client_order_id: str) -> _Life | None:
    return _tracker.orders.get(client_order_id)


def order_acked(client_order_id: str, *, exchange_order_id: str | None = None) -> bool:
    """The exchange acknowledged the order (a ``trading.order.ack`` span); False if it is not followed.

    A second ack of the same order only records ``exchange_order_id``.
    """
    life = _find(client_order_id)
    if life is None:
        return False
    _ack(life, exchange_order_id, span=True)
    _sweep()
    return True


def order_filled(
    client_order_id: str,
    *,
    price: float,
    quantity: float,
    final: bool | None = None,
    exchange: str | None = None,
) -> bool:
    """A fill of ``quantity`` at ``price`` (a ``trading.order.fill`` span); False for an unknown order.

    The order is done (``filled``) when the fills reach its quantity, or when ``final=True``. A
    fill of an order that is not followed (never tracked, already done, or dropped past the
    bound) adds one to ``order_unknown_fills_total{exchange}`` (``exchange`` defaults to
    ``unknown`` there) and logs a warning.
    """
    life = _find(client_order_id)
    if life is None:
        label = orders.state().exchange(exchange if exchange is not None else UNKNOWN_EXCHANGE)
        inst = _instruments.get()
        if inst is not None:
            inst.unknown_fills.add(1, {"exchange": label})
        due, suppressed = _tracker.unknown_warning.due()
        if due:
            logger.warning(
                "otel-trader: fill of an order that is not open: client_order_id=%s exchange=%s price=%s quantity=%s%s",
                client_order_id,
                exchange or UNKNOWN_EXCHANGE,
                price,
                quantity,
                f" ({suppressed} more since the last warning)" if suppressed else "",
            )
        return False
    _fill(life, price, quantity, final)
    return True


def order_done(client_order_id: str, status: str) -> bool:
    """The order ended with ``status`` (filled, cancelled, rejected, expired, error); False if unknown.

    Counts it in ``orders_total{side,status,exchange}`` and ends its ``trading.order.lifecycle`` span.
    """
    status = choice("status", status, FINAL_STATUSES)
    life = _find(client_order_id)
    if life is None:
        return False
    _finish(life, status)
    return True


def open_orders() -> list[OrderState]:
    """The orders being followed, oldest first."""
    _sweep()
    now = perf_counter()
    with _tracker.lock:
        lives = list(_tracker.orders.values())
    return [
        OrderState(
            client_order_id=life.client_order_id or "",
            exchange=life.exchange,
            symbol=life.symbol,
            side=life.side,
            acked=life.acked is not None,
            filled_quantity=life.filled,
            age_seconds=now - life.submitted,
            ack_timed_out=life.timed_out,
        )
        for life in lives
    ]


# -- trading.order(...) -----------------------------------------------------------------------


class TrackedOrder(Order):
    """``trading.order(...)``: the execution call of :class:`otel_trader.trading.Order` plus its lifecycle.

    ``o.ack()`` and ``o.fill(price, quantity)`` record those inside the block. At exit a final
    status (the default ``filled``, ``rejected``, …, or ``error`` on an exception) ends the
    lifecycle there: the reply was the ack, and ``filled`` the fill; the attributes go on the
    ``trading.order`` span. An open status (``new``, ``partially_filled``) with a
    ``client_order_id`` leaves the order followed: ``orders_total`` counts it when it is done.
    """

    __slots__ = ("client_order_id", "_life")

    def __init__(
        self,
        strategy: str,
        side: str,
        exchange: str,
        symbol: str,
        *,
        client_order_id: str | None = None,
        quantity: float | None = None,
        decision_price: float | None = None,
        ack_timeout: float | None = None,
    ) -> None:
        super().__init__(strategy, side, exchange, symbol)
        if client_order_id is not None and (not isinstance(client_order_id, str) or not client_order_id):
            raise ValueError(f"client_order_id must be a non-empty string, got {client_order_id!r}")
        self.client_order_id = client_order_id
        self._life = _Life(
            client_order_id,
            exchange,
            symbol,
            self.side,
            strategy,
            quantity,
            decision_price,
            ack_timeout if ack_timeout is not None else _tracker.ack_timeout,
        )

    def __enter__(self) -> TrackedOrder:
        super().__enter__()
        life = self._life
        life.submitted = perf_counter()
        life.submitted_ns = life.last_event_ns = time.time_ns()
        life.deadline = life.submitted + life.ack_timeout
        span = self._span
        life.context = span.get_span_context() if span is not None else None
        life.block_span = span
        life.in_block = True
        if span is not None and span.is_recording() and self.client_order_id is not None:
            span.set_attribute("trading.client_order_id", self.client_order_id)
        _submit(life)
        return self

    async def __aenter__(self) -> TrackedOrder:
        return self.__enter__()

    def ack(self, exchange_order_id: str | None = None) -> None:
        """The exchange acknowledged the order now (its REST reply, say)."""
        _ack(self._life, exchange_order_id, span=True)

    def fill(self, price: float, quantity: float, *, final: bool | None = None) -> None:
        """A fill now; the order is done when the fills reach its quantity or with ``final=True``."""
        _fill(self._life, price, quantity, final)

    def _record(self, status: str, result: str, duration: float) -> None:
        life = self._life
        try:
            if status in FINAL_STATUSES:
                _finish(life, status)
                super()._record(status, result, duration)
            elif life.done or self.client_order_id is None:
                # Completed by fills in the block, or open without an id nothing can refer to.
                _forget(life)
                super()._record(status, result, duration)
            else:
                _record_execution(self, result, duration)
        finally:
            life.in_block = False
            life.block_span = None


def _record_execution(o: Order, result: str, duration: float) -> None:
    """``trading_orders_executed_total`` and the execution duration, without ``orders_total``."""
    inst = orders.instruments.get()
    if inst is None:
        return
    strategy = orders.state().strategy(o.strategy)
    inst.executed.add(1, {"strategy": strategy, "side": o.side, "result": result})
    inst.duration.record(duration, {"strategy": strategy, "exchange": orders.state().exchange(o.exchange)})


def _after_fork_in_child() -> None:
    # The parent's open orders are the parent's: a child that places orders follows its own.
    global _tracker
    _tracker = _Tracker(_tracker.ack_timeout, _tracker.max_orders)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
