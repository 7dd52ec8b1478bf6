"""One app process of the tier tests: sends its part of a shared, deterministic plan of traces.

Every process of a run computes the same plan, so a trace's spans come from several processes
(and several agents) while sharing trace and span ids::

    api       GET /orders/{symbol} (server, root)  ->  place_order
    bot       trading.order (trading.order.result / .status)  ->  POST /api/v3/order (client)
    exchange  POST /api/v3/order (server; ERROR for "error" traces, 1.5 s for "slow" traces)

Trace ``i`` is an "error", "slow", "rejected" or "ok" trace by :func:`kind` (10 % each of the
first three). ``--every K --offset J`` makes this process send only the traces with
``i % K == J`` (two api processes share the api part). All processes start at the same wall
time (``--start-at``) and pace at ``--rate`` traces/s, so the spans of a trace reach the
gateways within a fraction of a second of each other.

Prints one JSON line: spans handed to the exporter, spans it exported, spans whose export
failed, and ``sent_at`` (wall time each trace index was emitted).

    python tests/collector/tier_load.py --endpoint 127.0.0.1:4317 --run r1 --part api \\
        --service tier-api --instance api-1 --traces 2000 --rate 200 --start-at 1700000000.0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections.abc import Sequence

SPANS_PER_TRACE = 5
PARTS = {"api": 2, "bot": 2, "exchange": 1}  # spans each part contributes to a trace
SLOW_SECONDS = 1.5


def kind(i: int) -> str:
    """What trace ``i`` is: error, slow, rejected (order refused by the exchange) or ok."""
    return {0: "error", 1: "slow", 2: "rejected"}.get(i % 10, "ok")


def trace_id(run: str, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{run}:trace:{i}".encode()).digest()[:16], "big")


def span_id(run: str, i: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{run}:span:{i}:{name}".encode()).digest()[:8], "big") or 1


def trace_id_hex(run: str, i: int) -> str:
    return format(trace_id(run, i), "032x")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--part", choices=[*sorted(PARTS), "metrics"], required=True)
    parser.add_argument("--services", type=int, default=12, help="--part metrics: services to simulate")
    parser.add_argument("--service", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--traces", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--rate", type=float, default=200.0, help="traces per second of the whole plan")
    parser.add_argument("--start-at", type=float, default=0.0, help="wall time to start at")
    args = parser.parse_args(argv)
    if args.part == "metrics":
        return _metrics_only(args)

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    class PlannedIds(IdGenerator):
        """The ids of the plan instead of random ones: set ``span``/``trace`` before each span."""

        def __init__(self) -> None:
            self.span = 1
            self.trace = 1

        def generate_span_id(self) -> int:
            return self.span

        def generate_trace_id(self) -> int:
            return self.trace

    counts = {"exported": 0, "failed": 0}
    lock = threading.Lock()

    class CountingExporter(OTLPSpanExporter):
        """Counts what the SDK managed to deliver to the agent (what an app would lose otherwise)."""

        def export(self, spans):  # type: ignore[no-untyped-def]
            result = super().export(spans)
            with lock:
                counts["exported" if result is SpanExportResult.SUCCESS else "failed"] += len(spans)
            return result

    resource = Resource.create(
        {"service.name": args.service, "service.instance.id": args.instance, "test.run_id": args.run}
    )
    ids = PlannedIds()
    provider = TracerProvider(resource=resource, id_generator=ids)
    provider.add_span_processor(
        BatchSpanProcessor(
            CountingExporter(endpoint=args.endpoint, insecure=True, timeout=30),
            max_queue_size=200_000,
            max_export_batch_size=512,
            schedule_delay_millis=200,
        )
    )
    tracer = provider.get_tracer("tests.collector.tier")
    meters = MeterProvider(
        resource=resource,
        metric_readers=[
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=args.endpoint, insecure=True), export_interval_millis=1000
            )
        ],
    )
    emitted = meters.get_meter("tests.collector.tier").create_counter("tier_spans_emitted", unit="{span}")

    def parent(i: int, name: str):  # type: ignore[no-untyped-def]
        ctx = SpanContext(trace_id(args.run, i), span_id(args.run, i, name), is_remote=True, trace_flags=TraceFlags(1))
        return trace.set_span_in_context(NonRecordingSpan(ctx))

    def span(i: int, name: str, parent_name: str | None, start: int, end: int, span_kind: SpanKind,
             attributes: dict[str, str] | None = None, error: bool = False) -> None:
        ids.trace, ids.span = trace_id(args.run, i), span_id(args.run, i, name)
        context = parent(i, parent_name) if parent_name else None
        s = tracer.start_span(name, context=context, kind=span_kind, attributes=attributes, start_time=start)
        if error:
            s.set_status(Status(StatusCode.ERROR, "exchange refused the connection"))
        s.end(end_time=end)

    sent_at: dict[int, float] = {}
    spans = 0
    # Paced on the shared wall clock, so a process that started late catches up with the others
    # instead of lagging behind them for the whole run.
    begin = args.start_at or time.time()
    for i in range(args.first, args.first + args.traces):
        if i % args.every != args.offset:
            continue
        due = begin + (i - args.first) / args.rate if args.rate > 0 else begin
        time.sleep(max(0.0, due - time.time()))
        now = time.time_ns()
        sent_at[i] = now / 1e9
        k = kind(i)
        if args.part == "api":
            span(i, "GET /orders/{symbol}", None, now, now + 20_000_000, SpanKind.SERVER)
            span(i, "place_order", "GET /orders/{symbol}", now + 1_000_000, now + 19_000_000, SpanKind.INTERNAL)
        elif args.part == "bot":
            result = "rejected" if k == "rejected" else "success"
            status = "rejected" if k == "rejected" else "filled"
            span(i, "trading.order", "place_order", now + 2_000_000, now + 18_000_000, SpanKind.INTERNAL,
                 {"trading.order.result": result, "trading.order.status": status, "trading.symbol": "BTCUSDT"})
            span(i, "POST /api/v3/order", "trading.order", now + 3_000_000, now + 17_000_000, SpanKind.CLIENT)
        else:
            # A slow exchange call ends now and started SLOW_SECONDS ago, so the trace is long
            # without the test waiting for it.
            start = now - int(SLOW_SECONDS * 1e9) if k == "slow" else now + 4_000_000
            span(i, "POST /api/v3/order/exchange", "POST /api/v3/order", start, now + 16_000_000,
                 SpanKind.SERVER, error=k == "error")
        spans += PARTS[args.part]
        emitted.add(PARTS[args.part], {"part": args.part})
    provider.force_flush(60_000)
    provider.shutdown()
    meters.force_flush(30_000)
    meters.shutdown()
    print(json.dumps({"spans": spans, **counts, "sent_at": sent_at}), flush=True)
    return 0


def _metrics_only(args: argparse.Namespace) -> int:
    """``--services`` services (one process each, simulated): a counter added once per tick."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    providers, counters = [], []
    for j in range(args.services):
        resource = Resource.create(
            {"service.name": f"{args.service}-{j}", "service.instance.id": f"{args.instance}-{j}", "test.run_id": args.run}
        )
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=args.endpoint, insecure=True), export_interval_millis=1000
        )
        provider = MeterProvider(resource=resource, metric_readers=[reader])
        providers.append(provider)
        counters.append(provider.get_meter("tests.collector.tier").create_counter("tier_orders", unit="{order}"))
    begin = args.start_at or time.time()
    for tick in range(args.traces):
        time.sleep(max(0.0, begin + tick / args.rate - time.time()))
        for counter in counters:
            counter.add(1, {"side": "buy" if tick % 2 else "sell"})
    for provider in providers:
        provider.force_flush(30_000)
        provider.shutdown()
    print(json.dumps({"services": args.services, "adds": args.traces}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
