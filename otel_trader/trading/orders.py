# Long because the usage guide in the docstring plus the order, position, PnL, WebSocket and
# rate-limit metrics, which share one bounded state (TradingState) and one instrument set.
"""Trading metrics with checked, bounded labels: orders, positions, realized PnL, websockets, rate limits.

Names, types, labels and allowed values: :mod:`otel_trader.metric_catalog` (every series also
carries OTel's ``otel_scope_*`` labels).

Two names are not the obvious ones, on purpose:

* ``realized_pnl_total`` (a Counter) cannot hold a loss: counters only go up (the SDK drops
  negative adds) and ``_total`` tells Prometheus the series is monotonic. Realized PnL is the
  gauge ``realized_pnl{symbol}`` (an observable up-down counter). Its value is the PnL recorded
  with :func:`add_realized_pnl` since the process started or since the last
  :func:`reset_realized_pnl` — call that at the day boundary for a daily figure. A
  daily-loss alert reads::

      expr: sum(realized_pnl) < -1000          # sum by (job) (...) with several bots

* ``websocket_connections_total`` as the name of a gauge: ``_total`` is reserved for counters;
  the current number of connections is ``websocket_connections``.

Allowed label values: ``side`` ∈ :data:`SIDES`, ``status`` ∈ :data:`ORDER_STATUSES`, ``result``
∈ :data:`RESULTS`, rate-limit ``status`` ∈ :data:`RATE_LIMIT_STATUSES` (case-insensitive, stored
lower-case). Anything else raises :class:`LabelValueError`. ``symbol``, ``strategy`` and
``exchange`` are free text but bounded: after :data:`DEFAULT_MAX_SYMBOLS` distinct symbols (50
strategies, 50 exchanges) new values are recorded as ``__other__`` and each such recording adds
one to ``otel_trader_label_overflow_total{label=...}``. :func:`configure_trading` changes the limits.

Usage::

    from otel_trader import trading

    async with trading.order(strategy="grid", side="buy", exchange="okx", symbol="BTC-USDT") as o:
        reply = await exchange.place(...)
        o.set_status("filled" if reply.ok else "rejected")
    trading.set_open_positions("BTC-USDT", 1, strategy="grid")
    trading.add_realized_pnl("BTC-USDT", -12.5)

Without a configured MeterProvider every call is a cheap no-op for the counters and histogram;
positions, PnL and websocket counts are kept in the process and show up once one is installed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind

from otel_trader.sdk.span_helpers import Operation
from otel_trader.trading.labels import (
    OVERFLOW_VALUE,
    BoundedLabel,
    PerProvider,
    choice,
    count_label_overflow,
)

__all__ = [
    "DEFAULT_MAX_EXCHANGES",
    "DEFAULT_MAX_OVERFLOW_POSITIONS",
    "DEFAULT_MAX_STRATEGIES",
    "DEFAULT_MAX_SYMBOLS",
    "TradingState",
    "EXECUTION_BUCKETS",
    "ORDER_STATUSES",
    "RATE_LIMIT_STATUSES",
    "RESULTS",
    "SIDES",
    "Order",
    "add_realized_pnl",
    "configure_trading",
    "get_open_positions",
    "get_realized_pnl",
    "order",
    "record_order",
    "record_rate_limit",
    "reset_realized_pnl",
    "reset_state",
    "set_open_positions",
    "state",
    "websocket_connection",
    "websocket_connected",
    "websocket_disconnected",
]

SIDES = ("buy", "sell")
ORDER_STATUSES = ("new", "filled", "partially_filled", "cancelled", "rejected", "expired", "error")
#: ``trading_orders_executed_total{result}``: the order call succeeded, the exchange refused it,
#: or it failed (exception / status "error").
RESULTS = ("success", "rejected", "error")
RATE_LIMIT_STATUSES = ("allowed", "limited")
EXECUTION_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
DEFAULT_MAX_SYMBOLS = 200
DEFAULT_MAX_STRATEGIES = 50
DEFAULT_MAX_EXCHANGES = 50
#: Open positions past a label limit whose counts are kept one by one (see set_open_positions).
DEFAULT_MAX_OVERFLOW_POSITIONS = 1000

_METER_NAME = "otel_trader.trading"

logger = logging.getLogger("otel_trader")


class TradingState:
    """Process-wide trading state read by the observable instruments at export time."""

    def __init__(
        self,
        max_symbols: int,
        max_strategies: int,
        max_exchanges: int,
        max_overflow_positions: int = DEFAULT_MAX_OVERFLOW_POSITIONS,
    ) -> None:
        if max_overflow_positions < 0:
            raise ValueError(f"max_overflow_positions must be at least 0, got {max_overflow_positions}")
        self.lock = threading.Lock()
        self.symbol = BoundedLabel("symbol", max_symbols, count_label_overflow)
        self.strategy = BoundedLabel("strategy", max_strategies, count_label_overflow)
        self.exchange = BoundedLabel("exchange", max_exchanges, count_label_overflow)
        #: (strategy label, symbol label) -> open positions, summed over the values behind an
        #: ``__other__`` label; as bounded as the labels.
        self.positions: dict[tuple[str, str], float] = {}
        #: (raw strategy, raw symbol) -> open positions, for pairs recorded under ``__other__``,
        #: so setting one again replaces its count; at most ``max_overflow_positions`` entries.
        self.overflow_positions: dict[tuple[str, str], float] = {}
        self.max_overflow_positions = max_overflow_positions
        #: set_open_positions calls past that bound: their counts were added to ``__other__``.
        self.untracked_positions = 0
        #: symbol label -> realized PnL
        self.pnl: dict[str, float] = {}
        self.websockets = 0


_state = TradingState(DEFAULT_MAX_SYMBOLS, DEFAULT_MAX_STRATEGIES, DEFAULT_MAX_EXCHANGES)


def configure_trading(
    *,
    max_symbols: int = DEFAULT_MAX_SYMBOLS,
    max_strategies: int = DEFAULT_MAX_STRATEGIES,
    max_exchanges: int = DEFAULT_MAX_EXCHANGES,
    max_overflow_positions: int = DEFAULT_MAX_OVERFLOW_POSITIONS,
) -> None:
    """Set the label limits (call at start-up). Clears positions, PnL and the websocket count.

    ``max_overflow_positions`` bounds the open positions kept one by one behind ``__other__``
    (see :func:`set_open_positions`).
    """
    global _state
    _state = TradingState(max_symbols, max_strategies, max_exchanges, max_overflow_positions)


def state() -> TradingState:
    """The current trading state (replaced by :func:`configure_trading`; look it up at each use)."""
    return _state


def reset_state() -> None:
    """Forget positions, PnL, websocket count and seen label values, keeping the limits (tests)."""
    configure_trading(
        max_symbols=_state.symbol.max_values,
        max_strategies=_state.strategy.max_values,
        max_exchanges=_state.exchange.max_values,
        max_overflow_positions=_state.max_overflow_positions,
    )


# -- instruments ------------------------------------------------------------------------------


def _observe_positions_by_symbol(_options: CallbackOptions) -> Iterable[Observation]:
    totals: dict[str, float] = {}
    with _state.lock:
        for (_, symbol), value in _state.positions.items():
            totals[symbol] = totals.get(symbol, 0.0) + value
    return [Observation(value, {"symbol": symbol}) for symbol, value in totals.items()]


def _observe_positions_by_strategy(_options: CallbackOptions) -> Iterable[Observation]:
    with _state.lock:
        items = list(_state.positions.items())
    return [Observation(value, {"strategy": s, "symbol": sym}) for (s, sym), value in items]


def _observe_pnl(_options: CallbackOptions) -> Iterable[Observation]:
    with _state.lock:
        items = list(_state.pnl.items())
    return [Observation(value, {"symbol": symbol}) for symbol, value in items]


def _observe_websockets(_options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(_state.websockets)]


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        self.orders = meter.create_counter(
            "orders_total", unit="{order}", description="Orders by side, final status and exchange."
        )
        self.executed = meter.create_counter(
            "trading_orders_executed_total",
            unit="{order}",
            description="Order executions by strategy, side and result (success, rejected, error).",
        )
        self.duration = meter.create_histogram(
            "trading_execution_duration_seconds",
            unit="s",
            description="Time to execute an order, in seconds.",
            explicit_bucket_boundaries_advisory=EXECUTION_BUCKETS,
        )
        self.rate_limit = meter.create_counter(
            "rate_limit_requests_total",
            unit="{request}",
            description="Requests seen by the rate limiter, by status (allowed, limited).",
        )
        # Observable up-down counters: additive counts read at export time (Prometheus gauges).
        meter.create_observable_up_down_counter(
            "positions_open",
            callbacks=[_observe_positions_by_symbol],
            unit="{position}",
            description="Open positions per symbol.",
        )
        meter.create_observable_up_down_counter(
            "trading_current_positions",
            callbacks=[_observe_positions_by_strategy],
            unit="{position}",
            description="Open positions per strategy and symbol.",
        )
        # No unit: a currency unit would be appended to the Prometheus name (realized_pnl_USD).
        meter.create_observable_up_down_counter(
            "realized_pnl",
            callbacks=[_observe_pnl],
            description="Realized profit and loss per symbol, in quote currency; negative is a loss.",
        )
        meter.create_observable_up_down_counter(
            "websocket_connections",
            callbacks=[_observe_websockets],
            unit="{connection}",
            description="Currently open WebSocket connections.",
        )


#: The order, execution and rate-limit instruments of the current MeterProvider.
instruments: PerProvider[_Instruments] = PerProvider(_Instruments, _METER_NAME)


# -- recording --------------------------------------------------------------------------------


def _result_for(status: str) -> str:
    if status == "rejected":
        return "rejected"
    if status == "error":
        return "error"
    return "success"


def record_order(
    *,
    side: str,
    status: str,
    exchange: str,
    strategy: str | None = None,
    result: str | None = None,
    duration: float | None = None,
) -> None:
    """Count one order in ``orders_total``; with ``strategy`` also in ``trading_orders_executed_total``.

    ``duration`` (seconds, needs ``strategy``) goes to ``trading_execution_duration_seconds``.
    ``result`` defaults from ``status``: rejected → rejected, error → error, else success.
    """
    side = choice("side", side, SIDES)
    status = choice("status", status, ORDER_STATUSES)
    result = choice("result", result, RESULTS) if result is not None else _result_for(status)
    exchange_label = _state.exchange(exchange)
    strategy_label = _state.strategy(strategy) if strategy is not None else None
    inst = instruments.get()
    if inst is None:
        return
    inst.orders.add(1, {"side": side, "status": status, "exchange": exchange_label})
    if strategy_label is not None:
        inst.executed.add(1, {"strategy": strategy_label, "side": side, "result": result})
        if duration is not None:
            inst.duration.record(duration, {"strategy": strategy_label, "exchange": exchange_label})


class Order:
    """One order being executed: a span, its duration and its counts (see :func:`order`)."""

    __slots__ = ("strategy", "side", "exchange", "symbol", "status", "result", "_op", "_span", "_start")

    def __init__(self, strategy: str, side: str, exchange: str, symbol: str) -> None:
        self.side = choice("side", side, SIDES)
        # Checked (and admitted to the bounded sets) up front, so a bad label fails before the order.
        _state.strategy(strategy)
        _state.exchange(exchange)
        _state.symbol(symbol)
        self.strategy = strategy
        self.exchange = exchange
        self.symbol = symbol
        self.status: str | None = None
        self.result: str | None = None
        self._op: Operation | None = None
        self._span: Span | None = None
        self._start = 0.0

    def set_status(self, status: str) -> None:
        """The order's final status (one of :data:`ORDER_STATUSES`); ``filled`` if never set."""
        self.status = choice("status", status, ORDER_STATUSES)

    def set_result(self, result: str) -> None:
        """Override the result (one of :data:`RESULTS`) otherwise derived from the status."""
        self.result = choice("result", result, RESULTS)

    def __enter__(self) -> Order:
        self._op = Operation(
            "trading.order",
            {
                "trading.strategy": self.strategy,
                "trading.side": self.side,
                "trading.exchange": self.exchange,
                "trading.symbol": self.symbol,
            },
            SpanKind.INTERNAL,
        )
        self._span = self._op.__enter__()
        self._start = perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        duration = perf_counter() - self._start
        if exc is not None:
            # An exception is an error whatever was set before it.
            status, result = "error", "error"
        else:
            status = self.status or "filled"
            result = self.result or _result_for(status)
        op, span = self._op, self._span
        assert op is not None and span is not None
        try:
            if span.is_recording():
                span.set_attribute("trading.order.status", status)
                span.set_attribute("trading.order.result", result)
            self._record(status, result, duration)
        finally:
            op.__exit__(exc_type, exc, tb)
            self._op = self._span = None

    def _record(self, status: str, result: str, duration: float) -> None:
        """Count the finished call (its span is still open; subclasses add to it)."""
        record_order(
            side=self.side,
            status=status,
            exchange=self.exchange,
            strategy=self.strategy,
            result=result,
            duration=duration,
        )

    async def __aenter__(self) -> Order:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


def order(
    *,
    strategy: str,
    side: str,
    exchange: str,
    symbol: str,
    client_order_id: str | None = None,
    quantity: float | None = None,
    decision_price: float | None = None,
    ack_timeout: float | None = None,
) -> Order:
    """Time, count and trace one order: ``with``/``async with trading.order(...) as o:``.

    It also feeds the order-lifecycle metrics (ack and fill latency, slippage against
    ``decision_price``); with ``client_order_id`` an order still open at exit is followed until
    it is done (:mod:`otel_trader.trading.lifecycle`, ``o.ack()``, ``o.fill(price, qty)``).

    On exit it records ``trading_execution_duration_seconds{strategy,exchange}``,
    ``orders_total{side,status,exchange}`` and ``trading_orders_executed_total{strategy,side,result}``
    and ends a ``trading.order`` span. Status is what ``o.set_status`` set (default ``filled``),
    or ``error`` when the block raises (the exception propagates). Labels are checked here,
    before the block runs: a bad ``side`` raises :class:`LabelValueError`.
    """
    from otel_trader.trading.lifecycle import TrackedOrder

    return TrackedOrder(
        strategy,
        side,
        exchange,
        symbol,
        client_order_id=client_order_id,
        quantity=quantity,
        decision_price=decision_price,
        ack_timeout=ack_timeout,
    )


def set_open_positions(symbol: str, count: float, *, strategy: str = "default") -> None:
    """Set the number of open positions of ``strategy`` in ``symbol``.

    ``positions_open{symbol}`` is the sum over strategies; ``trading_current_positions`` keeps
    the strategy. Zero removes the entry (the series then reports 0).

    Past a label limit the pair is recorded under ``__other__``, whose value is the sum of those
    pairs' counts. Up to ``max_overflow_positions`` (:func:`configure_trading`, default
    :data:`DEFAULT_MAX_OVERFLOW_POSITIONS`) such pairs are kept one by one, so setting one
    again replaces its count and zero removes it. Memory stays bounded beyond that: a further
    pair's count is added to ``__other__`` without being kept, so a later change of that pair
    adds again instead of replacing (warned once).
    """
    instruments.get()  # the observable instruments exist once a provider is installed
    symbol_label = _state.symbol(symbol)
    strategy_label = _state.strategy(strategy)
    key = (strategy_label, symbol_label)
    raw = (strategy, symbol)
    value = float(count)
    state = _state
    warn = False
    with state.lock:
        if key == raw and OVERFLOW_VALUE not in key:
            state.positions[key] = value
            return
        previous = state.overflow_positions.pop(raw, None)
        if previous is not None or len(state.overflow_positions) < state.max_overflow_positions:
            if value:
                state.overflow_positions[raw] = value
            delta = value - (previous or 0.0)
        else:
            delta = value
            state.untracked_positions += 1
            warn = state.untracked_positions == 1
        state.positions[key] = state.positions.get(key, 0.0) + delta
    if warn:
        logger.warning(
            "otel-trader: more than %d open positions are recorded under %s (past the symbol or "
            "strategy label limit); further ones are added to its total without being kept, so "
            "changing them later adds instead of replacing. Raise configure_trading(max_symbols=...) "
            "if these symbols are real.",
            state.max_overflow_positions,
            OVERFLOW_VALUE,
        )


def get_open_positions() -> dict[tuple[str, str], float]:
    """Open positions as recorded: ``{(strategy, symbol): count}`` (raw values, not labels).

    Pairs recorded under ``__other__`` appear as long as they are kept one by one (see
    :func:`set_open_positions`); beyond that bound only the ``__other__`` total has them.
    """
    with _state.lock:
        kept = {k: v for k, v in _state.positions.items() if v and OVERFLOW_VALUE not in k}
        kept.update(_state.overflow_positions)
    return kept


def add_realized_pnl(symbol: str, amount: float) -> None:
    """Add a realized profit (positive) or loss (negative) for ``symbol`` to ``realized_pnl``."""
    instruments.get()
    label = _state.symbol(symbol)
    with _state.lock:
        _state.pnl[label] = _state.pnl.get(label, 0.0) + float(amount)


def get_realized_pnl() -> dict[str, float]:
    """Realized PnL per symbol label, as ``realized_pnl`` reports it."""
    with _state.lock:
        return dict(_state.pnl)


def reset_realized_pnl() -> None:
    """Set every symbol's ``realized_pnl`` to 0, e.g. at the start of a trading day."""
    with _state.lock:
        for label in _state.pnl:
            _state.pnl[label] = 0.0


def websocket_connected() -> None:
    """One more open WebSocket connection (``websocket_connections``)."""
    instruments.get()
    with _state.lock:
        _state.websockets += 1


def websocket_disconnected() -> None:
    """One WebSocket connection fewer."""
    with _state.lock:
        _state.websockets -= 1


@contextmanager
def websocket_connection() -> Iterator[None]:
    """Count a WebSocket connection for the duration of the block, however it ends."""
    websocket_connected()
    try:
        yield
    finally:
        websocket_disconnected()


def record_rate_limit(status: str) -> None:
    """Count one rate-limiter decision: ``allowed`` or ``limited``."""
    label = choice("status", status, RATE_LIMIT_STATUSES)
    inst = instruments.get()
    if inst is not None:
        inst.rate_limit.add(1, {"status": label})
