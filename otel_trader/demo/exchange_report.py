"""The demo summary's exchange section, read from the ``exchange_*`` metrics the ccxt integration records."""

from __future__ import annotations

import math
from collections import defaultdict

from otel_trader.demo.summary import Sample, fmt_seconds, histogram_quantile

__all__ = ["render_exchanges"]


def render_exchanges(samples: list[Sample]) -> list[str]:
    """Per exchange: calls, error ratio, p50/p95 per method, errors by class, rate-limit headroom, clock skew."""
    calls: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_method: dict[tuple[str, str], float] = defaultdict(float)
    buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    errors: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    headroom: dict[str, dict[str, float]] = defaultdict(dict)
    skew: dict[str, float] = {}
    for s in samples:
        exchange = s.labels.get("exchange", "")
        if s.name == "exchange_requests_total":
            calls[exchange][s.labels.get("outcome", "")] += s.value
            by_method[(exchange, s.labels.get("method", ""))] += s.value
        elif s.name == "exchange_request_duration_seconds_bucket":
            buckets[(exchange, s.labels.get("method", ""))][float(s.labels["le"])] += s.value
        elif s.name == "exchange_errors_total":
            errors[exchange][s.labels.get("error", "")] += s.value
        elif s.name == "exchange_rate_limit_used_ratio":
            headroom[exchange][s.labels.get("limit", "")] = s.value
        elif s.name == "exchange_clock_skew_seconds":
            skew[exchange] = s.value
    if not calls:
        return ["exchange calls: none recorded (exchange_requests_total)"]
    lines = []
    for exchange in sorted(calls):
        outcomes = calls[exchange]
        n = sum(outcomes.values())
        failed = outcomes.get("error", 0.0)
        parts = " ".join(f"{k}={v:g}" for k, v in sorted(outcomes.items()))
        lines.append(
            f"exchange {exchange} (ccxt): {n:g} calls ({parts}), error ratio {100 * failed / n if n else 0:.1f}%"
        )
        for (ex, method), count in sorted(by_method.items(), key=lambda kv: -kv[1]):
            if ex != exchange:
                continue
            series = list(buckets.get((ex, method), {}).items())
            lines.append(
                f"  {method:20} {count:6g} calls  p50={fmt_seconds(histogram_quantile(0.5, series)):>8} "
                f"p95={fmt_seconds(histogram_quantile(0.95, series)):>8}"
            )
        if errors.get(exchange):
            lines.append(
                "  errors by class (exchange_errors_total): "
                + " ".join(f"{k}={v:g}" for k, v in sorted(errors[exchange].items(), key=lambda kv: -kv[1]))
            )
        limits = headroom.get(exchange)
        lines.append(
            "  rate-limit headroom (exchange_rate_limit_used_ratio): "
            + (
                " ".join(f"{k} {100 * (1 - v):.0f}% left" for k, v in sorted(limits.items()))
                if limits
                else "the venue publishes no usage headers"
            )
        )
        value = skew.get(exchange)
        if value is None or math.isnan(value):
            told = "-"
        else:
            told = f"{value:+.3f}s (the exchange's clock is {'ahead of' if value >= 0 else 'behind'} ours)"
        lines.append(f"  clock skew (exchange_clock_skew_seconds): {told}")
    return lines
