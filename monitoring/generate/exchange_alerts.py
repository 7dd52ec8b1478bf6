"""The exchange alerts: the venue the bot trades on is failing, slow, about to rate-limit it, out of
clock sync, or has not answered successfully for minutes while the bot is up.

Written once for Prometheus (monitoring/prometheus/alerts/exchanges.yml) and SigNoz like the others
(:mod:`.alerts`), from the ``exchange_*`` metrics of the ccxt integration (otel_trader.trading.exchanges).
Thresholds are one :class:`ExchangeThresholds`; ../tests/exchanges_test.yml proves each alert.

Two pieces of arithmetic the obvious expressions get wrong:

* ``time() - exchange_last_success_timestamp_seconds`` grows for a dead bot too: its last value
  lingers, frozen, on the collector's :8889 for the metric expiration (5 minutes). "While the bot
  is up" is the process still spending CPU (``process_cpu_seconds_total`` grew), which a frozen
  copy never does. Per scrape path the freshest (``min``) wins, so one stale path cannot fire it.
* Error ratio and p95 are unchanged by the two scrape paths (both double), so they are
  ``sum by (job, exchange)``; ``load_markets``/``fetch_markets``/``fetch_currencies`` download
  megabytes and are left out of the latency alert, which is about order and account calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .alerts import Alert
from .dialect import PROM, Dialect

__all__ = ["EXCHANGE_GROUP", "ExchangeThresholds", "exchange_alerts"]

GROUP = "exchanges"
EXCHANGE_GROUP = {
    GROUP: ("exchanges.yml", """\
Exchange alerts: the venue's calls fail, are slow, approach its rate limit, the clocks drift apart,
or nothing succeeded for minutes while the bot is up (otel_trader.trading.exchanges, the ccxt integration).
Proven by ../tests/exchanges_test.yml (promtool test rules).

Ratios and quantiles aggregate `sum by (job, exchange)` (both scrape paths double alike); gauges
take the worst path (`max`), the no-success age the freshest (`min`); "while the bot is up" is
`process_cpu_seconds_total` still growing (a dead bot's frozen copy on the collector does not)."""),
}

#: Calls that move megabytes (market lists): their latency is not the venue's health.
BULK_METHODS = "load_markets|fetch_markets|fetch_currencies"


@dataclass(frozen=True)
class ExchangeThresholds:
    """Thresholds and ``for`` durations of the exchange alerts."""

    error_ratio: float = 0.05
    error_for: str = "5m"
    latency_p95_seconds: float = 2.0
    latency_for: str = "10m"
    used_ratio: float = 0.8
    used_for: str = "1m"
    skew_seconds: float = 1.0
    skew_for: str = "5m"
    no_success_seconds: float = 600
    no_success_for: str = "1m"
    window: str = "5m"


def _worst(d: Dialect, inner: Callable[[str], str], labels: str, agg: str = "max") -> str:
    """``inner(grouping)`` per ``labels``: in Prometheus per scrape path first, then the worst path."""
    if d is PROM:
        return f"{agg} by ({labels}) (\n  " + inner(f"{labels}, via").replace("\n", "\n  ") + "\n)"
    return inner(", ".join(d.label(label.strip()) for label in labels.split(",")))


def exchange_alerts(t: ExchangeThresholds | None = None) -> list[Alert]:
    """The exchange alerts with thresholds ``t`` (the defaults: :class:`ExchangeThresholds`)."""
    t = t or ExchangeThresholds()
    g = GROUP

    def error_ratio(d: Dialect) -> str:
        by = d.by("job", "exchange")
        errors = d.sel("exchange_requests_total", 'outcome="error"', base=False)
        failed = f"rate({errors}[{t.window}])"
        every = f"rate({d.sel('exchange_requests_total', base=False)}[{t.window}])"
        return f"sum by ({by}) ({failed})\n/ (sum by ({by}) ({every}) > 0)"

    def latency(d: Dialect) -> str:
        series = d.sel("exchange_request_duration_seconds", f'method!~"{BULK_METHODS}"', part="bucket", base=False)
        return f"histogram_quantile(0.95, sum by ({d.by('job', 'exchange', 'le')}) (rate({series}[{t.window}])))"

    def used(d: Dialect) -> str:
        ratio = d.sel("exchange_rate_limit_used_ratio", base=False)
        return _worst(d, lambda by: f"max by ({by}) ({ratio})", "job, exchange, limit")

    def skew(d: Dialect) -> str:
        value = d.sel("exchange_clock_skew_seconds", base=False)
        return _worst(d, lambda by: f"max by ({by}) (abs({value}))", "job, exchange")

    def no_success(d: Dialect) -> str:
        last = d.sel("exchange_last_success_timestamp_seconds", base=False)
        cpu = d.sel("process_cpu_seconds_total", base=False)
        job = d.by("job")
        age = _worst(d, lambda by: f"min by ({by}) (time() - {last})", "job, exchange", agg="min")
        return (f"{age} > {t.no_success_seconds:g}\n"
                f"and on ({job}) max by ({job}) (increase({cpu}[{t.window}])) > 0")

    minutes = f"{t.no_success_seconds / 60:g}"
    return [
        Alert("ExchangeErrorRatioHigh", g, "warning", t.error_for, error_ratio, "above", t.error_ratio,
              "Calls to {{ $labels.exchange }} fail ({{ $labels.job }})",
              "{{ $value | humanizePercentage }} of the calls to {{ $labels.exchange }} failed over the last "
              f"{t.window} (threshold {100 * t.error_ratio:g}%): network, timeouts, rate limits, maintenance, "
              "nonce or authentication errors.",
              f"More than {100 * t.error_ratio:g}% of the calls to an exchange fail.",
              f"`exchange_requests_total{{outcome=\"error\"}}` / all calls > {100 * t.error_ratio:g}% over "
              f"{t.window}",
              "Exchanges: errors by class (`exchange_errors_total`); the venue's status page; "
              "ExchangeRateLimitHeadroomLow and ExchangeClockSkewHigh (429s, -1021)",
              why="Rejections (invalid order, insufficient funds) are the venue answering no, not failing: "
                  "outcome=\"rejected\" is not counted."),
        Alert("ExchangeLatencyHigh", g, "warning", t.latency_for, latency, "above", t.latency_p95_seconds,
              "Calls to {{ $labels.exchange }} are slow ({{ $labels.job }})",
              "p95 of the calls to {{ $labels.exchange }} is {{ $value | humanizeDuration }} "
              f"(threshold {t.latency_p95_seconds:g}s): orders go out late.",
              f"p95 exchange call latency above {t.latency_p95_seconds:g} s.",
              f"p95 of `exchange_request_duration_seconds` > {t.latency_p95_seconds:g} s (market-list downloads "
              "excluded)",
              "Exchanges: p95 by method; the HTTP spans under the slow `ccxt.<exchange>.<method>` spans "
              "(connect vs server time); ccxt's own rate limiter (enableRateLimit) waiting",
              why=f"{BULK_METHODS.replace('|', ', ')} download the market list (megabytes): their latency "
                  "says nothing about order calls."),
        Alert("ExchangeRateLimitHeadroomLow", g, "warning", t.used_for, used, "above", t.used_ratio,
              "{{ $labels.exchange }} rate limit {{ $labels.limit }} is nearly used up ({{ $labels.job }})",
              "{{ $value | humanizePercentage }} of the {{ $labels.limit }} limit is used: the venue starts "
              "answering 429 (and bans after repeated 429s).",
              f"Less than {100 * (1 - t.used_ratio):g}% of an exchange rate limit is left.",
              f"`exchange_rate_limit_used_ratio` > {t.used_ratio:g}",
              "Exchanges: headroom per limit; what polls the venue (use its WebSocket streams), several bots "
              "sharing one IP or API key",
              why="The venue's own usage headers (Binance weight, Bybit/Gate per endpoint), so other processes "
                  "on the same key or IP count too."),
        Alert("ExchangeClockSkewHigh", g, "warning", t.skew_for, skew, "above", t.skew_seconds,
              "Clock of {{ $labels.job }} is off from {{ $labels.exchange }}",
              "The clocks differ by {{ $value | humanizeDuration }} (threshold "
              f"{t.skew_seconds:g}s): signed requests get refused (Binance -1021, InvalidNonce).",
              f"The local clock and the exchange's differ by more than {t.skew_seconds:g} s.",
              f"|`exchange_clock_skew_seconds`| > {t.skew_seconds:g} s",
              "the host's time sync (chronyc tracking / timedatectl); ccxt's adjustForTimeDifference option",
              why="fetch_time() is precise to half a round trip, the Date header to ±0.5 s; the threshold sits "
                  "above both, and `for` rides out single estimates."),
        Alert("ExchangeNoSuccessfulCall", g, "critical", t.no_success_for, no_success, "above",
              t.no_success_seconds,
              "No successful call to {{ $labels.exchange }} for " + minutes + " minutes ({{ $labels.job }})",
              "The last successful call to {{ $labels.exchange }} was {{ $value | humanizeDuration }} ago "
              "while the bot is up: it cannot trade there.",
              f"No successful call to an exchange for {minutes} minutes while the bot is up.",
              f"`time() - exchange_last_success_timestamp_seconds` > {t.no_success_seconds:g} s and the process "
              "still spends CPU",
              "ExchangeErrorRatioHigh (failing) or no calls at all (a stuck loop: BotNotProgressing); the venue's "
              "status page; credentials (AuthenticationError)",
              why="A dead bot's frozen timestamp would fire too; `increase(process_cpu_seconds_total) > 0` "
                  "keeps it to live processes (see the file header).",
              filtered=True),
    ]
