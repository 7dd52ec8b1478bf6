"""Per-request overhead of otel-trader against bare FastAPI and the usual alternatives.

One run, same app, raw ASGI calls (no HTTP client in the loop). Each variant runs in its own
subprocess, because OpenTelemetry's global providers (and FastAPI ≥ 0.142's native telemetry,
which switches on when they exist) cannot be reset inside one process. Exporters are no-ops so
the numbers are the request-path cost, not network I/O; "full" variants still have two metric
readers (OTLP periodic + Prometheus), as a real deployment does.

    python benchmarks/overhead.py [--requests 5000] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

VARIANTS = {
    "bare": "bare FastAPI",
    "disabled": "otel_trader disabled",
    "metrics_only": "otel_trader metrics-only",
    "full": "otel_trader full (server span + RED metrics)",
    "native_span": "otel_trader + FastAPI native server span",
    "native_operation_spans": "otel_trader + native span + operation spans",
    "contrib": "contrib FastAPIInstrumentor defaults + SDK metrics",
    "contrib_no_send_receive": "contrib, no send/receive spans + SDK metrics",
    "pfi": "prometheus-fastapi-instrumentator",
}


# -- inside a variant's subprocess ----------------------------------------------------------


def _noop_exporters() -> tuple[Any, list[Any]]:
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Spans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class Metrics(MetricExporter):
        def __init__(self) -> None:
            super().__init__()

        def export(self, metrics_data: Any, timeout_millis: float = 0, **kw: Any) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **kw: Any) -> None:
            pass

    return Spans(), [PeriodicExportingMetricReader(Metrics(), export_interval_millis=3_600_000)]


def _sdk_providers() -> None:
    """Plain SDK set-up for the contrib variants: batch spans + two metric readers."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    spans, readers = _noop_exporters()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[*readers, PrometheusMetricReader()]))


def build_app(variant: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/orders/{symbol}")
    async def order(symbol: str) -> dict[str, Any]:
        return {"symbol": symbol, "qty": 1}

    if variant in ("bare",):
        return app
    if variant == "pfi":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app)
        return app
    if variant.startswith("contrib"):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        _sdk_providers()
        kwargs = {"exclude_spans": ["send", "receive"]} if variant == "contrib_no_send_receive" else {}
        FastAPIInstrumentor.instrument_app(app, **kwargs)
        return app

    import otel_trader

    os.environ["TELEMETRY_ENABLED"] = "false" if variant == "disabled" else "true"
    os.environ["TELEMETRY_LOGS_ENABLED"] = "false"
    if variant == "metrics_only":
        os.environ["TELEMETRY_DISABLED_INSTRUMENTATIONS"] = "fastapi"
    if variant == "native_operation_spans":
        os.environ["FASTAPI_OPERATION_SPANS"] = "true"
    spans, readers = _noop_exporters()
    otel_trader.configure(span_exporter=spans, metric_readers=readers)
    otel_trader.instrument_app(app)
    if variant == "native_span":
        # Hand the server span to FastAPI's native telemetry, without its operation spans:
        # the alternative instrument_app could pick. Our middleware then only does RED metrics.
        from otel_trader.integrations.fastapi import native_telemetry_config

        native = native_telemetry_config(app)
        assert native is not None, "needs FastAPI >= 0.142"
        native.update(tracing=True, operation_spans=False)
        for middleware in app.user_middleware:
            if "server_span" in middleware.kwargs:
                middleware.kwargs["server_span"] = False
    return app


async def drive(app: Any, requests: int) -> float:
    """µs per request over ``requests`` raw ASGI calls."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/orders/BTC-USDT",
        "raw_path": b"/orders/BTC-USDT",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    start = time.perf_counter()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    elapsed = time.perf_counter() - start
    assert statuses and all(s == 200 for s in statuses), set(statuses)
    return elapsed / requests * 1e6


def run_variant(variant: str, requests: int, rounds: int) -> dict[str, Any]:
    app = build_app(variant)

    async def main() -> list[float]:
        await drive(app, min(1000, requests))  # warm-up: middleware stack, caches, instruments
        return [await drive(app, requests) for _ in range(rounds)]

    samples = asyncio.run(main())
    return {"variant": variant, "us_per_request": statistics.median(samples), "samples": samples}


def span_helpers(iterations: int, rounds: int) -> dict[str, float]:
    """trace_operation vs the SDK's start_as_current_span, both with a batch processor."""
    from opentelemetry import trace

    import otel_trader

    os.environ["TELEMETRY_ENABLED"] = "true"
    spans, readers = _noop_exporters()
    otel_trader.configure(span_exporter=spans, metric_readers=readers)
    tracer = trace.get_tracer("bench")

    def raw() -> None:
        with tracer.start_as_current_span("op", attributes={"symbol": "BTC"}):
            pass

    def ours() -> None:
        with otel_trader.trace_operation("op", {"symbol": "BTC"}):
            pass

    def bench(fn: Any) -> float:
        for _ in range(1000):
            fn()
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        return (time.perf_counter() - start) / iterations * 1e6

    raw_us = statistics.median(bench(raw) for _ in range(rounds))
    ours_us = statistics.median(bench(ours) for _ in range(rounds))
    return {"start_as_current_span_us": raw_us, "trace_operation_us": ours_us}


# -- the driver ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write results to this file")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--spans", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:
        print(json.dumps(run_variant(args.variant, args.requests, args.rounds)))
        return
    if args.spans:
        print(json.dumps(span_helpers(args.requests * 4, args.rounds)))
        return

    import fastapi

    results: dict[str, float] = {}
    for variant in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--requests", str(args.requests), "--rounds", str(args.rounds)],
            check=True,
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_", "FASTAPI_"))},
        )
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])["us_per_request"]
        print(f"  {VARIANTS[variant]:<48} {results[variant]:8.1f} µs/request", file=sys.stderr)
    spans = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--spans", "--requests", str(args.requests), "--rounds", str(args.rounds)],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
    )

    bare = results["bare"]
    contrib = results["contrib"] - bare
    pfi = results["pfi"] - bare
    print(f"\nFastAPI {fastapi.__version__}, Python {sys.version.split()[0]}, {args.requests} requests × {args.rounds} rounds (median)\n")
    print("| variant | µs/request | overhead over bare (µs) | overhead ÷ contrib defaults |")
    print("|---|---:|---:|---:|")
    for variant, label in VARIANTS.items():
        over = results[variant] - bare
        ratio = f"{over / contrib:.2f}×" if variant != "bare" else "—"
        print(f"| {label} | {results[variant]:.1f} | {over:+.1f} | {ratio} |")
    ratio = spans["trace_operation_us"] / spans["start_as_current_span_us"]
    print(
        f"\n`trace_operation`: {spans['trace_operation_us']:.1f} µs vs raw `start_as_current_span` "
        f"{spans['start_as_current_span_us']:.1f} µs → {ratio:.2f}×"
    )
    print("\nTargets: full ≤ 0.30× contrib; metrics-only ≤ prometheus-fastapi-instrumentator; disabled ≤ 2 µs; trace_operation ≤ 1.10×")
    print(
        f"Measured: full {(results['full'] - bare) / contrib:.2f}×; metrics-only {results['metrics_only'] - bare:.1f} µs "
        f"vs pfi {pfi:.1f} µs; disabled {results['disabled'] - bare:+.1f} µs; trace_operation {ratio:.2f}×"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"results_us": results, "spans": spans}, fh, indent=2)


if __name__ == "__main__":
    main()
