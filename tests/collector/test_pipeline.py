"""What the collector does to data: content checks at the sink (SigNoz's view) and on :8889."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

COLLECTOR_DIR = Path(__file__).resolve().parents[2] / "collector"


def _mine(otlp):
    return lambda s: s["resource"].get("test.run_id") == otlp.run_id


# ------------------------------------------------------------------ traces, logs, metrics


def test_spans_reach_sink_with_resource_attributes(collector, sink, otlp):
    ids = otlp.send_spans(
        collector.otlp_grpc_endpoint,
        [
            {
                "name": "GET /orders/{symbol}",
                "attributes": {"http.route": "/orders/{symbol}", "http.response.status_code": 200},
            },
            {"name": "place_order", "attributes": {"order.symbol": "BTCUSDT"}},
        ],
    )
    spans = sink.wait_for_spans(_mine(otlp), 2)
    assert sorted(s["spanId"] for s in spans) == sorted(ids)
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"GET /orders/{symbol}", "place_order"}
    assert by_name["GET /orders/{symbol}"]["attrs"] == {
        "http.route": "/orders/{symbol}",
        "http.response.status_code": 200,
    }
    assert by_name["place_order"]["attrs"] == {"order.symbol": "BTCUSDT"}
    res = spans[0]["resource"]
    assert res["service.name"] == "otel-trader-test"
    assert res["service.instance.id"] == f"inst-{otlp.run_id}"
    assert res["telemetry.sdk.language"] == "python"
    # Not set by the app, so the resource processor adds it from OTELCOL_DEPLOYMENT_ENVIRONMENT.
    assert res["deployment.environment"] == "ci-test"
    assert res["deployment.environment.name"] == "ci-test"


def test_requests_over_the_backend_message_limit_are_cut_before_they_are_sent(collector, sink, otlp):
    """Three 2 MB requests arrive at once and the batch processor makes one 6 MB batch of them;
    the sink (like SigNoz, a gRPC server) refuses messages over 4 MiB, so the exporter must cut it."""
    import threading

    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    made = InMemorySpanExporter()
    provider = TracerProvider(resource=otlp.resource())
    provider.add_span_processor(SimpleSpanProcessor(made))
    tracer = provider.get_tracer("tests.collector")
    for i in range(60):
        with tracer.start_as_current_span(f"big-{i}", attributes={"blob": f"{i:03d}" + "x" * 100_000}):
            pass
    spans = list(made.get_finished_spans())
    exporters = [OTLPSpanExporter(endpoint=collector.otlp_grpc_endpoint, insecure=True, timeout=10) for _ in range(3)]
    start = threading.Barrier(3)
    results: list[object] = []

    def send(k: int) -> None:
        start.wait()
        results.append(exporters[k].export(spans[k * 20 : (k + 1) * 20]))

    threads = [threading.Thread(target=send, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for exporter in exporters:
        exporter.shutdown()
    assert results == [SpanExportResult.SUCCESS] * 3  # each request was under the receiver's limit
    arrived = sink.wait_for_spans(_mine(otlp), 60, timeout=30)
    assert sorted(s["name"] for s in arrived) == sorted(f"big-{i}" for i in range(60))
    assert collector.self_metric("otelcol_exporter_send_failed_spans_total") == 0


@pytest.mark.parametrize(
    "app_attrs, expected",
    [
        ({"deployment.environment": "staging"}, ("staging", "staging")),
        ({"deployment.environment.name": "paper-trading"}, ("paper-trading", "paper-trading")),
        ({"deployment.environment": "live", "deployment.environment.name": "live-eu"}, ("live", "live-eu")),
    ],
)
def test_deployment_environment_is_never_overwritten(collector, sink, otlp, app_attrs, expected):
    otlp.send_spans(
        collector.otlp_grpc_endpoint,
        [{"name": "tick"}],
        resource=otlp.resource(**{k.replace(".", "__"): v for k, v in app_attrs.items()}),
    )
    (span,) = sink.wait_for_spans(_mine(otlp), 1)
    assert (
        span["resource"]["deployment.environment"],
        span["resource"]["deployment.environment.name"],
    ) == expected


def test_logs_reach_sink(collector, sink, otlp, wait_until):
    otlp.send_logs(
        collector.otlp_grpc_endpoint,
        [{"body": f"order {otlp.run_id} filled", "attributes": {"order.id": "o-1"}}],
    )
    logs = wait_until(
        lambda: [r for r in sink.logs() if r["resource"].get("test.run_id") == otlp.run_id],
        30,
        what="log record",
    )
    assert len(logs) == 1
    assert logs[0]["body_value"] == f"order {otlp.run_id} filled"
    assert logs[0]["attrs"]["order.id"] == "o-1"
    assert logs[0]["severityText"] == "WARN"
    assert logs[0]["resource"]["deployment.environment"] == "ci-test"


def test_metrics_reach_sink_over_otlp(collector, sink, otlp, wait_until):
    mp = otlp.meter_provider(collector.otlp_grpc_endpoint)
    mp.get_meter("otel_trader").create_counter("http_requests_total").add(
        5, {"method": "GET", "path": "/health", "status": "200"}
    )
    assert mp.force_flush(10_000)
    mp.shutdown()

    def found():
        for m in sink.metrics():
            if m["resource"].get("test.run_id") == otlp.run_id and m["name"] == "http_requests_total":
                return m

    m = wait_until(found, 30, what="metric at sink")
    (dp,) = m["sum"]["dataPoints"]
    assert m["sum"]["isMonotonic"] is True
    assert int(dp["asInt"]) == 5


# ------------------------------------------------------------------ Prometheus :8889


def _send_http_metrics(collector, otlp, counter_unit=""):
    mp = otlp.meter_provider(collector.otlp_grpc_endpoint)
    meter = mp.get_meter("otel_trader")
    c = meter.create_counter("http_requests_total", unit=counter_unit)
    c.add(3, {"method": "GET", "path": "/orders/{symbol}", "status": "200"})
    c.add(1, {"method": "POST", "path": "/orders", "status": "500"})
    h = meter.create_histogram(
        "http_request_duration_seconds",
        unit="s",
        explicit_bucket_boundaries_advisory=[0.005, 0.01, 0.05, 0.1, 0.5, 1.0],
    )
    h.record(0.02, {"method": "GET", "path": "/orders/{symbol}"})
    h.record(0.7, {"method": "GET", "path": "/orders/{symbol}"})
    assert mp.force_flush(10_000)
    mp.shutdown()


@pytest.mark.parametrize("counter_unit", ["", "1", "{request}"])
def test_prometheus_names_match_the_contract(collector, otlp, counter_unit):
    _send_http_metrics(collector, otlp, counter_unit)
    # prometheus_client's parser names a counter family without "_total"; samples keep it.
    fams = collector.wait_for_families("http_requests", "http_request_duration_seconds")
    counter = fams["http_requests"]
    assert counter.type == "counter"
    samples = {(s.labels["method"], s.labels["path"], s.labels["status"]): s for s in counter.samples}
    assert {s.name for s in counter.samples} == {"http_requests_total"}
    assert samples[("GET", "/orders/{symbol}", "200")].value == 3
    assert samples[("POST", "/orders", "500")].value == 1
    # job/instance come from service.name / service.instance.id (no service.namespace set).
    s = samples[("GET", "/orders/{symbol}", "200")]
    assert s.labels["job"] == "otel-trader-test"
    assert s.labels["instance"] == f"inst-{otlp.run_id}"
    # Resource attributes are not copied onto every series (resource_to_telemetry_conversion off).
    assert "test_run_id" not in s.labels and "deployment_environment" not in s.labels

    hist = fams["http_request_duration_seconds"]
    assert hist.type == "histogram"
    assert {s.name for s in hist.samples} == {
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
    }
    # le is compared as a number: Go writes "1" where Python's exporter writes "1.0".
    buckets = {float(s.labels["le"]): s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets == {0.005: 0, 0.01: 0, 0.05: 1, 0.1: 1, 0.5: 1, 1.0: 2, float("inf"): 2}
    (total,) = [s.value for s in hist.samples if s.name.endswith("_sum")]
    assert total == pytest.approx(0.72)

    raw = collector.scrape()
    assert "# TYPE http_requests_total counter" in raw
    assert "http_requests_total_total" not in raw
    assert "# TYPE http_request_duration_seconds histogram" in raw
    assert "http_request_duration_seconds_seconds" not in raw
    # target_info carries the resource, as the in-process exporter does.
    assert "target_info" in fams


def _record_contract_instruments(meter):
    meter.create_counter("http_requests_total").add(2, {"method": "GET", "path": "/p", "status": "200"})
    meter.create_histogram(
        "http_request_duration_seconds", unit="s", explicit_bucket_boundaries_advisory=[0.01, 0.1, 1.0]
    ).record(0.05, {"method": "GET", "path": "/p"})
    meter.create_counter("otel_trader_error_reports_total").add(1, {"level": "error", "result": "sent"})
    meter.create_counter("otel_trader_error_reports_dropped_total").add(1)
    meter.create_counter("orders_placed", unit="{order}").add(1)
    meter.create_histogram("exchange_latency", unit="ms").record(12)
    meter.create_up_down_counter("open_positions", unit="{position}").add(2)
    meter.create_observable_counter(
        "otel_trader_spans_dropped_total",
        callbacks=[lambda _o: [__import__("opentelemetry.metrics").metrics.Observation(0)]],
    )


def test_prometheus_names_equal_python_in_process_exporter(collector, otlp):
    """The same instruments through opentelemetry-exporter-prometheus (the app's /metrics)
    and through the collector's :8889 give the same metric families and sample names."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    reader = PrometheusMetricReader()  # registers itself with prometheus_client's REGISTRY
    local = MeterProvider(metric_readers=[reader], resource=otlp.resource())
    try:
        _record_contract_instruments(local.get_meter("otel_trader"))
        in_process = {
            f.name: (f.type, sorted({s.name for s in f.samples}))
            for f in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        }
    finally:
        local.shutdown()  # also unregisters the reader from REGISTRY

    remote_mp = otlp.meter_provider(collector.otlp_grpc_endpoint)
    _record_contract_instruments(remote_mp.get_meter("otel_trader"))
    assert remote_mp.force_flush(10_000)
    remote_mp.shutdown()
    ours = [n for n in in_process if not n.startswith(("python_", "process_", "target_info"))]
    print("in-process families:", {n: in_process[n] for n in ours})
    assert "http_requests" in ours and "http_request_duration_seconds" in ours
    fams = collector.wait_for_families(*ours)
    via_collector = {n: (fams[n].type, sorted({s.name for s in fams[n].samples})) for n in ours}
    assert via_collector == {n: in_process[n] for n in ours}


def test_spanmetrics_red_metrics_on_prometheus_endpoint(collector, otlp, wait_until):
    otlp.send_spans(
        collector.otlp_grpc_endpoint,
        [
            {
                "name": "GET /orders/{symbol}",
                "attributes": {"http.request.method": "GET", "http.response.status_code": 200},
            },
            {
                "name": "GET /orders/{symbol}",
                "attributes": {"http.request.method": "GET", "http.response.status_code": 200},
            },
            {
                "name": "GET /orders/{symbol}",
                "attributes": {"http.request.method": "GET", "http.response.status_code": 500},
                "status_error": "boom",
            },
        ],
    )

    def mine(samples):
        return [s for s in samples if s.labels.get("instance") == f"inst-{otlp.run_id}"]

    def calls_now():
        fams = collector.wait_for_families(
            "traces_span_metrics_calls", "traces_span_metrics_duration_seconds"
        )
        calls = {
            (
                s.labels["span_name"],
                s.labels["status_code"],
                s.labels.get("http_response_status_code"),
            ): s.value
            for s in mine(fams["traces_span_metrics_calls"].samples)
        }
        return fams, calls

    # A new series is first exposed at 0 (the connector's first flush can precede the
    # spans' aggregation), so wait for the counts rather than the first appearance.
    expected = {
        ("GET /orders/{symbol}", "STATUS_CODE_UNSET", "200"): 2,
        ("GET /orders/{symbol}", "STATUS_CODE_ERROR", "500"): 1,
    }
    fams, calls = wait_until(
        lambda: (lambda fc: fc if fc[1] == expected else None)(calls_now()),
        30,
        what=f"span metric counts {expected}",
    )
    assert fams["traces_span_metrics_calls"].type == "counter"
    dur = fams["traces_span_metrics_duration_seconds"]
    assert dur.type == "histogram"
    assert {s.name for s in dur.samples} == {
        "traces_span_metrics_duration_seconds_bucket",
        "traces_span_metrics_duration_seconds_sum",
        "traces_span_metrics_duration_seconds_count",
    }
    sample = mine(dur.samples)[0]
    assert sample.labels["job"] == "otel-trader-test"
    assert sample.labels["span_kind"] == "SPAN_KIND_INTERNAL"


# ------------------------------------------------------------------ tail sampling overlay


@pytest.mark.timeout(90)
def test_tail_sampling_overlay_keeps_errors_drops_the_rest(fleet, otlp):
    sink = fleet.sink()
    main = fleet.main(
        sink,
        extra_configs=[COLLECTOR_DIR / "tail-sampling.yaml"],
        env={
            "OTELCOL_TAIL_DECISION_WAIT": "1s",
            "OTELCOL_TAIL_SAMPLE_PERCENT": "0",
            "OTELCOL_TAIL_LATENCY_MS": "60000",
        },
    )
    otlp.send_spans(
        main.otlp_grpc_endpoint,
        [{"name": f"ok-{i}"} for i in range(5)] + [{"name": "failed", "status_error": "rejected"}],
    )
    (kept,) = sink.wait_for_spans(_mine(otlp), 1, timeout=30)
    assert kept["name"] == "failed"
    # The 5 OK traces were decided at the same time as the error one; give stragglers a
    # moment beyond the decision to be sure they were dropped, not late.
    time.sleep(2.0)
    assert [s["name"] for s in sink.spans() if _mine(otlp)(s)] == ["failed"]
    # Spanmetrics is upstream of sampling: all 6 spans are counted.
    fams = main.wait_for_families("traces_span_metrics_calls")
    counted = sum(
        s.value
        for s in fams["traces_span_metrics_calls"].samples
        if s.labels.get("instance") == f"inst-{otlp.run_id}"
    )
    assert counted == 6
