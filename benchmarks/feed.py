"""Per-message cost of the market-data feed API (``feed.message``) and ``trading.decision``.

The bot calls ``feed.message(event_time=..., sequence=...)`` once per market-data message, the
hottest path it has. Each variant is a loop over the same pre-built messages (Binance-style
millisecond event times and sequence numbers); ``bare`` is that loop doing nothing else, and
``bare (A/A control)`` the same loop again, whose difference from ``bare`` shows the noise
floor. Variants run in alternating slices, in an order rotating from slice to slice, so a slow
phase of the shared machine hits all of them; a variant's cost is its ns/message minus
``bare``'s *in the same slice*. The table gives the median over slices and, in brackets, the
25th–75th percentile of those per-slice values, and the ratio to ``bare``.

Telemetry off (no MeterProvider) and on (otel_trader configured as deployed: the in-process
Prometheus reader plus a periodic OTLP-style reader with a no-op exporter) run in separate
processes, since the global provider is per process.

With telemetry on, ``market_data_lag_seconds`` costs one SDK histogram record per 0.1 s window
of a feed at most (every message of a feed sending fewer); a tight loop amortizes that to
nothing, so its cost is measured on its own and the amortized cost at a few message rates is
printed.

    python benchmarks/feed.py [--slices 60] [--per-slice 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

VARIANTS = {
    "bare": "bare loop",
    "bare_aa": "bare loop again (A/A control)",
    "feed_full": "feed.message(event_time=, sequence=)",
    "feed_plain": "feed.message()",
    "decision": "trading.decision()",
}


def _noop_reader() -> Any:
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )

    class Metrics(MetricExporter):
        def __init__(self) -> None:
            super().__init__()

        def export(self, metrics_data: Any, timeout_millis: float = 0, **kw: Any) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **kw: Any) -> None:
            pass

    return PeriodicExportingMetricReader(Metrics(), export_interval_millis=3_600_000)


def _configure(telemetry: bool) -> None:
    for name in list(os.environ):
        if name.startswith(("TELEMETRY_", "OTEL_", "OTLP_")):
            del os.environ[name]
    os.environ.update(TELEMETRY_ENV_FILE="none", TELEMETRY_LOGS_ENABLED="false", TELEMETRY_LOOP_MONITOR="false")
    if telemetry:
        os.environ["TELEMETRY_ENABLED"] = "true"
        import otel_trader

        otel_trader.configure(metric_readers=[_noop_reader()])


def _loops(n: int) -> dict[str, Any]:
    from otel_trader import trading

    now_ms = int(time.time() * 1000)
    messages = [(now_ms - 5 + (i % 3), i + 1) for i in range(n)]
    full = trading.feed("binance", "BTC-USDT@trade")
    plain = trading.feed("binance", "ETH-USDT@trade")
    decision = trading.decision

    def bare() -> None:
        for _event_time, _sequence in messages:
            pass

    def feed_full() -> None:
        message = full.message
        for event_time, sequence in messages:
            message(event_time=event_time, sequence=sequence)

    def feed_plain() -> None:
        for _event_time, _sequence in messages:
            plain.message()

    def decide() -> None:
        for _event_time, _sequence in messages:
            decision("grid")

    return {"bare": bare, "bare_aa": bare, "feed_full": feed_full, "feed_plain": feed_plain, "decision": decide}


def measure(slices: int, per_slice: int) -> dict[str, list[float]]:
    """ns/message of every variant, one value per slice."""
    loops = _loops(per_slice)
    names = list(VARIANTS)
    for fn in loops.values():  # warm up
        fn()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(slices):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            start = time.perf_counter_ns()
            loops[name]()
            gc.collect(0)
            samples[name].append((time.perf_counter_ns() - start) / per_slice)
    return samples


def record_cost(rounds: int = 20_000) -> float:
    """µs of one SDK histogram record on market_data_lag_seconds, as a window opening pays it."""
    from otel_trader.trading import market_data as trading_feed

    inst = trading_feed._instruments.get()
    if inst is None:
        return 0.0
    labels = {"exchange": "binance", "stream": "BTC-USDT@trade"}
    values = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(rounds):
            inst.lag.record(0.004, labels)
        values.append((time.perf_counter_ns() - start) / rounds / 1000)
    return statistics.median(values)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def _child(args: argparse.Namespace) -> None:
    _configure(args.child == "on")
    result = {"samples": measure(args.slices, args.per_slice)}
    if args.child == "on":
        result["record_us"] = record_cost()  # type: ignore[assignment]
    print(json.dumps(result))


def _run(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--slices", str(args.slices), "--per-slice", str(args.per_slice)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--slices", type=int, default=60)
    parser.add_argument("--per-slice", type=int, default=20_000, help="messages per variant per slice")
    parser.add_argument("--json", type=Path, help="also write the per-slice samples here")
    parser.add_argument("--child", choices=("off", "on"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    results = {mode: _run(mode, args) for mode in ("off", "on")}
    print(
        f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.slices} slices × {args.per_slice} "
        "messages per variant, interleaved; median [25th–75th percentile of the per-slice values]\n"
    )
    print("| telemetry | variant | ns/message | cost over bare (ns) | ÷ bare |")
    print("|---|---|---:|---:|---:|")
    for mode, result in results.items():
        samples = result["samples"]
        bare = samples["bare"]
        for variant, label in VARIANTS.items():
            lo, med, hi = quartiles(samples[variant])
            row = f"| {mode} | {label} | {med:.0f} [{lo:.0f}–{hi:.0f}] | "
            if variant == "bare":
                print(row + "— | — |")
                continue
            cost = [x - b for x, b in zip(samples[variant], bare, strict=True)]
            ratio = [x / b for x, b in zip(samples[variant], bare, strict=True)]
            clo, cmed, chi = quartiles(cost)
            rlo, rmed, rhi = quartiles(ratio)
            print(f"{row}{cmed:+.0f} [{clo:+.0f}…{chi:+.0f}] | {rmed:.2f} [{rlo:.2f}–{rhi:.2f}] |")
    record_us = results["on"].get("record_us", 0.0)
    full_ns = statistics.median(
        x - b for x, b in zip(results["on"]["samples"]["feed_full"], results["on"]["samples"]["bare"], strict=True)
    )
    print(
        f"\nOne market_data_lag_seconds record (a window opening, two readers): {record_us:.1f} µs. "
        "Per message with lag windows, at most one record per 0.1 s window of a feed:"
    )
    for rate in (10, 100, 1_000, 10_000):
        records = min(rate, 10)  # per second: every message up to 10/s, one per window above
        amortized = full_ns / 1000 + records * record_us / rate
        print(f"  {rate:>6} messages/s on one feed: {amortized:.2f} µs/message")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
