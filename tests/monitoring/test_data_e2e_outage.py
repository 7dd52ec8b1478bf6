"""SigNoz unreachable, sending queue tiny: the pipeline alerts see it on the real collector.

The healthy end-to-end run (test_data_e2e.py) cannot show the expressions that only return
data while export fails. Here the collector's OTLP exporter points at a closed port with a
sending queue of 2 batches, an OTLP client keeps sending spans, metrics and logs, and:

* the conditions of OtelExportDataLost, OtelExporterQueueNearlyFull and OtelExporterStalled
  return series, and Prometheus (evaluating alerts/*.yml every second) has them pending;
* the Grafana panel queries for enqueue failures (spans, metric points, log records) and
  queue fill return data;
* the SigNoz queries for the same find otelcol_exporter_enqueue_failed_* in what the
  collector pushes about itself (signoz/otelcol-telemetry.yaml, sent to a live sink here:
  in real life an outage of SigNoz would also stop this push, which is why these alerts
  belong in Prometheus as well).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_server import PrometheusServer, free_port, render_config
from promql import extract_all, parse_v3, selector_matches, signoz_series

from otel_trader.collector import CollectorPorts, CollectorProcess, SinkProcess

ROOT = Path(__file__).resolve().parents[2]
EXPRESSIONS = extract_all()
OUTAGE_ALERTS = ("OtelExportDataLost", "OtelExporterQueueNearlyFull", "OtelExporterStalled")


@dataclass
class Outage:
    prometheus: PrometheusServer
    sink: SinkProcess


def _send(endpoint: str, stop: threading.Event) -> None:
    """Spans, metrics and logs over OTLP/gRPC with private providers (no global OTel state)."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource({"service.name": "outage-sender", "service.instance.id": "outage-1"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=2)))
    meter_provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=2), export_interval_millis=300)])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=2)))
    otel_logger = logger_provider.get_logger("outage")  # emits directly: no logging.Handler to install
    tracer = tracer_provider.get_tracer("outage")
    counter = meter_provider.get_meter("outage").create_counter("outage_requests_total")
    try:
        while not stop.is_set():
            for _ in range(5):
                with tracer.start_as_current_span("outage"):
                    counter.add(1)
                    otel_logger.emit(body="outage", severity_number=SeverityNumber.WARN, severity_text="WARN")
            stop.wait(0.1)
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
        logger_provider.shutdown()


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    tmp = tmp_path_factory.mktemp("monitoring-outage")
    sink = SinkProcess(tmp / "sink.jsonl", log_path=tmp / "sink.log").start()
    collector = prometheus = sender = None
    stop = threading.Event()
    try:
        collector = CollectorProcess(
            ports=CollectorPorts.free(),
            storage_dir=tmp / "queue",
            signoz_endpoint=f"127.0.0.1:{free_port()}",  # nothing listens: SigNoz is down
            extra_configs=[ROOT / "signoz" / "otelcol-telemetry.yaml"],
            env={
                "OTELCOL_QUEUE_SIZE": "2",
                "OTELCOL_QUEUE_CONSUMERS": "1",
                "OTELCOL_BATCH_TIMEOUT": "100ms",
                "OTELCOL_RETRY_INITIAL_INTERVAL": "5s",
                "SIGNOZ_TELEMETRY_ENDPOINT": f"http://{sink.otlp_grpc_endpoint}",
                "OTELCOL_TELEMETRY_PUSH_INTERVAL_MS": "1000",
            },
            log_path=tmp / "collector.log",
        ).start()
        prom_port = free_port()
        config = render_config(
            tmp / "prometheus.yml",
            targets={
                "prometheus": [f"127.0.0.1:{prom_port}"],
                "otel-collector": [f"127.0.0.1:{collector.ports.prometheus}"],
                "otel-collector-self": [f"127.0.0.1:{collector.ports.telemetry}"],
            },
            scrape_interval="1s",
            drop_jobs=("trader-api",),
        )
        prometheus = PrometheusServer(config, tmp / "tsdb", port=prom_port).start()
        sender = threading.Thread(target=_send, args=(collector.endpoints.otlp_grpc, stop), daemon=True)
        sender.start()
        yield Outage(prometheus, sink)
    finally:
        stop.set()
        if sender is not None:
            sender.join(15)
        if prometheus is not None:
            prometheus.stop()
        if collector is not None:
            collector.stop()
        sink.stop()


def _rule(name: str):
    (rule,) = [e for e in EXPRESSIONS if e.source == "prometheus-rule" and e.where.endswith(f"/ {name}")]
    return rule


def test_outage_alerts_see_the_outage(outage: Outage) -> None:
    prom = outage.prometheus
    deadline = time.monotonic() + 60
    waiting: list[str] = list(OUTAGE_ALERTS)
    while waiting and time.monotonic() < deadline:
        active = {a["labels"]["alertname"]: a["state"] for a in prom.alerts()}
        waiting = [name for name in OUTAGE_ALERTS if not (prom.query(_rule(name).expr) and name in active)]
        time.sleep(1)
    assert not waiting, f"conditions without data or alerts not pending after 60 s: {waiting}; active: {prom.alerts()}"
    lost = prom.query(_rule("OtelExportDataLost").expr)
    assert {r["metric"]["exporter"] for r in lost} == {"otlp_grpc/signoz"}


def test_grafana_failure_panels_have_data(outage: Outage) -> None:
    wanted = {"Export Failures and Drops per Second / D", "Export Failures and Drops per Second / E",
              "Export Failures and Drops per Second / F", "Export Queue Fill / A", "Sending Queue Size / A"}
    exprs = [e for e in EXPRESSIONS if e.source == "grafana" and any(e.where.endswith(w) for w in wanted)]
    assert len(exprs) == len(wanted)
    deadline = time.monotonic() + 30
    empty = exprs
    while empty and time.monotonic() < deadline:
        empty = [e for e in exprs if not outage.prometheus.query(e.rendered())]
        time.sleep(1)
    assert not empty, [str(e) for e in empty]
    (fill,) = outage.prometheus.query([e for e in exprs if "Queue Fill" in e.where][0].rendered())
    assert float(fill["value"][1]) == 100.0


def test_signoz_failure_queries_match_pushed_self_metrics(outage: Outage, v3_parser: Path) -> None:
    exprs = [e for e in EXPRESSIONS if e.dialect == "signoz" and "enqueue_failed" in e.expr]
    assert exprs
    parsed = parse_v3(v3_parser, [e.rendered() for e in exprs])
    selectors = [s for result in parsed for s in result["selectors"] if s["name"].startswith("otelcol_exporter_enqueue_failed_")]
    assert {s["name"] for s in selectors} == {f"otelcol_exporter_enqueue_failed_{kind}"
                                              for kind in ("spans", "metric_points", "log_records")}
    deadline = time.monotonic() + 30
    unmatched = selectors
    while unmatched and time.monotonic() < deadline:
        stored = signoz_series(outage.sink.file) if outage.sink.file.exists() else []
        unmatched = [s for s in selectors if not any(selector_matches(s, labels) for labels in stored)]
        time.sleep(1)
    assert not unmatched, [s["text"] for s in unmatched]
