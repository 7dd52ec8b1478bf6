"""Spans/s through the two-tier path (agent -> 2 gateways) vs the single collector, with 0 drops.

Both topologies tail-sample (the single collector with collector/tail-sampling.yaml, the tier
with collector/gateway.yaml), keep every trace (OTELCOL_TAIL_SAMPLE_PERCENT=100, so what reaches
the sink must equal what was produced) and decide after 2 s. Producers are plain OpenTelemetry
SDK processes (BatchSpanProcessor, OTLP/gRPC) creating 4-span traces at a paced rate.

A step counts as **0 drops** only if: every span the producers created was exported without an
error, the collectors refused, failed and dropped nothing (receiver refused/failed, exporter
send/enqueue failed, tail sampling dropped-too-early), and the sink holds exactly the spans
produced. Everything runs on 127.0.0.1 with free ports in a temp directory, one fresh topology
per step, all stopped at the end.

    python benchmarks/tier.py                               # default ladder, ~4 minutes
    python benchmarks/tier.py --rates 2000,6000 --seconds 10 --procs 2
    python benchmarks/tier.py --topologies tier             # only the two-tier path

On one machine the tier runs three collectors where the single path runs one, so it cannot be
faster there; the figure says what one agent and two gateways sustain per host, and how much
the extra hop costs, not what N machines do.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from otel_trader.collector import (  # noqa: E402
    COLLECTOR_DIR,
    CollectorPorts,
    CollectorProcess,
    SinkProcess,
    find_binary,
    start_tier,
)

SPANS_PER_TRACE = 4
COMMON_ENV = {
    "OTELCOL_LOG_LEVEL": "warn",
    "OTELCOL_MEMORY_LIMIT_MIB": "1500",
    "OTELCOL_MEMORY_SPIKE_LIMIT_MIB": "300",
    "OTELCOL_TAIL_DECISION_WAIT": "2s",
    "OTELCOL_TAIL_SAMPLE_PERCENT": "100",
    "OTELCOL_TAIL_NUM_TRACES": "200000",
}
FAILURES = (
    "otelcol_receiver_refused_spans_total",
    "otelcol_receiver_failed_spans_total",
    "otelcol_exporter_send_failed_spans_total",
    "otelcol_exporter_enqueue_failed_spans_total",
    "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total",
)


def worker(endpoint: str, rate: float, seconds: float, start_at: float) -> dict[str, Any]:
    """Create 4-span traces at ``rate`` spans/s for ``seconds``; count what the exporter delivered."""
    import threading

    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

    counts = {"exported": 0, "failed": 0}
    lock = threading.Lock()

    class Counting(OTLPSpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            result = super().export(spans)
            with lock:
                counts["exported" if result is SpanExportResult.SUCCESS else "failed"] += len(spans)
            return result

    provider = TracerProvider(resource=Resource.create({"service.name": "bench-tier"}))
    provider.add_span_processor(
        BatchSpanProcessor(Counting(endpoint=endpoint, insecure=True, timeout=30), max_queue_size=500_000,
                           max_export_batch_size=512, schedule_delay_millis=200)
    )
    tracer = provider.get_tracer("bench")
    time.sleep(max(0.0, start_at - time.time()))
    traces = int(rate * seconds / SPANS_PER_TRACE)
    begin = time.time()
    for i in range(traces):
        due = begin + i * SPANS_PER_TRACE / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        with tracer.start_as_current_span("GET /orders/{symbol}", attributes={"http.route": "/orders/{symbol}"}):
            with tracer.start_as_current_span("place_order"), tracer.start_as_current_span("exchange.create_order"):
                pass
            with tracer.start_as_current_span("db.insert"):
                pass
    elapsed = time.time() - begin
    provider.force_flush(120_000)
    provider.shutdown()
    return {"produced": traces * SPANS_PER_TRACE, "elapsed": elapsed, **counts}


def sink_spans(path: Path) -> int:
    total = 0
    if not path.exists():
        return 0
    for line in path.read_text().splitlines():
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            continue
        for rs in request.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                total += len(ss.get("spans", []))
    return total


def run_step(topology: str, rate: float, seconds: float, procs: int, workdir: Path) -> dict[str, Any]:
    binary = find_binary()
    sink = SinkProcess(workdir / "sink.jsonl", binary, log_path=workdir / "sink.log").start()
    collectors: list[CollectorProcess] = []
    tier = None
    try:
        if topology == "single":
            single = CollectorProcess(
                binary, COLLECTOR_DIR / "otelcol-config.yaml", CollectorPorts.free(), storage_dir=workdir / "q",
                signoz_endpoint=sink.otlp_grpc_endpoint, env=COMMON_ENV,
                extra_configs=[COLLECTOR_DIR / "tail-sampling.yaml"], log_path=workdir / "single.log",
            ).start()
            collectors, entry = [single], single.endpoints.otlp_grpc
        else:
            tier = start_tier(sink.otlp_grpc_endpoint, workdir, gateways=2, agents=1, binary=binary, env=COMMON_ENV)
            collectors, entry = [*tier.agents, *tier.gateways], tier.agent.endpoints.otlp_grpc
        start_at = time.time() + 3.0
        argv = [sys.executable, __file__, "--worker", entry, str(rate / procs), str(seconds), f"{start_at:.3f}"]
        workers = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
        results = [json.loads(w.communicate(timeout=seconds + 300)[0].strip().splitlines()[-1]) for w in workers]
        produced = sum(r["produced"] for r in results)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sink_spans(sink.file) < produced:
            time.sleep(0.5)
        time.sleep(1.0)
        received = sink_spans(sink.file)
        failures = {name: sum(c.self_metric(name) for c in collectors) for name in FAILURES}
        achieved = produced / max(r["elapsed"] for r in results)
        ok = (
            all(r["failed"] == 0 and r["exported"] == r["produced"] for r in results)
            and received == produced
            and not any(failures.values())
        )
        return {"topology": topology, "target": rate, "achieved": achieved, "produced": produced,
                "received": received, "sdk_failed": sum(r["failed"] for r in results),
                "failures": {k: v for k, v in failures.items() if v}, "ok": ok}
    finally:
        if tier is not None:
            tier.stop()
        for c in collectors:
            c.stop()
        sink.stop()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        endpoint, rate, seconds, start_at = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
        print(json.dumps(worker(endpoint, rate, seconds, start_at)), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", default="2000,4000,8000,12000", help="spans/s per step (comma-separated)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--procs", type=int, default=2, help="producer processes")
    parser.add_argument("--topologies", default="single,tier")
    args = parser.parse_args()
    rows = []
    for topology in args.topologies.split(","):
        for rate in (float(r) for r in args.rates.split(",")):
            with tempfile.TemporaryDirectory(prefix="bench-tier-") as tmp:
                row = run_step(topology, rate, args.seconds, args.procs, Path(tmp))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'topology':<8} {'target/s':>9} {'achieved/s':>11} {'produced':>9} {'at sink':>9}  0 drops")
    for r in rows:
        print(f"{r['topology']:<8} {r['target']:>9.0f} {r['achieved']:>11.0f} {r['produced']:>9} "
              f"{r['received']:>9}  {'yes' if r['ok'] else 'NO ' + json.dumps(r['failures'])}")
    for topology in args.topologies.split(","):
        best = [r["achieved"] for r in rows if r["topology"] == topology and r["ok"]]
        print(f"{topology}: highest rate with 0 drops {max(best):.0f} spans/s" if best else f"{topology}: none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
