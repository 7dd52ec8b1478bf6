"""The trading domain: orders, positions, PnL, WebSockets and rate limits, market-data
freshness, the order lifecycle, risk and liveness state, event-loop health, exchange calls and
Redis pools, every label checked and bounded.

Usage::

    from otel_trader import trading

    async with trading.order(strategy="grid", side="buy", exchange="okx", symbol="BTC-USDT") as o:
        reply = await exchange.place(...)
        o.set_status("filled" if reply.ok else "rejected")
    trading.set_open_positions("BTC-USDT", 1, strategy="grid")
    trading.feed("binance", "BTC-USDT@trade").message(event_time=msg["E"], sequence=msg.get("u"))

The modules: :mod:`~otel_trader.trading.labels` (the label and instrument-cache policy they all
use), :mod:`~otel_trader.trading.orders`, :mod:`~otel_trader.trading.market_data`,
:mod:`~otel_trader.trading.lifecycle`, :mod:`~otel_trader.trading.risk`,
:mod:`~otel_trader.trading.loop_health`, :mod:`~otel_trader.trading.exchanges` and
:mod:`~otel_trader.trading.redis_pool`.
"""

from __future__ import annotations

from otel_trader.trading.labels import (
    MAX_LABEL_LENGTH,
    OVERFLOW_VALUE,
    BoundedLabel,
    LabelValueError,
    PerProvider,
    count_label_overflow,
)
from otel_trader.trading.lifecycle import (
    OrderState,
    TrackedOrder,
    configure_order_tracking,
    open_orders,
    order_acked,
    order_done,
    order_filled,
    track_order,
)
from otel_trader.trading.loop_health import monitor_event_loop
from otel_trader.trading.market_data import Feed, configure_feeds, feed, feeds
from otel_trader.trading.orders import (
    DEFAULT_MAX_EXCHANGES,
    DEFAULT_MAX_OVERFLOW_POSITIONS,
    DEFAULT_MAX_STRATEGIES,
    DEFAULT_MAX_SYMBOLS,
    EXECUTION_BUCKETS,
    ORDER_STATUSES,
    RATE_LIMIT_STATUSES,
    RESULTS,
    SIDES,
    Order,
    add_realized_pnl,
    configure_trading,
    get_open_positions,
    get_realized_pnl,
    order,
    record_order,
    record_rate_limit,
    reset_realized_pnl,
    reset_state,
    set_open_positions,
    websocket_connected,
    websocket_connection,
    websocket_disconnected,
)
from otel_trader.trading.risk import (
    HaltEvent,
    RiskLimit,
    decision,
    halt,
    halt_events,
    halt_reasons,
    is_halted,
    register_halt_reasons,
    resume,
    risk_limit,
    risk_limits,
    set_balance,
    set_exposure,
)

__all__ = [
    "BoundedLabel",
    "DEFAULT_MAX_EXCHANGES",
    "DEFAULT_MAX_OVERFLOW_POSITIONS",
    "DEFAULT_MAX_STRATEGIES",
    "DEFAULT_MAX_SYMBOLS",
    "MAX_LABEL_LENGTH",
    "EXECUTION_BUCKETS",
    "Feed",
    "HaltEvent",
    "LabelValueError",
    "ORDER_STATUSES",
    "OVERFLOW_VALUE",
    "Order",
    "OrderState",
    "PerProvider",
    "RATE_LIMIT_STATUSES",
    "RESULTS",
    "RiskLimit",
    "SIDES",
    "TrackedOrder",
    "add_realized_pnl",
    "configure_feeds",
    "configure_order_tracking",
    "configure_trading",
    "count_label_overflow",
    "decision",
    "feed",
    "feeds",
    "get_open_positions",
    "get_realized_pnl",
    "halt",
    "halt_events",
    "halt_reasons",
    "is_halted",
    "monitor_event_loop",
    "open_orders",
    "order",
    "order_acked",
    "order_done",
    "order_filled",
    "record_order",
    "record_rate_limit",
    "register_halt_reasons",
    "reset_realized_pnl",
    "reset_state",
    "resume",
    "risk_limit",
    "risk_limits",
    "set_balance",
    "set_exposure",
    "set_open_positions",
    "track_order",
    "websocket_connected",
    "websocket_connection",
    "websocket_disconnected",
]
