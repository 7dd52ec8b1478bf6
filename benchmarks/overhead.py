"""Per-request overhead of otel-trader against bare FastAPI and the usual alternatives, to a few µs.

Every variant is an app of its own in **one** process, driven by raw ASGI calls (no HTTP client
in the loop), in alternating slices: each slice runs every variant for ``--per-slice`` requests,
in an order shuffled anew for every slice (a fixed seed), so a slow phase of a shared machine
hits every variant alike and no variant always runs right after the same one. A variant's overhead is its µs/request minus bare's *in the same slice*; the
table gives the median over all slices and, in brackets, the 25th–75th percentile of those
per-slice differences. ``bare (A/A control)`` is a second, identical bare app: its ratio to
bare must come out 1.00 within its own spread, or the run is too noisy to trust.

Each slice ends with a young-generation collection inside its timing, so every variant pays
for the garbage it makes instead of leaving it to whichever variant runs next.

Span exporters encode every batch as the real OTLP/gRPC exporters do (otel_trader's from its
queued tuples, contrib's with the SDK's encoder) and send nothing: the export thread shares the
GIL with the requests, network I/O is left out. The otel_trader and contrib
variants have two metric readers (periodic OTLP-style + Prometheus), as a deployment does.
OpenTelemetry's global providers are otel_trader's; FastAPI's native telemetry, which switches
itself on for every app once they exist, is switched off in the apps that are not meant to use
it. contrib and prometheus-fastapi-instrumentator get their own providers / registry.

    python benchmarks/overhead.py [--slices 120] [--per-slice 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

VARIANTS = {
    "bare": "bare FastAPI",
    "bare_aa": "bare FastAPI again (A/A control)",
    "disabled": "otel_trader disabled",
    "metrics_only": "otel_trader metrics-only",
    "full": "otel_trader full (server span + RED metrics)",
    "native_span": "otel_trader + FastAPI native server span",
    "native_operation_spans": "otel_trader + native span + operation spans",
    "contrib": "contrib FastAPIInstrumentor defaults + SDK metrics",
    "contrib_no_send_receive": "contrib, no send/receive spans + SDK metrics",
    "pfi": "prometheus-fastapi-instrumentator",
}


def _noop_exporters(sdk_encoding: bool = False) -> tuple[Any, Any]:
    """A span exporter that encodes each batch as the real OTLP/gRPC one does and sends nothing
    (otel_trader's: each span as it ends, then the request from the queue; ``sdk_encoding``: the SDK's ``encode_spans``), and a
    periodic metric reader whose exporter does nothing."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from otel_trader.sdk.exporters import MAX_REQUEST_BYTES
    from otel_trader.sdk.span_encoding import SpanEncoder

    class Spans(SpanExporter):
        def __init__(self) -> None:
            self.encoder = SpanEncoder()

        def export(self, spans: Any) -> SpanExportResult:
            if sdk_encoding:
                encode_spans(spans).SerializeToString()
            else:
                self.encoder.encode_requests(spans, MAX_REQUEST_BYTES)
            return SpanExportResult.SUCCESS

        def export_packed(self, items: Any, packer: Any, scrub: Any = None) -> Any:
            if sdk_encoding:
                return NotImplemented
            self.encoder.encode_packed_requests(items, packer, scrub, MAX_REQUEST_BYTES)
            return SpanExportResult.SUCCESS

        def span_encoder(self, scrub: bool = False) -> Any:
            # As the real one: spans are encoded as they end (span_queue.span_encoder).
            return None if sdk_encoding else functools.partial(self.encoder.encode_ended_span, scrub=scrub)

    class Metrics(MetricExporter):
        def __init__(self) -> None:
            super().__init__()

        def export(self, metrics_data: Any, timeout_millis: float = 0, **kw: Any) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **kw: Any) -> None:
            pass

    return Spans(), PeriodicExportingMetricReader(Metrics(), export_interval_millis=3_600_000)


def _app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/orders/{symbol}")
    async def order(symbol: str) -> dict[str, Any]:
        return {"symbol": symbol, "qty": 1}

    return app


def _native_off(app: Any) -> Any:
    from otel_trader.integrations.fastapi import native_telemetry_config

    native = native_telemetry_config(app)
    if native is not None:
        native.update(tracing=False, metrics=False, logs=False, operation_spans=False)
    return app


def _middleware_kwargs(app: Any, **kwargs: Any) -> None:
    for middleware in app.user_middleware:
        if "server_span" in middleware.kwargs:
            middleware.kwargs.update(kwargs)


def build_apps(variants: list[str]) -> dict[str, Any]:
    """One app per variant, all in this process (see the module docstring for the set-up)."""
    for name in list(os.environ):
        if name.startswith(("TELEMETRY_", "OTEL_", "OTLP_", "FASTAPI_")):
            del os.environ[name]
    os.environ.update(TELEMETRY_ENABLED="true", TELEMETRY_LOGS_ENABLED="false", TELEMETRY_ENV_FILE="none")

    import otel_trader
    from otel_trader.integrations.fastapi import native_telemetry_config
    from otel_trader.sdk.manager import TelemetryManager
    from otel_trader.settings import TelemetryConfig

    spans, reader = _noop_exporters()
    manager = otel_trader.configure(span_exporter=spans, metric_readers=[reader])
    apps: dict[str, Any] = {}
    for variant in variants:
        app = _app()
        if variant in ("bare", "bare_aa"):
            apps[variant] = _native_off(app)
        elif variant == "disabled":
            apps[variant] = _native_off(TelemetryManager(TelemetryConfig(enabled=False)).instrument_app(app))
        elif variant == "pfi":
            from prometheus_client import CollectorRegistry
            from prometheus_fastapi_instrumentator import Instrumentator

            Instrumentator(registry=CollectorRegistry()).instrument(app)
            apps[variant] = _native_off(app)
        elif variant.startswith("contrib"):
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from prometheus_client import CollectorRegistry

            contrib_spans, contrib_reader = _noop_exporters(sdk_encoding=True)
            tracer_provider = TracerProvider()
            tracer_provider.add_span_processor(BatchSpanProcessor(contrib_spans))
            meter_provider = MeterProvider(
                metric_readers=[contrib_reader, PrometheusMetricReader(registry=CollectorRegistry())]
            )
            kwargs: dict[str, Any] = {"exclude_spans": ["send", "receive"]} if variant.endswith("receive") else {}
            FastAPIInstrumentor.instrument_app(
                app, tracer_provider=tracer_provider, meter_provider=meter_provider, **kwargs
            )
            apps[variant] = _native_off(app)
        else:
            manager.instrument_app(app)
            if variant == "metrics_only":
                _middleware_kwargs(app, server_span=False)
            elif variant in ("native_span", "native_operation_spans"):
                native = native_telemetry_config(app)
                assert native is not None, "needs FastAPI >= 0.142"
                native.update(tracing=True, operation_spans=variant == "native_operation_spans")
                _middleware_kwargs(app, server_span=False)
            apps[variant] = app
    return apps


SCOPE = {
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


async def drive(app: Any, requests: int) -> float:
    """µs per request over ``requests`` raw ASGI calls, a young-generation collection included."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    start = time.perf_counter()
    for _ in range(requests):
        await app(dict(SCOPE), receive, send)
    gc.collect(0)
    elapsed = time.perf_counter() - start
    assert len(statuses) == requests and all(s == 200 for s in statuses), set(statuses)
    return elapsed / requests * 1e6


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def measure(apps: dict[str, Any], slices: int, per_slice: int) -> dict[str, list[float]]:
    names = list(apps)

    async def run() -> dict[str, list[float]]:
        for app in apps.values():  # warm-up: middleware stacks, caches, instruments
            await drive(app, 500)
        samples: dict[str, list[float]] = {name: [] for name in names}
        order = random.Random(1)  # a new order every slice: no variant always follows the same one
        for _ in range(slices):
            order.shuffle(names)
            for name in names:
                samples[name].append(await drive(apps[name], per_slice))
        return samples

    return asyncio.run(run())


def span_helpers(slices: int, per_slice: int) -> dict[str, tuple[float, float, float]]:
    """``trace_operation`` vs the SDK's ``start_as_current_span`` (same provider), interleaved."""
    from opentelemetry import trace

    import otel_trader

    tracer = trace.get_tracer("bench")

    def raw() -> None:
        with tracer.start_as_current_span("op", attributes={"symbol": "BTC"}):
            pass

    def ours() -> None:
        with otel_trader.trace_operation("op", {"symbol": "BTC"}):
            pass

    def timed(fn: Any) -> float:
        start = time.perf_counter()
        for _ in range(per_slice):
            fn()
        gc.collect(0)
        return (time.perf_counter() - start) / per_slice * 1e6

    for fn in (raw, ours):
        timed(fn)
    raw_us, ours_us = [], []
    for i in range(slices):
        pair = (raw, ours) if i % 2 else (ours, raw)
        for fn in pair:
            (raw_us if fn is raw else ours_us).append(timed(fn))
    return {
        "start_as_current_span_us": quartiles(raw_us),
        "trace_operation_us": quartiles(ours_us),
        "ratio": quartiles([o / r for o, r in zip(ours_us, raw_us, strict=True)]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--per-slice", type=int, default=200, help="requests per variant per slice")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list; bare is always included")
    parser.add_argument("--json", type=Path, help="also write the per-slice samples here")
    args = parser.parse_args()

    variants = ["bare", *[v for v in args.variants.split(",") if v and v != "bare"]]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    apps = build_apps(variants)
    samples = measure(apps, args.slices, args.per_slice)
    spans = span_helpers(args.slices, args.per_slice * 4)

    import fastapi

    bare = samples["bare"]
    overhead = {v: [x - b for x, b in zip(samples[v], bare, strict=True)] for v in variants}
    contrib = statistics.median(overhead["contrib"]) if "contrib" in overhead else None
    print(
        f"\nFastAPI {fastapi.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        f"{args.slices} slices × {args.per_slice} requests per variant, interleaved; "
        "median [25th–75th percentile of the per-slice values]\n"
    )
    print("| variant | µs/request | overhead over bare (µs) | ÷ bare | overhead ÷ contrib defaults |")
    print("|---|---:|---:|---:|---:|")
    for variant in variants:
        lo, med, hi = quartiles(samples[variant])
        row = f"| {VARIANTS[variant]} | {med:.1f} [{lo:.1f}–{hi:.1f}] | "
        if variant == "bare":
            print(row + "— | — | — |")
            continue
        olo, omed, ohi = quartiles(overhead[variant])
        rlo, rmed, rhi = quartiles([x / b for x, b in zip(samples[variant], bare, strict=True)])
        share = f"{omed / contrib:.2f}×" if contrib and variant != "contrib" else ("1.00×" if contrib else "—")
        print(f"{row}{omed:+.1f} [{olo:+.1f}…{ohi:+.1f}] | {rmed:.3f} [{rlo:.3f}–{rhi:.3f}] | {share} |")
    lo, med, hi = spans["ratio"]
    print(
        f"\n`trace_operation` {spans['trace_operation_us'][1]:.1f} µs vs the SDK's `start_as_current_span` "
        f"{spans['start_as_current_span_us'][1]:.1f} µs: {med:.2f}× [{lo:.2f}–{hi:.2f}]"
    )
    if args.json:
        args.json.write_text(json.dumps({"samples_us": samples, "spans": spans}, indent=1))


if __name__ == "__main__":
    main()
