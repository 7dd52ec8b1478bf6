"""The demo's closing report: every number below is read from a metrics endpoint, not from the load."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from otel_trader.demo import API_SERVICE
from otel_trader.demo.load import LoadResult
from otel_trader.demo.summary import Sample, by_label, fmt_seconds, route_table, total

__all__ = ["render"]


def _scrape(url: str) -> list[Sample]:
    from otel_trader.demo.processes import http_get
    from otel_trader.demo.summary import parse

    status, body = http_get(url, timeout=5.0)
    if status != 200:
        raise RuntimeError(f"GET {url}: HTTP {status}")
    return parse(body)


def _poll_stable(read: Any, timeout: float, target: float | None = None) -> float:
    """Poll ``read()`` until it reaches ``target`` or stays > 0 and unchanged for 1 s; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    last, since = -1.0, time.monotonic()
    while True:
        try:
            value = float(read())
        except (OSError, RuntimeError, ValueError):
            value = -1.0
        if target is not None and value >= target:
            return value
        if value != last:
            last, since = value, time.monotonic()
        elif target is None and value > 0 and time.monotonic() - since >= 1.0:
            return value
        if time.monotonic() >= deadline:
            return max(last, 0.0)
        time.sleep(0.2)


def _read_together(
    reads: tuple[Any, Any, Any], at_least: float, timeout: float
) -> tuple[float, float, float] | None:
    """(first stage, middle, last) of a pipeline's counters at a moment with nothing in flight, or None.

    ``reads`` are given last stage first and read in that order until one reading has all three
    equal and at least ``at_least``; where spans never stop flowing (tail sampling holds them for
    seconds) that moment may not come within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            last, middle, first = (float(read()) for read in reads)
            if first == middle == last and first >= at_least:
                return first, middle, last
        time.sleep(0.05)
    return None


def _pairs(values: dict[str, float], order: tuple[str, ...] = ()) -> str:
    keys = [k for k in order if k in values] + sorted(k for k in values if k not in order)
    return " ".join(f"{k}={values[k]:g}" for k in keys) or "none"


def render(
    load: LoadResult,
    api_url: str,
    exchange_url: str,
    collector: Any,
    run_dir: Path,
    args: argparse.Namespace,
    requests: int | None,
) -> str:
    """The summary text; reads the services' ``/metrics`` and the collector's own metrics."""
    from otel_trader.demo.bot_report import bot_status, render_bot

    # Before the scrape: /bot/status is a request too, and the counts compared with the
    # collector's below must include every request the API served.
    status = bot_status(api_url)
    api = _scrape(f"{api_url}/metrics")
    exchange = _scrape(f"{exchange_url}/metrics")
    lines: list[str] = []
    add = lines.append
    statuses = {f"{code // 100}xx": 0 for code in load.statuses}
    for code, n in load.statuses.items():
        statuses[f"{code // 100}xx"] += n
    rate = load.requests / load.elapsed if load.elapsed else 0.0
    add("")
    add("== otel-trader demo: summary (read back from the metrics) ==")
    add(
        f"load: {load.requests} HTTP requests + {load.websocket_sessions} WebSocket sessions in "
        f"{load.elapsed:.1f}s ({rate:.1f} req/s, concurrency {args.concurrency}); "
        f"client saw {_pairs({k: float(v) for k, v in statuses.items()})}"
        + (f", {load.transport_errors} without response" if load.transport_errors else "")
    )
    add(
        "telemetry: "
        + (
            f"otelcol-trader → {collector.destination}"
            if collector is not None
            else "in-process only: no collector (TELEMETRY_EXPORTER=none), metrics at /metrics, traces not exported"
        )
    )

    # -- RED metrics --------------------------------------------------------------------------
    rows = route_table(api)
    req_total = sum(r.requests for r in rows)
    err_total = sum(r.errors for r in rows)
    srv_total = sum(r.server_errors for r in rows)
    add("")
    add(
        f"trading API  http_requests_total={req_total:g}  error rate (4xx+5xx)="
        f"{(100 * err_total / req_total if req_total else 0):.1f}%  5xx={(100 * srv_total / req_total if req_total else 0):.1f}%"
    )
    add(f"  {'method':7} {'route':24} {'requests':>8} {'err%':>6} {'p50':>9} {'p95':>9} {'p99':>9}")
    for r in rows:
        err = 100 * r.errors / r.requests if r.requests else 0.0
        add(
            f"  {r.method:7} {r.path:24} {r.requests:8g} {err:5.1f}% {fmt_seconds(r.p50):>9} "
            f"{fmt_seconds(r.p95):>9} {fmt_seconds(r.p99):>9}"
        )
    ex_rows = route_table(exchange)
    for r in ex_rows:
        add(
            f"mock exchange {r.method} {r.path}: requests={r.requests:g} 5xx={r.server_errors:g} "
            f"4xx={r.errors - r.server_errors:g} p50={fmt_seconds(r.p50)} p95={fmt_seconds(r.p95)} p99={fmt_seconds(r.p99)}"
        )

    # -- trading metrics ----------------------------------------------------------------------
    add("")
    add(
        "orders_total by status: "
        + _pairs(by_label(api, "orders_total", "status"), ("filled", "rejected", "error"))
        + "  by side: "
        + _pairs(by_label(api, "orders_total", "side"), ("buy", "sell"))
    )
    add(
        "trading_orders_executed_total by result: "
        + _pairs(by_label(api, "trading_orders_executed_total", "result"), ("success", "rejected", "error"))
    )
    executions = [
        (float(s.labels["le"]), s.value) for s in api if s.name == "trading_execution_duration_seconds_bucket"
    ]
    merged: dict[float, float] = {}
    for le, value in executions:
        merged[le] = merged.get(le, 0.0) + value
    from otel_trader.demo.summary import histogram_quantile

    add(
        f"trading_execution_duration_seconds: p50={fmt_seconds(histogram_quantile(0.5, list(merged.items())))} "
        f"p95={fmt_seconds(histogram_quantile(0.95, list(merged.items())))} (buckets 0.1 0.5 1 2 5 10 s)"
    )
    add(
        "rate_limit_requests_total: "
        + _pairs(by_label(api, "rate_limit_requests_total", "status"), ("allowed", "limited"))
    )
    add(
        f"websocket_connections: {total(api, 'websocket_connections'):g} open now "
        f"({load.websocket_sessions} sessions, {load.websocket_messages} price messages"
        + (f", {load.websocket_failures} failed" if load.websocket_failures else "")
        + ")"
    )
    positions = by_label(api, "positions_open", "symbol")
    pnl = by_label(api, "realized_pnl", "symbol")
    add(f"positions_open: {_pairs({k: v for k, v in positions.items() if v})}")
    add(
        f"realized_pnl: total {sum(pnl.values()):.2f}  ({', '.join(f'{k} {v:.2f}' for k, v in sorted(pnl.items())) or 'none'})"
    )
    if any(s.name == "redis_pool_max_connections" for s in api):
        add(
            f"redis pool 'cache': max={total(api, 'redis_pool_max_connections'):g} "
            f"active={total(api, 'redis_pool_active_connections'):g} "
            f"operations={total(api, 'redis_operation_duration_seconds_count'):g} "
            f"errors={total(api, 'redis_operation_errors_total'):g}"
        )

    from otel_trader.demo.exchange_report import render_exchanges

    add("")
    lines.extend(render_exchanges(api))

    lines.extend(render_bot(api, status))

    # -- traces -------------------------------------------------------------------------------
    started_api = total(api, "otel_sdk_span_started_total")
    started_ex = total(exchange, "otel_sdk_span_started_total")
    add("")
    add(
        f"spans recorded (otel_sdk_span_started_total): trading API {started_api:g}, mock exchange {started_ex:g}"
    )
    if collector is not None:

        def sdk_exported() -> float:
            # Spans the batch processors finished without an error_type (= handed to the exporter).
            done = 0.0
            for url in (api_url, exchange_url):
                done += sum(
                    s.value
                    for s in _scrape(f"{url}/metrics")
                    if s.name == "otel_sdk_processor_span_processed_total" and not s.labels.get("error_type")
                )
            return done

        # The batch processors export every 200 ms; wait until what was recorded has been handed over.
        exported = _poll_stable(sdk_exported, timeout=10.0, target=started_api + started_ex)

        def accepted_spans() -> float:
            return total(_scrape(collector.telemetry_url), "otelcol_receiver_accepted_spans_total")

        def sent_spans() -> float:
            return total(
                _scrape(collector.telemetry_url),
                "otelcol_exporter_sent_spans_total",
                exporter="otlp_grpc/signoz",
            )

        # The bot keeps trading while this is read: the three counters are read together (last
        # stage first) until one reading has them equal, a moment with nothing in flight.
        together = _read_together((sent_spans, accepted_spans, sdk_exported), exported, 3.0)
        if together is not None:
            exported, accepted, sent = together
        else:  # each stage read after the one before it, once that one's count reached it
            accepted = _poll_stable(accepted_spans, timeout=10.0, target=exported)
            sent = _poll_stable(sent_spans, timeout=10.0, target=accepted)
        add(
            f"traces exported: SDK {exported:g} spans (otel_sdk_processor_span_processed_total), "
            f"collector accepted {accepted:g} (otelcol_receiver_accepted_spans_total), "
            f"sent {sent:g} to {'the SigNoz stand-in' if collector.sink_file else 'SigNoz'} "
            f"(otelcol_exporter_sent_spans_total)"
        )
        # The app's own metrics, as the collector re-exposes them for Prometheus.
        via = _poll_stable(
            lambda: total(_scrape(collector.prometheus_url), "http_requests_total", job=API_SERVICE),
            timeout=8.0,
            target=req_total,
        )
        add(
            f'collector Prometheus endpoint: http_requests_total{{job="{API_SERVICE}"}} = {via:g} (in-process: {req_total:g})'
        )
    else:
        add("traces exported: none — no collector; build it with collector/build.sh to export over OTLP")

    # -- where to look ------------------------------------------------------------------------
    add("")
    add("look at:")
    add(f"  trading API     {api_url}/docs   {api_url}/metrics   {api_url}/health")
    add(f"  mock exchange   {exchange_url}/docs   {exchange_url}/metrics")
    if collector is not None:
        add(f"  collector       {collector.prometheus_url} (app metrics + traces_span_metrics_*)")
        add(f"                  {collector.telemetry_url} (otelcol_*)   {collector.zpages_url}")
        if collector.sink_file is not None:
            kept = "" if args.keep_logs else "; removed when the demo exits unless --keep-logs"
            add(f"  SigNoz stand-in {collector.sink_file} (OTLP/JSON lines{kept})")
    if not args.keep_running:
        add("  (the services stop now; --keep-running keeps them up until Ctrl-C)")

    # -- traces drawn from what the collector exported ----------------------------------------
    if collector is not None:
        from otel_trader.traces.highlights import demo_section

        add("")
        lines.extend(demo_section(collector.sink_file, sent, signoz_url=os.environ.get("SIGNOZ_URL") or None))
    return "\n".join(lines)
