"""The middleware's server span: the SDK's ``Tracer.start_span`` against ``LeanTracer``, same provider.

One process, one ``TracerProvider`` with the compact batch processor exporting to an exporter
that accepts and drops (the export thread's work is the same for both and left out). Each span
gets what the middleware gives a request: six attributes at the start, a new name, two more
attributes and the end. The SDK variant writes its attributes the cheapest way the SDK path
allows (``DirectAttributes``, as the middleware does when it cannot use ``LeanTracer``). The two
alternate in slices, in a fresh random order per slice; the table gives the median µs per span
over all slices, with the 25th–75th percentile, and the ratio of the medians.

    python benchmarks/span_start.py [--slices 200] [--per-slice 500]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def build() -> dict[str, Any]:
    from opentelemetry import context as otel_context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import SpanKind

    from otel_trader.sdk.lean_span import LeanTracer
    from otel_trader.sdk.span_fastpath import DirectAttributes
    from otel_trader.sdk.span_queue import CompactBatchSpanProcessor

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def export_packed(self, items: Any, packer: Any, scrub: Any = None) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(CompactBatchSpanProcessor(Drop()))
    tracer = provider.get_tracer("otel_trader.http", schema_url="https://opentelemetry.io/schemas/1.44.0")
    lean = LeanTracer(tracer)
    direct = DirectAttributes(provider)
    assert lean.ready() and direct.ready()
    parent = otel_context.Context()

    def attributes() -> dict[str, Any]:
        return {
            "url.scheme": "http",
            "http.request.method": "GET",
            "network.protocol.version": "1.1",
            "server.address": "bench",
            "server.port": 80,
            "url.path": "/orders/BTC-USDT",
        }

    final = {"http.route": "/orders/{symbol}", "http.response.status_code": 200}

    def sdk() -> None:
        span = tracer.start_span("GET", context=parent, kind=SpanKind.SERVER)
        direct.write(span, attributes())
        span.update_name("GET /orders/{symbol}")
        direct.write(span, final)
        span.end()

    def lean_span() -> None:
        lean.ready()
        span = lean.start_span("GET", parent, SpanKind.SERVER, attributes(), 16)  # the longest value
        span.update_name("GET /orders/{symbol}")
        span.set_attributes(final, 16)
        span.end()

    return {"SDK Tracer.start_span (+ DirectAttributes)": sdk, "LeanTracer.start_span": lean_span}


def measure(variants: dict[str, Any], slices: int, per_slice: int) -> dict[str, list[float]]:
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for fn in variants.values():  # warm-up
        for _ in range(per_slice):
            fn()
    order = random.Random(1)
    for _ in range(slices):
        order.shuffle(names)
        for name in names:
            fn = variants[name]
            start = time.perf_counter()
            for _ in range(per_slice):
                fn()
            samples[name].append((time.perf_counter() - start) / per_slice * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--per-slice", type=int, default=500)
    args = parser.parse_args()
    samples = measure(build(), args.slices, args.per_slice)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = next(iter(medians.values()))
    print(f"{args.slices} slices × {args.per_slice} spans, Python {sys.version.split()[0]}\n")
    print("| server span | µs per span, median [p25–p75] | × SDK |")
    print("|---|---:|---:|")
    for name, values in samples.items():
        q = statistics.quantiles(values, n=4, method="inclusive")
        print(f"| {name} | {medians[name]:.2f} [{q[0]:.2f}–{q[2]:.2f}] | {medians[name] / baseline:.2f} |")


if __name__ == "__main__":
    main()
