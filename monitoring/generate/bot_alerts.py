"""The bot-health alerts: is the bot alive *and* making progress (market data, decisions, kill switch,
risk limits, order acks and fills, event loop, slippage).

Written once for Prometheus (monitoring/prometheus/alerts/bot-health.yml) and SigNoz, like the
others (:mod:`.alerts`). The thresholds and windows are one :class:`BotThresholds`:
tests/monitoring/test_bot_alerts.py builds the same expressions with seconds instead of minutes
and has a real Prometheus evaluate them against the demo bot while the demo's failures are made
to happen.

Two pieces of arithmetic the obvious expressions get wrong:

* An age gauge (``market_data_last_message_age_seconds``, ``trading_last_decision_age_seconds``)
  is computed when metrics are read, so it grows while the bot is alive and stuck. A bot that
  died leaves its last value behind on the collector's :8889 (exported series live on for the
  collector's metric expiration, 5 minutes) where it no longer changes: "age above N" alone
  would fire on a dead bot's frozen stale value, or stay on after a restart. The alerts require
  the age to have grown over the last minutes too (``delta(...) > 0``), which a frozen copy
  never does: "while the bot is up".
* "Orders but no fills": ``increase(order_fills_total[2h]) == 0`` is empty, not true, when the
  fills series does not exist, so it would never fire for an exchange that never filled.
  ``unless`` (keep the left side where the right side has no match) fires in both cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .dialect import PROM, Dialect

if TYPE_CHECKING:
    from .alerts import Alert

__all__ = ["BOT_GROUP", "BotThresholds", "bot_alerts"]

GROUP = "bot-health"
BOT_GROUP = {
    GROUP: ("bot-health.yml", """\
Bot health: is the trading bot alive and making progress, not only serving HTTP. Market-data
freshness, strategy decisions, the kill switch, risk limits, order acks and fills, event-loop lag
and slippage (otel_trader.trading: market_data, lifecycle, risk, loop_health). Proven by
../tests/bot_health_test.yml (promtool test rules) and, against the demo bot, by
tests/monitoring/test_bot_alerts.py.

Ages are computed at scrape/export time and grow while the bot is stuck; a dead bot's last value
lingers, frozen, on the collector's :8889, so the age alerts also require the age to have grown
(delta > 0). Absolute values are per scrape path, then the worst path (max by job)."""),
}


@dataclass(frozen=True)
class BotThresholds:
    """Thresholds (seconds, ratios, basis points), windows and ``for`` durations of the bot alerts."""

    stale_seconds: float = 30
    stale_for: str = "1m"
    decision_seconds: float = 300
    decision_for: str = "1m"
    #: An age must have grown within this window to count (a dead bot's frozen copy does not).
    growing: str = "2m"
    halt_window: str = "5m"
    halt_for: str = "1m"
    near_ratio: float = 0.8
    near_for: str = "5m"
    breach_for: str = "1m"
    unacked_window: str = "10m"
    unacked_for: str = "1m"
    no_fill_window: str = "2h"
    no_fill_orders: float = 4
    no_fill_for: str = "15m"
    lag_window: str = "5m"
    lag_p99_seconds: float = 0.25
    lag_for: str = "5m"
    slippage_window: str = "1h"
    slippage_p95_bps: float = 50
    slippage_orders: float = 10
    slippage_for: str = "15m"


def _per_path(d: Dialect, inner: Callable[[str], str], *labels: str, agg: str = "max") -> str:
    """``inner(grouping)`` per service and ``labels``: in Prometheus per scrape path first, then the worst path."""
    if d is PROM:
        extra = "".join(f", {label}" for label in labels)
        return f"{agg} by (job{extra}) (\n  " + inner(f"job, via{extra}").replace("\n", "\n  ") + "\n)"
    return inner(d.by("job", *labels))


def _growing_age(d: Dialect, metric: str, threshold: float, window: str, label: str) -> str:
    """The age above ``threshold`` that also grew within ``window`` (alive and stuck), per ``label``."""
    age = d.sel(metric, base=False)

    def inner(by: str) -> str:
        return (f"max by ({by}) ({age}) > {threshold:g}\n"
                f"and on ({by}) max by ({by}) (delta({age}[{window}])) > 0")

    return _per_path(d, inner, *label.split(", "))


def _increase(d: Dialect, metric: str, window: str, *labels: str, part: str = "") -> str:
    series = d.sel(metric, part=part, base=False)
    return _per_path(d, lambda by: f"sum by ({by}) (increase({series}[{window}]))", *labels)


def _quantile(d: Dialect, phi: str, metric: str, window: str, *labels: str) -> str:
    buckets = f"rate({d.sel(metric, part='bucket', base=False)}[{window}])"
    return f"histogram_quantile({phi}, sum by ({d.by('job', *labels, 'le')}) ({buckets}))"


def bot_alerts(t: BotThresholds | None = None) -> list[Alert]:
    """The bot-health alerts with thresholds ``t`` (the defaults: :class:`BotThresholds`)."""
    from .alerts import Alert  # here: alerts.py imports this module to list these alerts

    t = t or BotThresholds()
    g = GROUP

    def stale(d: Dialect) -> str:
        return _growing_age(d, "market_data_last_message_age_seconds", t.stale_seconds, t.growing, "exchange, stream")

    def not_progressing(d: Dialect) -> str:
        job = d.by("job")
        halted = d.sel("trading_halted", base=False)
        ages = _growing_age(d, "trading_last_decision_age_seconds", t.decision_seconds, t.growing, "strategy")
        return f"{ages}\nunless on ({job}) max by ({job}) ({halted}) > 0"

    def halted(d: Dialect) -> str:
        by = d.by("job", "reason")
        return (f"max by ({by}) ({d.sel('trading_halted', base=False)}) > 0\n"
                f"or max by ({by}) (increase({d.sel('trading_halts_total', base=False)}[{t.halt_window}])) > 0")

    def utilization(d: Dialect) -> str:
        return f"max by ({d.by('job', 'limit')}) ({d.sel('risk_limit_utilization_ratio', base=False)})"

    def no_fills(d: Dialect) -> str:
        job_exchange = d.by("job", "exchange")
        submitted = _increase(d, "orders_submitted_total", t.no_fill_window, "exchange")
        fills = _increase(d, "order_fills_total", t.no_fill_window, "exchange")
        return f"{submitted} > {t.no_fill_orders:g}\nunless on ({job_exchange}) {fills} > 0"

    def slippage(d: Dialect) -> str:
        p95 = _quantile(d, "0.95", "order_slippage_bps", t.slippage_window, "exchange")
        orders = _increase(d, "order_slippage_bps", t.slippage_window, "exchange", part="count")
        return f"{p95} > {t.slippage_p95_bps:g}\nand on ({d.by('job', 'exchange')}) {orders} > {t.slippage_orders:g}"

    near_signoz = f"Risk limit {{{{$limit}}}} is over {100 * t.near_ratio:g}% used"
    return [
        Alert("MarketDataStale", g, "critical", t.stale_for, stale, "above", t.stale_seconds,
              "Market data from {{ $labels.exchange }} {{ $labels.stream }} is stale on {{ $labels.job }}",
              f"No message for {{{{ $value | humanizeDuration }}}} (threshold {t.stale_seconds:g}s): the bot is "
              "trading on old prices, or not at all.",
              f"No market-data message for more than {t.stale_seconds:g} s while the bot is up.",
              f"`market_data_last_message_age_seconds` > {t.stale_seconds:g} s and still growing",
              "Bot Health: feed age and reconnects; the exchange's status page, the bot's WebSocket log "
              "(a silent socket needs a receive timeout and a reconnect)",
              why="The age grows while the bot is up and the feed silent; `delta > 0` leaves out a dead bot's "
                  "frozen copy on the collector (see the file header).",
              filtered=True),
        Alert("BotNotProgressing", g, "critical", t.decision_for, not_progressing, "above", t.decision_seconds,
              "Strategy {{ $labels.strategy }} of {{ $labels.job }} stopped deciding",
              f"No strategy evaluation for {{{{ $value | humanizeDuration }}}} (threshold {t.decision_seconds:g}s) "
              "while trading is not halted: the process answers, the bot does not work.",
              f"No strategy evaluation (trading.decision) for more than {t.decision_seconds:g} s while trading is "
              "not halted.",
              f"`trading_last_decision_age_seconds` > {t.decision_seconds:g} s and growing, trading not halted",
              "the bot's event loop (EventLoopLagHigh, blocked-loop warnings), a stuck await without a timeout, "
              "MarketDataStale (a strategy waiting for data)",
              why="A halted bot may legitimately stop evaluating: `unless` any `trading_halted` of the job is "
                  "1. The age must be growing, as for MarketDataStale.",
              filtered=True),
        Alert("TradingHalted", g, "critical", t.halt_for, halted, "above", 0,
              "Trading is halted on {{ $labels.job }}: {{ $labels.reason }}",
              "The kill switch ({{ $labels.reason }}) is set, or was set and reset within the last "
              f"{t.halt_window}; nothing is traded while it holds.",
              "The kill switch is set, or was set within the last minutes.",
              f"`trading_halted{{reason}}` = 1, or `trading_halts_total` grew within {t.halt_window}",
              "the halt's log record (reason, message, trace) and halt events on Bot Health; resume with "
              "`trading.resume(reason)` once the cause is fixed",
              why="The gauge alone misses a halt set and reset between two scrapes: the halt counter's increase "
                  "keeps it visible for the window.",
              filtered=True),
        Alert("RiskLimitNear", g, "warning", t.near_for,
              lambda d: f"{utilization(d)} >= {t.near_ratio:g} < 1", "above", t.near_ratio,
              "Risk limit {{ $labels.limit }} is over " + f"{100 * t.near_ratio:g}% used on {{{{ $labels.job }}}}",
              "{{ $value | humanizePercentage }} of the {{ $labels.limit }} limit is used.",
              f"More than {100 * t.near_ratio:g}% of a risk limit is used.",
              f"`risk_limit_utilization_ratio` ≥ {t.near_ratio:g} (and below 1)",
              "Bot Health: risk limits; the positions and PnL behind the limit",
              why="Below 1 only: a breach is RiskLimitBreached's (critical), not a second, weaker alert.",
              filtered=True, signoz_summary=near_signoz),
        Alert("RiskLimitBreached", g, "critical", t.breach_for, utilization, "above", 1,
              "Risk limit {{ $labels.limit }} breached on {{ $labels.job }}",
              "{{ $value | humanizePercentage }} of the {{ $labels.limit }} limit is used.",
              "A risk limit is used to 100% or more.",
              "`risk_limit_utilization_ratio` ≥ 1",
              "whether the bot halted itself (TradingHalted); flatten or halt by hand if not",
              why="`>= 1`: a limit used exactly to its maximum is breached. (SigNoz compares with `above 1`.)",
              prometheus=f"{utilization(PROM)} >= 1"),
        Alert("OrdersUnacknowledged", g, "warning", t.unacked_for,
              lambda d: _increase(d, "order_ack_timeouts_total", t.unacked_window, "exchange"), "above", 0,
              "Orders on {{ $labels.exchange }} are not acknowledged ({{ $labels.job }})",
              "About {{ $value | printf \"%.0f\" }} orders passed their ack deadline in the last "
              f"{t.unacked_window}: the exchange may hold orders the bot does not know about.",
              "Orders passed their ack deadline without an acknowledgement from the exchange.",
              f"`order_ack_timeouts_total` grew within {t.unacked_window}",
              "the exchange's order endpoint and user-data stream; reconcile open orders (REST) before retrying"),
        Alert("NoFillsWhileActive", g, "warning", t.no_fill_for, no_fills, "above", t.no_fill_orders,
              "Orders on {{ $labels.exchange }} are not being filled ({{ $labels.job }})",
              "About {{ $value | printf \"%.0f\" }} orders were submitted in the last "
              f"{t.no_fill_window} and none was filled.",
              f"More than {t.no_fill_orders:g} orders submitted and not one fill within {t.no_fill_window}.",
              f"> {t.no_fill_orders:g} orders submitted and no fill within {t.no_fill_window}",
              "prices against the book (limit orders away from the market), rejections (orders_total), the "
              "user-data stream (fills happen but are not received)",
              why="`unless`, not `== 0`: an exchange without any fills series must fire too (see the file header).",
              filtered=True),
        Alert("EventLoopLagHigh", g, "warning", t.lag_for,
              lambda d: _quantile(d, "0.99", "asyncio_event_loop_lag_seconds", t.lag_window), "above",
              t.lag_p99_seconds, "Event loop of {{ $labels.job }} is lagging",
              "p99 event-loop lag is {{ $value | humanizeDuration }} "
              f"(threshold {t.lag_p99_seconds:g}s): callbacks, fills and market data wait that long.",
              f"p99 event-loop lag above {t.lag_p99_seconds:g} s.",
              f"p99 of `asyncio_event_loop_lag_seconds` > {t.lag_p99_seconds:g} s",
              "the blocked-loop warnings in the bot's log (task, frames, trace id): a synchronous call in a "
              "coroutine, CPU-heavy work to move to a thread or process",
              why="The lag is time-weighted (probes held back by a block are counted), so p99 is the lag exceeded "
                  "1% of the time. Per job: both scrape paths double every bucket alike."),
        Alert("SlippageHigh", g, "warning", t.slippage_for, slippage, "above", t.slippage_p95_bps,
              "Slippage on {{ $labels.exchange }} is high ({{ $labels.job }})",
              "p95 adverse slippage is {{ $value | printf \"%.1f\" }} bps over "
              f"{t.slippage_window} (threshold "
              f"{t.slippage_p95_bps:g} bps).",
              f"p95 adverse slippage above {t.slippage_p95_bps:g} bps.",
              f"p95 of `order_slippage_bps` > {t.slippage_p95_bps:g} bps with > {t.slippage_orders:g} orders "
              f"in {t.slippage_window}",
              "order sizes against the book's depth, stale decision prices (MarketDataStale, market_data_lag), "
              "the exchange's status",
              why="Adverse side only (a price improvement counts as 0), and only with enough orders in the "
                  "window for a p95 to mean something.",
              filtered=True),
    ]
