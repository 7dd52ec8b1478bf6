"""The bot-health part of the demo's summary: feed ages, order latencies, slippage, halts, loop lag.

Every number is read from the trading API's ``/metrics`` (quantiles as PromQL's
``histogram_quantile`` computes them); the halt events' times come from ``GET /bot/status`` and
the scenario's own log, which say *when* — the metrics say *how many*.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from otel_trader.demo.summary import Sample, fmt_seconds, histogram_quantile, total

__all__ = ["bot_status", "render_bot"]


def bot_status(api_url: str) -> dict[str, Any] | None:
    """``GET /bot/status`` of the trading API, or None (no bot, or no answer)."""
    import json

    from otel_trader.demo.processes import http_get

    try:
        code, body = http_get(f"{api_url}/bot/status", timeout=5.0)
        return dict(json.loads(body)) if code == 200 else None
    except (OSError, ValueError):
        return None


def _buckets(samples: Iterable[Sample], name: str, **match: str) -> list[tuple[float, float]]:
    """Cumulative ``(le, count)`` of histogram ``name`` summed over its other labels."""
    merged: dict[float, float] = defaultdict(float)
    for s in samples:
        if s.name == f"{name}_bucket" and all(s.labels.get(k) == v for k, v in match.items()):
            merged[float(s.labels["le"])] += s.value
    return list(merged.items())


def _q(samples: list[Sample], name: str, q: float, **match: str) -> float | None:
    return histogram_quantile(q, _buckets(samples, name, **match))


def _bps(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} bps"


def _series(samples: Iterable[Sample], name: str, *labels: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for s in samples:
        if s.name == name:
            out[tuple(s.labels.get(label, "") for label in labels)] += s.value
    return dict(out)


def render_bot(
    samples: list[Sample], status: dict[str, Any] | None = None, scenario: Any = None
) -> list[str]:
    """The summary lines; empty when the API ran without the bot (``DEMO_BOT=false``)."""
    if not any(s.name == "trading_decisions_total" for s in samples):
        return []
    lines = ["", "bot health (the demo bot inside the trading API; read from its /metrics):"]
    add = lines.append

    ages = _series(samples, "market_data_last_message_age_seconds", "exchange", "stream")
    messages = _series(samples, "market_data_messages_total", "exchange", "stream")
    reconnects = _series(samples, "market_data_reconnects_total", "exchange", "stream")
    gaps = _series(samples, "market_data_sequence_gaps_total", "exchange", "stream")
    for exchange, stream in sorted(messages):
        labels = {"exchange": exchange, "stream": stream}
        age = ages.get((exchange, stream))
        add(
            f"  feed {exchange} {stream}: {messages[exchange, stream]:g} messages, last "
            f"{fmt_seconds(age)} ago, lag p50 {fmt_seconds(_q(samples, 'market_data_lag_seconds', 0.5, **labels))} "
            f"p99 {fmt_seconds(_q(samples, 'market_data_lag_seconds', 0.99, **labels))}, "
            f"reconnects {reconnects.get((exchange, stream), 0):g}, sequence gaps {gaps.get((exchange, stream), 0):g}"
        )
    decision_ages = _series(samples, "trading_last_decision_age_seconds", "strategy")
    for (strategy,), count in sorted(_series(samples, "trading_decisions_total", "strategy").items()):
        add(
            f"  decisions {strategy}: {count:g} (trading_decisions_total), last "
            f"{fmt_seconds(decision_ages.get((strategy,)))} ago"
        )

    halts = _series(samples, "trading_halts_total", "reason")
    halted = [reason for (reason,), v in _series(samples, "trading_halted", "reason").items() if v]
    add(
        "  kill switch: trading_halts_total "
        + (" ".join(f"{r}={v:g}" for (r,), v in sorted(halts.items())) or "none")
        + f"; halted now: {', '.join(halted) or 'no'}"
    )
    if status and status.get("halt_events"):
        first = min(e["at"] for e in status["halt_events"])
        add(
            "    events: "
            + ", ".join(
                f"+{e['at'] - first:.1f}s {'halted' if e['halted'] else 'resumed'} {e['reason']}"
                for e in status["halt_events"]
            )
        )
    limits = _series(samples, "risk_limit_utilization_ratio", "limit")
    if limits:
        add(
            "  risk_limit_utilization_ratio: "
            + " ".join(f"{limit}={100 * v:.1f}%" for (limit,), v in sorted(limits.items()))
        )

    add(
        f"  orders: submitted {total(samples, 'orders_submitted_total'):g}, fills {total(samples, 'order_fills_total'):g}, "
        f"ack timeouts {total(samples, 'order_ack_timeouts_total'):g}, unknown fills "
        f"{total(samples, 'order_unknown_fills_total'):g}, open now {total(samples, 'orders_open'):g}"
    )
    add(
        f"  order_ack_latency_seconds: p50 {fmt_seconds(_q(samples, 'order_ack_latency_seconds', 0.5))} "
        f"p95 {fmt_seconds(_q(samples, 'order_ack_latency_seconds', 0.95))}   order_fill_latency_seconds: p50 "
        f"{fmt_seconds(_q(samples, 'order_fill_latency_seconds', 0.5))} "
        f"p95 {fmt_seconds(_q(samples, 'order_fill_latency_seconds', 0.95))}"
    )
    count = total(samples, "order_slippage_bps_count")
    if count:
        signed = (
            total(samples, "order_slippage_bps_sum") - total(samples, "order_price_improvement_bps_sum")
        ) / count
        add(
            f"  order_slippage_bps (adverse): p50 {_bps(_q(samples, 'order_slippage_bps', 0.5))} "
            f"p95 {_bps(_q(samples, 'order_slippage_bps', 0.95))}; mean signed {signed:+.1f} bps over {count:g} orders"
        )
    balances = _series(samples, "trading_balance", "asset")
    if balances:
        add("  trading_balance: " + " ".join(f"{a}={v:,.6g}" for (a,), v in sorted(balances.items())))

    lag_count = total(samples, "asyncio_event_loop_lag_seconds_count")
    if lag_count:
        slow = lag_count - dict(_buckets(samples, "asyncio_event_loop_lag_seconds")).get(0.1, lag_count)
        add(
            f"  asyncio_event_loop_lag_seconds: p50 {fmt_seconds(_q(samples, 'asyncio_event_loop_lag_seconds', 0.5))} "
            f"p99 {fmt_seconds(_q(samples, 'asyncio_event_loop_lag_seconds', 0.99))}; {slow:g} of {lag_count:g} "
            "probe samples over 100 ms"
            + (
                f" ({status['blocks']} blocking call(s) by the scenario)"
                if status and status.get("blocks")
                else ""
            )
        )
    if scenario is not None and scenario.steps:
        add(
            "  scenario: "
            + ", ".join(f"+{at:.1f}s {what} ({outcome})" for at, what, outcome in scenario.steps)
        )
    return lines
