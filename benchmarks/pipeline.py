"""Throughput of the whole pipeline: otel_trader SDK → otelcol-trader → sink, with 0 drops.

What it runs (everything on 127.0.0.1, free ports, a temp directory, all stopped at the end):

* the sink (``collector/sink-config.yaml``, the stand-in for SigNoz's ingest) and our collector
  with ``collector/otelcol-config.yaml`` as shipped (scrubbing, spanmetrics, persistent queue),
  started through :mod:`otel_trader.collector`;
* producer processes configured the product's way (``otel_trader.configure()``: TelemetryManager,
  OTLP/gRPC to the collector, BatchSpanProcessor), each creating spans with
  ``otel_trader.trace_operation`` in a paced tight loop, or recording counters over many series.

A run counts as **0 drops** only if every check holds: the SDK dropped nothing
(``otel_sdk_processor_span_processed_total{error_type=…}``), the collector's receiver refused or
failed nothing, the memory limiter refused nothing, the exporter failed or could not enqueue
nothing, the exporter sent exactly what the receiver accepted, and the sink holds exactly what
was produced (spans) / accepted (metric points).

    python benchmarks/pipeline.py                      # the default ladders, ~6 minutes
    python benchmarks/pipeline.py --seconds 10 --span-rates 10000,20000 --procs 1,2
    python benchmarks/pipeline.py --span-rates 15000,25000 --procs 1 --metric-series "" --baseline /tmp/base

``--baseline DIR`` runs every span step a second time, right after, with the producers importing
otel_trader from another checkout (``git archive HEAD | tar -x -C DIR``): before and after
side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The checkout whose otel_trader this process imports: a producer of ``--baseline`` gets another.
TREE = Path(os.environ.get("BENCH_OTEL_TRADER_TREE") or ROOT)
sys.path.insert(0, str(TREE))  # run from a checkout without installing

from otel_trader.collector import CollectorPorts, CollectorProcess, SinkProcess, http_get  # noqa: E402

#: Collector settings of the benchmark: the shipped config, on loopback, with a larger
#: memory limit than the 512 MiB default so the limiter is not what is measured.
COLLECTOR_ENV = {"OTELCOL_MEMORY_LIMIT_MIB": "1500", "OTELCOL_MEMORY_SPIKE_LIMIT_MIB": "300", "OTELCOL_LOG_LEVEL": "warn"}

#: Series per counter instrument: the Python SDK's default cardinality limit is 2000 per
#: instrument (more series fold into an overflow series), so a large series count is spread
#: over several instruments.
SERIES_PER_INSTRUMENT = 1000


# -- producer processes -----------------------------------------------------------------------


def _worker_env(endpoint: str, name: str, extra: dict[str, str], tree: Path = ROOT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTLP_", "OTEL_"))}
    env.update(
        TELEMETRY_ENABLED="true",
        OTLP_ENDPOINT=endpoint,
        SERVICE_NAME=name,
        ENVIRONMENT="bench",
        TELEMETRY_LOGS_ENABLED="false",
        TELEMETRY_DISABLED_INSTRUMENTATIONS="*",
        PROMETHEUS_ENABLED="true",  # where the SDK's dropped-span counter is read from
        PYTHONPATH=str(tree),
        BENCH_OTEL_TRADER_TREE=str(tree),
    )
    env.update(extra)
    return env


def _sdk_dropped(registry: Any) -> float:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
        if s.name == "otel_sdk_processor_span_processed_total" and s.labels.get("error_type")
    )


class ExportCounter:
    """Counts what an exporter was given and how each export ended (wraps the manager's exporter).

    The SDK counts spans it drops from a full queue, but not batches an exporter gave up on,
    and nothing at all for metrics; this covers both.
    """

    def __init__(self, exporter: Any, count: Any) -> None:
        self.items = 0
        self.failed_items = 0
        self.failed_exports = 0
        original = exporter.export

        def export(batch: Any, *args: Any, **kwargs: Any) -> Any:
            n = count(batch)
            result = original(batch, *args, **kwargs)
            self.items += n
            if getattr(result, "name", "") != "SUCCESS":
                self.failed_items += n
                self.failed_exports += 1
            return result

        exporter.export = export  # the instance attribute shadows the method

    def as_dict(self) -> dict[str, int]:
        return {"exported": self.items, "export_failed_items": self.failed_items, "failed_exports": self.failed_exports}


def _count_points(data: Any) -> int:
    return sum(
        len(metric.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    )


def worker_spans(rate: float, seconds: float, start_at: float) -> dict[str, Any]:
    """Create ``rate`` spans/s for ``seconds`` (paced in chunks), flush; return counts."""
    import otel_trader

    manager = otel_trader.configure()
    # The manager's one BatchSpanProcessor (private SDK attributes: a benchmark may look inside).
    processors: Any = manager.tracer_provider._active_span_processor._span_processors  # type: ignore[union-attr]
    (processor,) = processors
    counter = ExportCounter(processor.span_exporter, len)
    attributes = {"symbol": "BTCUSDT", "side": "buy", "exchange": "okx", "qty": 1}
    chunk = max(1, int(rate / 200))  # 200 pacing steps per second
    produced = 0
    time.sleep(max(0.0, start_at - time.time()))
    began = time.monotonic()
    cpu0 = time.process_time()
    while True:
        elapsed = time.monotonic() - began
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) + chunk  # catch up if behind, never run ahead of the schedule
        while produced < min(due, int(seconds * rate)):
            with otel_trader.trace_operation("place_order", attributes=attributes):
                pass
            produced += 1
        ahead = produced / rate - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)
    loop_seconds = time.monotonic() - began
    flushed = manager.tracer_provider.force_flush(60_000)  # type: ignore[union-attr]
    return {
        "produced": produced,
        "loop_seconds": loop_seconds,
        "flush_seconds": time.monotonic() - began - loop_seconds,
        "flushed": flushed,
        "sdk_dropped": _sdk_dropped(manager.prometheus_registry),
        "cpu_seconds": time.process_time() - cpu0,
        **counter.as_dict(),
    }


def worker_metrics(series: int, seconds: float, start_at: float) -> dict[str, Any]:
    """Keep ``series`` counter series alive for ``seconds`` (each exported every interval)."""
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    import otel_trader

    manager = otel_trader.configure()
    (reader,) = [
        r for r in manager.meter_provider._metric_readers  # type: ignore[union-attr]
        if isinstance(r, PeriodicExportingMetricReader)
    ]
    counter = ExportCounter(reader._exporter, _count_points)
    time.sleep(max(0.0, start_at - time.time()))
    began = time.monotonic()
    attrs = [{"series": str(k)} for k in range(series)]
    records = 0
    while time.monotonic() - began < seconds:
        for k, a in enumerate(attrs):
            otel_trader.record_counter(f"bench_orders_{k // SERIES_PER_INSTRUMENT}", 1, attributes=a)
        records += series
        time.sleep(max(0.0, 1.0 - (time.monotonic() - began) % 1.0))
    loop_seconds = time.monotonic() - began
    flushed = manager.shutdown(timeout=60)  # one last collection and export
    return {"records": records, "flushed": flushed, "loop_seconds": loop_seconds,
            "flush_seconds": time.monotonic() - began - loop_seconds, **counter.as_dict()}


# -- the collector side -------------------------------------------------------------------------


def collector_counts(collector: CollectorProcess, signal: str) -> dict[str, float]:
    """The collector's own counters for ``signal`` (``spans`` or ``metric_points``)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(collector.endpoints.telemetry, timeout=5)
    assert status == 200
    wanted = {
        "accepted": f"otelcol_receiver_accepted_{signal}_total",
        "refused": f"otelcol_receiver_refused_{signal}_total",
        "failed": f"otelcol_receiver_failed_{signal}_total",
        "limiter_refused": f"otelcol_processor_refused_{signal}_total",
        "sent": f"otelcol_exporter_sent_{signal}_total",
        "send_failed": f"otelcol_exporter_send_failed_{signal}_total",
        "enqueue_failed": f"otelcol_exporter_enqueue_failed_{signal}_total",
        "cpu": "otelcol_process_cpu_seconds_total",
    }
    out = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            for key, name in wanted.items():
                exporter = sample.labels.get("exporter")
                if sample.name == name and exporter in (None, "otlp_grpc/signoz"):
                    out[key] += sample.value
    return out


def count_in_sink(path: Path, offset: int, what: str) -> tuple[int, int]:
    """(items written after ``offset``, new offset). Spans: ``"spanId"`` keys; points: ``"timeUnixNano"``.

    Counting keys instead of parsing every line keeps this fast on hundreds of MB; both keys
    occur exactly once per span / data point in what the producers send (no links, no exemplars).
    """
    key = b'"spanId"' if what == "spans" else b'"timeUnixNano"'
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    complete = data.rfind(b"\n") + 1  # a line being written is counted next time
    return data[:complete].count(key), offset + complete


@dataclass
class Row:
    kind: str
    procs: int
    setting: str
    target: float
    produced: float
    seconds: float  # first item produced → the producer's last flush returned
    delivered: int
    drain_seconds: float
    sdk_dropped: float
    collector: dict[str, float]
    producer_cpu: float
    exported: int  # items the SDK handed to its OTLP exporter
    export_failed: int  # of those, items in exports that failed

    @property
    def rate(self) -> float:
        return self.produced / self.seconds

    @property
    def zero_drops(self) -> bool:
        c = self.collector
        return (
            self.sdk_dropped == 0
            and self.export_failed == 0
            and self.exported == c["accepted"]
            and c["refused"] == 0
            and c["failed"] == 0
            and c["limiter_refused"] == 0
            and c["send_failed"] == 0
            and c["enqueue_failed"] == 0
            and c["sent"] == c["accepted"]
            and self.delivered == c["accepted"]
            and (self.kind != "spans" or self.delivered == self.produced)
        )


class Bench:
    def __init__(self, workdir: Path, seconds: float) -> None:
        self.workdir = workdir
        self.seconds = seconds
        self.sink = SinkProcess(workdir / "sink.jsonl", log_path=workdir / "sink.log")
        self.collector: CollectorProcess | None = None
        self.offset = 0

    def __enter__(self) -> Bench:
        self.sink.start()
        self.collector = CollectorProcess(
            ports=CollectorPorts.free(), storage_dir=self.workdir / "queue",
            signoz_endpoint=self.sink.otlp_grpc_endpoint, env=COLLECTOR_ENV,
            log_path=self.workdir / "collector.log",
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.collector is not None:
            self.collector.stop()
        self.sink.stop()

    def _run_workers(
        self, args: list[list[str]], env_extra: dict[str, str], name: str, tree: Path = ROOT
    ) -> list[dict[str, Any]]:
        assert self.collector is not None
        start_at = time.time() + 3.0  # every producer configured and connected before the clock starts
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", *a, "--start-at", str(start_at)],
                env=_worker_env(self.collector.endpoints.otlp_grpc, f"{name}-{i}", env_extra, tree),
                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tree,
            )
            for i, a in enumerate(args)
        ]
        results = []
        try:
            for p in procs:
                out, _ = p.communicate(timeout=self.seconds + 120)
                if p.returncode != 0:
                    raise RuntimeError(f"producer exited with {p.returncode}")
                results.append(json.loads(out.decode().strip().splitlines()[-1]))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
        return results

    def _settle(self, signal: str, before: dict[str, float], what: str) -> tuple[dict[str, float], int, float]:
        """Wait (bounded) until the exporter sent what the receiver accepted and the sink has it."""
        assert self.collector is not None
        t0 = time.monotonic()
        delivered = 0
        while True:
            now = collector_counts(self.collector, signal)
            delta = {k: now[k] - before[k] for k in now}
            got, self.offset = count_in_sink(self.sink.file, self.offset, what)
            delivered += got
            if delta["sent"] >= delta["accepted"] and delivered >= delta["accepted"]:
                time.sleep(0.5)  # anything late shows up as a mismatch
                got, self.offset = count_in_sink(self.sink.file, self.offset, what)
                delivered += got
                now = collector_counts(self.collector, signal)
                return {k: now[k] - before[k] for k in now}, delivered, time.monotonic() - t0
            if time.monotonic() - t0 > 60:
                return delta, delivered, time.monotonic() - t0
            time.sleep(0.3)

    def spans(self, procs: int, rate: float, bsp: dict[str, str], tree: Path = ROOT) -> Row:
        assert self.collector is not None
        _, self.offset = count_in_sink(self.sink.file, self.offset, "spans")
        before = collector_counts(self.collector, "spans")
        per = rate / procs
        results = self._run_workers(
            [["spans", str(per), str(self.seconds)] for _ in range(procs)], bsp, "bench-spans", tree
        )
        delta, delivered, drain = self._settle("spans", before, "spans")
        setting = ",".join(f"{k.removeprefix('OTEL_BSP_').lower()}={v}" for k, v in bsp.items()) or "defaults"
        if tree != ROOT:
            setting += f", before ({tree})"
        return Row(
            "spans", procs, setting, rate, sum(r["produced"] for r in results),
            max(r["loop_seconds"] + r["flush_seconds"] for r in results), delivered, drain,
            sum(r["sdk_dropped"] for r in results), delta, sum(r["cpu_seconds"] for r in results),
            sum(r["exported"] for r in results), sum(r["export_failed_items"] for r in results),
        )

    def metrics(self, procs: int, series: int, interval: float) -> Row:
        assert self.collector is not None
        _, self.offset = count_in_sink(self.sink.file, self.offset, "points")
        before = collector_counts(self.collector, "metric_points")
        results = self._run_workers(
            [["metrics", str(series), str(self.seconds)] for _ in range(procs)],
            {"METRIC_EXPORT_INTERVAL_SECONDS": str(interval)}, "bench-metrics",
        )
        delta, delivered, drain = self._settle("metric_points", before, "points")
        return Row(
            "metric points", procs, f"{series} series/proc, every {interval:g} s", series * procs / interval,
            sum(r["exported"] for r in results), max(r["loop_seconds"] + r["flush_seconds"] for r in results),
            delivered, drain, 0.0, delta, 0.0,
            sum(r["exported"] for r in results), sum(r["export_failed_items"] for r in results),
        )


def print_table(rows: list[Row]) -> None:
    print()
    print("| signal | procs | setting | target/s | achieved/s | drained after | collector CPU | 0 drops | detail |")
    print("|---|---:|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        c = r.collector
        detail = (
            f"produced {r.produced:.0f}, SDK exported {r.exported} (failed {r.export_failed}), "
            f"accepted {c['accepted']:.0f}, sent {c['sent']:.0f}, sink {r.delivered}, "
            f"SDK queue-dropped {r.sdk_dropped:.0f}, refused {c['refused'] + c['limiter_refused']:.0f}, "
            f"failed {c['failed'] + c['send_failed'] + c['enqueue_failed']:.0f}"
        )
        print(
            f"| {r.kind} | {r.procs} | {r.setting} | {r.target:,.0f} | {r.rate:,.0f} | {r.drain_seconds:.1f} s | "
            f"{c['cpu'] / r.seconds:.2f} cores | {'yes' if r.zero_drops else '**no**'} | {detail} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    parser.add_argument("--span-rates", default="10000,15000,20000,25000,30000", help="target spans/s, comma list")
    parser.add_argument("--procs", default="1,2,4", help="producer process counts for spans, comma list")
    parser.add_argument("--bsp", action="append", default=[],
                        help="BatchSpanProcessor setting set, e.g. 'MAX_QUEUE_SIZE=16384,MAX_EXPORT_BATCH_SIZE=1024' "
                             "(repeatable; default: otel-trader's defaults only)")
    parser.add_argument("--metric-series", default="10000,30000,60000", help="series per producer, comma list")
    parser.add_argument("--metric-procs", default="1,2", help="producer processes for metrics, comma list")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout: every span step also runs with its otel_trader, right after ours")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, *params = args.worker
        if kind == "spans":
            result = worker_spans(float(params[0]), float(params[1]), args.start_at)
        else:
            result = worker_metrics(int(params[0]), float(params[1]), args.start_at)
        print(json.dumps(result), flush=True)
        os._exit(0)  # the manager already flushed; skip interpreter teardown

    bsp_sets = [dict(f"OTEL_BSP_{kv}".split("=", 1) for kv in s.split(",") if kv) for s in args.bsp] or [{}]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="otel-trader-pipeline-") as tmp, Bench(Path(tmp), args.seconds) as bench:
        print(f"collector {bench.collector.endpoints.otlp_grpc if bench.collector else ''}, "
              f"sink {bench.sink.otlp_grpc_endpoint}, {os.cpu_count()} CPUs, {args.seconds:g} s per run", flush=True)
        for bsp in bsp_sets:
            for procs in [int(p) for p in args.procs.split(",")]:
                for rate in [float(r) for r in args.span_rates.split(",") if r]:
                    for tree in [ROOT, *([args.baseline] if args.baseline else [])]:
                        row = bench.spans(procs, rate, bsp, tree)
                        rows.append(row)
                        print(f"  spans procs={procs} {row.setting}: target {rate:,.0f}/s achieved {row.rate:,.0f}/s "
                              f"0 drops={row.zero_drops}", flush=True)
        for procs in [int(p) for p in args.metric_procs.split(",")]:
            for series in [int(s) for s in args.metric_series.split(",") if s]:
                row = bench.metrics(procs, series, 1.0)
                rows.append(row)
                print(f"  metrics procs={procs} series={series}: {row.rate:,.0f} points/s 0 drops={row.zero_drops}",
                      flush=True)
    print_table(rows)
    best_spans = max((r.rate for r in rows if r.kind == "spans" and r.zero_drops and "before" not in r.setting), default=0.0)
    best_points = max((r.rate for r in rows if r.kind != "spans" and r.zero_drops), default=0.0)
    print(f"\nhighest with 0 drops: {best_spans:,.0f} spans/s, {best_points:,.0f} metric points/s")
    if args.json:
        args.json.write_text(json.dumps([{**r.__dict__, "rate": r.rate, "zero_drops": r.zero_drops} for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
