"""The "Bot Health" dashboard: is it trading, is its data fresh, how close is it to its limits,
how long do its orders take. Written once for Grafana and SigNoz like the others (:mod:`.dashboards`).

The top row answers at a glance (stats with the alerts' thresholds as colours); the rows below
are the time series behind each answer.
"""

from __future__ import annotations

from .bot_alerts import BotThresholds
from .dialect import Dialect
from .model import (
    Builder,
    BuilderQuery,
    Dashboard,
    Panel,
    Query,
    gauge,
    increase_sum,
    q,
    quantile,
    rate_sum,
    row,
)

__all__ = ["bot_health"]

HALTED_MAPPINGS = (
    {"type": "value", "options": {"0": {"text": "TRADING", "color": "green", "index": 0},
                                  "1": {"text": "HALTED", "color": "red", "index": 1}}},
)


def _feed_quantiles(d: Dialect) -> list[Query]:
    labels = ("exchange", "stream")
    return [q(quantile(d, phi, "market_data_lag_seconds", labels), f"p{phi[2:]} " + d.legend(*labels))
            for phi in ("0.50", "0.99")]


def _latency(metric: str) -> object:
    def queries(d: Dialect) -> list[Query]:
        return [q(quantile(d, phi, metric, ("exchange",)), f"p{phi[2:]} " + d.legend("exchange"))
                for phi in ("0.50", "0.95")]

    return queries


def bot_health() -> Dashboard:
    t = BotThresholds()
    stale, decision = t.stale_seconds, t.decision_seconds
    panels = [
        row("At a glance"),
        Panel("Trading", "stat", lambda d: [q(gauge(d, "trading_halted", agg="max"))],
              w=4, h=5, mappings=HALTED_MAPPINGS, thresholds=((None, "green"), (1.0, "red")),
              description="HALTED while any kill-switch reason is set (trading_halted); the TradingHalted alert."),
        Panel("Last Decision", "stat", lambda d: [q(gauge(d, "trading_last_decision_age_seconds", agg="max"))],
              unit="s", w=4, h=5, thresholds=((None, "green"), (decision / 5, "yellow"), (decision, "red")),
              description=f"Seconds since the strategy last evaluated (the oldest strategy); BotNotProgressing "
                          f"fires above {decision:g} s while not halted."),
        Panel("Oldest Feed", "stat", lambda d: [q(gauge(d, "market_data_last_message_age_seconds", agg="max"))],
              unit="s", w=4, h=5, thresholds=((None, "green"), (stale / 6, "yellow"), (stale, "red")),
              description=f"Seconds since the stalest feed's last message; MarketDataStale fires above {stale:g} s."),
        Panel("Closest Risk Limit", "stat", lambda d: [q(gauge(d, "risk_limit_utilization_ratio", agg="max"))],
              unit="percentunit", w=4, h=5, decimals=1,
              thresholds=((None, "green"), (t.near_ratio, "yellow"), (1.0, "red")),
              description="The most used risk limit (used / maximum); RiskLimitNear from 80 %, RiskLimitBreached at 100 %."),
        Panel("Orders Open", "stat", lambda d: [q(gauge(d, "orders_open"))],
              w=4, h=5, decimals=0, description="Orders submitted and not yet done (acked, partially filled or waiting)."),
        Panel("Fill Latency P95", "stat", lambda d: [q(quantile(d, "0.95", "order_fill_latency_seconds", window="15m"))],
              unit="s", w=4, h=5, thresholds=((None, "green"), (5.0, "yellow"), (60.0, "red")),
              description="95th percentile of submit → complete fill over the last 15 minutes."),
        row("Is it trading?"),
        Panel("Halted by Reason", "timeseries", lambda d: [q(gauge(d, "trading_halted", by=("reason",), agg="max"),
                                                              d.legend("reason"))],
              min=0, max=1, decimals=0, description="1 while trading is halted for the reason (kill switch)."),
        Panel("Halts", "timeseries", lambda d: [q(increase_sum(d, "trading_halts_total", by=("reason",), window="5m"),
                                                   d.legend("reason"))],
              decimals=0, description="Halts per reason in the last 5 minutes: a halt reset between two scrapes "
                                      "shows here though not in the gauge."),
        Panel("Decisions per Minute", "timeseries", lambda d: [q(
            f"{rate_sum(d, 'trading_decisions_total', by=('strategy',))} * 60", d.legend("strategy"))],
              unit="short", description="Strategy evaluations (trading.decision) per minute."),
        Panel("Orders Submitted and Fills", "timeseries", lambda d: [
            q(rate_sum(d, "orders_submitted_total", by=("exchange",)), "submitted " + d.legend("exchange")),
            q(rate_sum(d, "order_fills_total", by=("exchange",)), "fills " + d.legend("exchange"))],
              unit="ops", description="Orders sent and fills received per second; NoFillsWhileActive fires when "
                                      "orders go out and nothing fills for hours."),
        row("Is its data fresh?"),
        Panel("Feed Age", "timeseries", lambda d: [q(
            gauge(d, "market_data_last_message_age_seconds", by=("exchange", "stream"), agg="max"),
            d.legend("exchange", "stream"))],
              unit="s", thresholds=((None, "green"), (stale, "red")),
              description="Seconds since each feed's last message, computed at scrape time: a stalled feed climbs."),
        Panel("Market Data Lag", "timeseries", _feed_quantiles, unit="s",
              description="Receive time minus the exchange's event time, p50 and p99 per feed."),
        Panel("Messages per Second", "timeseries", lambda d: [q(
            rate_sum(d, "market_data_messages_total", by=("exchange", "stream")), d.legend("exchange", "stream"))],
              unit="ops"),
        Panel("Reconnects and Sequence Gaps", "timeseries", lambda d: [
            q(increase_sum(d, "market_data_reconnects_total", by=("stream",), window="5m"), "reconnects " + d.legend("stream")),
            q(increase_sum(d, "market_data_sequence_gaps_total", by=("stream",), window="5m"), "gaps " + d.legend("stream"))],
              decimals=0, description="In the last 5 minutes, per stream."),
        row("How close to its limits?"),
        Panel("Risk Limit Utilization", "bargauge", lambda d: [q(
            gauge(d, "risk_limit_utilization_ratio", by=("limit",), agg="max"), d.legend("limit"))],
              unit="percentunit", min=0, max=1, thresholds=((None, "green"), (t.near_ratio, "yellow"), (1.0, "red")),
              description="Used / maximum per registered limit, now.",
              signoz=Builder((BuilderQuery("risk_limit_utilization_ratio", "latest", "max", "last", ("limit",)),))),
        Panel("Risk Limits Over Time", "timeseries", lambda d: [q(
            gauge(d, "risk_limit_utilization_ratio", by=("limit",), agg="max"), d.legend("limit"))],
              unit="percentunit", thresholds=((None, "green"), (t.near_ratio, "yellow"), (1.0, "red"))),
        Panel("Exposure by Asset", "timeseries", lambda d: [q(gauge(d, "trading_exposure", by=("asset",), agg="max"),
                                                              d.legend("asset"))],
              decimals=2, description="Exposure per asset in quote currency (negative: short)."),
        Panel("Balances", "timeseries", lambda d: [q(gauge(d, "trading_balance", by=("asset",), agg="max"),
                                                     d.legend("asset"))],
              decimals=4, description="Balance per asset, in the asset's units."),
        row("How long do orders take?"),
        Panel("Ack Latency", "timeseries", _latency("order_ack_latency_seconds"), unit="s", w=8,
              description="Submit → the exchange's acknowledgement, p50 and p95 per exchange."),
        Panel("Fill Latency", "timeseries", _latency("order_fill_latency_seconds"), unit="s", w=8,
              description="Submit → complete fill, p50 and p95 per exchange."),
        Panel("Adverse Slippage", "timeseries", lambda d: [
            q(quantile(d, phi, "order_slippage_bps", ("exchange",), window="15m"), f"p{phi[2:]} " + d.legend("exchange"))
            for phi in ("0.50", "0.95")],
              w=8, decimals=1, description="Basis points against the decision price (price improvements count as 0); "
                                           "SlippageHigh fires when the hourly p95 passes 50 bps."),
        Panel("Acks Missed and Unknown Fills", "timeseries", lambda d: [
            q(increase_sum(d, "order_ack_timeouts_total", by=("exchange",), window="5m"), "no ack " + d.legend("exchange")),
            q(increase_sum(d, "order_unknown_fills_total", by=("exchange",), window="5m"),
              "unknown fills " + d.legend("exchange"))],
              decimals=0, description="Orders past their ack deadline, and fills of orders the bot does not follow, "
                                      "in the last 5 minutes."),
        Panel("Event Loop Lag", "timeseries", lambda d: [
            q(quantile(d, phi, "asyncio_event_loop_lag_seconds"), f"p{phi[2:]}") for phi in ("0.50", "0.99")],
              unit="s", thresholds=((None, "green"), (t.lag_p99_seconds, "red")),
              description="How late the event loop runs a callback (time-weighted); EventLoopLagHigh fires when "
                          "p99 passes 0.25 s. The blocked-loop warnings in the log name the task and trace."),
    ]
    from .dashboards import app_variables

    return Dashboard("bot-health", "otel-trader-bot", "Bot Health",
                     "Is the bot trading, is its market data fresh, how close is it to its risk limits, how long do "
                     "its orders take (otel_trader.trading: feeds, order lifecycle, risk state, event loop).",
                     ["otel-trader", "trading", "bot"], panels, app_variables(), time_from="now-3h")
