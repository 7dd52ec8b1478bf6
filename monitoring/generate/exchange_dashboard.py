"""The "Exchanges" dashboard: latency, errors, rate-limit headroom and clock skew per exchange and
method, and the WebSocket clients (market data). Written once for Grafana and SigNoz like the
others (:mod:`.dashboards`), from the ccxt integration's ``exchange_*`` metrics.

The top row answers at a glance, with the alerts' thresholds (:mod:`.exchange_alerts`) as colours.
"""

from __future__ import annotations

from .dialect import Dialect
from .exchange_alerts import ExchangeThresholds
from .model import (
    ERROR_STEPS,
    Dashboard,
    Panel,
    Query,
    gauge,
    increase_sum,
    percent_of,
    q,
    quantile,
    rate_sum,
    row,
)

__all__ = ["exchanges"]

ONLY_FAILURES = "exchange_errors_total exists once a call failed"
NO_RECONNECT = "a feed that never drops never reconnects"


def _latency(phi: str) -> object:
    def queries(d: Dialect) -> list[Query]:
        labels = ("exchange", "method")
        return [q(quantile(d, phi, "exchange_request_duration_seconds", labels), d.legend(*labels))]

    return queries


def _error_ratio(d: Dialect) -> list[Query]:
    by = d.grouped("exchange_requests_total", "exchange")
    errors = d.sel("exchange_requests_total", 'outcome="error"')
    failed = f"sum by ({by}) (rate({errors}[{d.rate}]))"
    every = f"sum by ({by}) (rate({d.sel('exchange_requests_total')}[{d.rate}]))"
    return [q(f"100 * ({failed}) / ({every} > 0)", d.legend("exchange"))]


def _since_success(d: Dialect, by: tuple[str, ...] = ()) -> str:
    last = d.sel("exchange_last_success_timestamp_seconds")
    if by:
        return f"min by ({d.grouped('exchange_last_success_timestamp_seconds', *by)}) (time() - {last})"
    return f"min(time() - {last})"


def exchanges() -> Dashboard:
    t = ExchangeThresholds()
    skew_steps = ((None, "green"), (t.skew_seconds / 2, "yellow"), (t.skew_seconds, "red"))
    panels = [
        row("At a glance"),
        Panel("Error Ratio", "stat", lambda d: [q(percent_of(d, "exchange_requests_total", 'outcome="error"', "5m"))],
              unit="percent", w=5, h=5, decimals=2, thresholds=ERROR_STEPS,
              description=f"Failed exchange calls over the last 5 minutes (rejections are answers, not failures); "
                          f"ExchangeErrorRatioHigh fires above {100 * t.error_ratio:g} %."),
        Panel("P95 Latency", "stat", lambda d: [q(quantile(d, "0.95", "exchange_request_duration_seconds", window="5m"))],
              unit="s", w=5, h=5,
              thresholds=((None, "green"), (t.latency_p95_seconds / 2, "yellow"), (t.latency_p95_seconds, "red")),
              description=f"95th percentile of all exchange calls; ExchangeLatencyHigh fires above "
                          f"{t.latency_p95_seconds:g} s (order and account calls)."),
        Panel("Rate-Limit Headroom", "stat", lambda d: [q(
            f"1 - {gauge(d, 'exchange_rate_limit_used_ratio', agg='max')}")],
              unit="percentunit", w=5, h=5, decimals=0,
              thresholds=((None, "red"), (1 - t.used_ratio, "yellow"), (0.5, "green")),
              description=f"What is left of the most used rate limit (the venue's usage headers); "
                          f"ExchangeRateLimitHeadroomLow fires below {100 * (1 - t.used_ratio):g} %."),
        Panel("Clock Skew", "stat", lambda d: [q(f"max(abs({d.sel('exchange_clock_skew_seconds')}))")],
              unit="s", w=5, h=5, decimals=3, thresholds=skew_steps,
              description=f"The largest difference between our clock and an exchange's; ExchangeClockSkewHigh fires "
                          f"above {t.skew_seconds:g} s (Binance refuses requests 1 s ahead: -1021)."),
        Panel("Since Last Success", "stat", lambda d: [q(_since_success(d))],
              unit="s", w=4, h=5, decimals=0,
              thresholds=((None, "green"), (60.0, "yellow"), (t.no_success_seconds, "red")),
              description=f"Seconds since the last successful exchange call; ExchangeNoSuccessfulCall fires above "
                          f"{t.no_success_seconds:g} s while the bot is up."),
        row("Calls"),
        Panel("Calls per Second by Outcome", "timeseries", lambda d: [q(
            rate_sum(d, "exchange_requests_total", by=("exchange", "outcome")), d.legend("exchange", "outcome"))],
              unit="ops", stack=True,
              description="success, rejected (the venue answered no), error (failed), cancelled (by the caller)."),
        Panel("Error Ratio by Exchange", "timeseries", _error_ratio, unit="percent",
              thresholds=ERROR_STEPS, description="Failed calls / all calls per exchange."),
        Panel("P95 Latency by Method", "timeseries", _latency("0.95"), unit="s",
              thresholds=((None, "green"), (t.latency_p95_seconds, "red")),
              description="95th percentile per exchange and ccxt method (unified or implicit)."),
        Panel("P50 Latency by Method", "timeseries", _latency("0.50"), unit="s"),
        Panel("Errors by Class", "timeseries", lambda d: [q(
            rate_sum(d, "exchange_errors_total", by=("exchange", "error")), d.legend("exchange", "error"),
            empty_when_healthy=ONLY_FAILURES)],
              unit="ops", w=24,
              description="Failed and rejected calls per second by ccxt exception class (RateLimitExceeded, "
                          "InvalidNonce, InsufficientFunds, …)."),
        row("Limits and clock"),
        Panel("Rate Limit Used", "timeseries", lambda d: [q(
            gauge(d, "exchange_rate_limit_used_ratio", by=("exchange", "limit"), agg="max"),
            d.legend("exchange", "limit"))],
              unit="percentunit", min=0, max=1, w=8,
              thresholds=((None, "green"), (t.used_ratio, "red")),
              description="Used share of each limit the venue reports (Binance weight and order counts, Bybit and "
                          "Gate per endpoint, KuCoin, RateLimit-*); 0 once its window ended."),
        Panel("Clock Skew by Exchange", "timeseries", lambda d: [q(
            gauge(d, "exchange_clock_skew_seconds", by=("exchange",), agg="max"), d.legend("exchange"))],
              unit="s", w=8, decimals=3,
              description="Exchange clock minus ours (positive: the exchange is ahead), from fetch_time() "
                          "(±half a round trip) or the Date header (±0.5 s)."),
        Panel("Since Last Success by Exchange", "timeseries", lambda d: [q(
            _since_success(d, ("exchange",)), d.legend("exchange"))],
              unit="s", w=8, thresholds=((None, "green"), (t.no_success_seconds, "red"))),
        row("WebSocket clients"),
        Panel("WebSocket Connections", "timeseries", lambda d: [q(
            gauge(d, "websocket_client_connections", by=("server", "stream")), d.legend("server", "stream"))],
              w=12, decimals=0, description="Open WebSocket client connections per server and stream."),
        Panel("WebSocket Messages per Second", "timeseries", lambda d: [q(
            rate_sum(d, "websocket_client_messages_total", 'direction="received"', by=("server", "stream")),
            d.legend("server", "stream"))],
              unit="ops", w=12, description="Messages received per stream (counted, never one span each)."),
        Panel("WebSocket Reconnects", "timeseries", lambda d: [q(
            increase_sum(d, "websocket_client_reconnects_total", by=("server", "stream"), window="15m"),
            d.legend("server", "stream"), empty_when_healthy=NO_RECONNECT)],
              w=12, decimals=0, description="Reconnects per stream in the last 15 minutes."),
    ]
    from .dashboards import app_variables

    return Dashboard("exchanges", "otel-trader-exchanges", "Exchanges",
                     "The exchanges the bot trades on: call latency and errors per exchange and ccxt method, "
                     "rate-limit headroom, clock skew, the last successful call, and the WebSocket clients "
                     "(otel_trader.trading.exchanges, the ccxt and websockets integrations).",
                     ["otel-trader", "trading", "exchanges"], panels, app_variables(), time_from="now-3h")
