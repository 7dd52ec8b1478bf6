"""The middleware's in-place RED metrics export exactly what the SDK's Counter and Histogram would.

Two meter providers, set up alike (a cumulative and a delta in-memory reader plus a Prometheus
reader each), get the same measurements: one through the SDK instruments, one through
:class:`otel_trader.web.red_metrics.RedMetrics`. Everything both export is compared, except
timestamps (compared by how they relate) and which offer a counter's random exemplar
reservoir kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest

from otel_trader.web.middleware import DURATION_BUCKETS, MonitoringMiddleware, status_label
from otel_trader.web.red_metrics import RedMetrics, _InstrumentRecorder, red_recorder

NAMES = ("http_requests_total", "http_request_duration_seconds")
#: (method, route, status, duration): repeats, several statuses under one label ("4xx"), values
#: on bucket boundaries and past the last one.
MEASUREMENTS = [
    ("GET", "/orders/{oid}", 200, 0.004),
    ("GET", "/orders/{oid}", 200, 0.005),
    ("POST", "/orders", 201, 0.3),
    ("GET", "/orders/{oid}", 404, 0.0001),
    ("GET", "/orders/{oid}", 499, 0.02),
    ("GET", "/orders/{oid}", 498, 11.0),
    ("GET", "<unmatched>", 404, 0.001),
    ("GET", "/orders/{oid}", 200, 0.1),
    ("GET", "/orders/{oid}", 200, 0.0041),  # the same bucket as earlier ones, offered without a span
]


class Setup:
    def __init__(self, in_place: bool, exemplar_filter: str = "trace_based", views: tuple[Any, ...] = ()) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        os.environ["OTEL_METRICS_EXEMPLAR_FILTER"] = exemplar_filter
        try:
            # The histogram aggregation the OTLP exporters ask for by default, as in production.
            self.cumulative = InMemoryMetricReader(
                preferred_aggregation={Histogram: ExplicitBucketHistogramAggregation()}
            )
            self.delta = InMemoryMetricReader(
                preferred_temporality={
                    Counter: AggregationTemporality.DELTA,
                    Histogram: AggregationTemporality.DELTA,
                }
            )
            self.registry = CollectorRegistry()
            self.provider = MeterProvider(
                metric_readers=[self.cumulative, self.delta, PrometheusMetricReader(registry=self.registry)],
                views=list(views),
                shutdown_on_exit=False,
            )
        finally:
            del os.environ["OTEL_METRICS_EXEMPLAR_FILTER"]
        middleware = MonitoringMiddleware(None, meter_provider=self.provider)
        self.recorder = middleware._recorder
        if not in_place:
            self.recorder = _InstrumentRecorder(middleware._requests, middleware._duration, status_label)

    def record(self, method: str, route: str, status: int, duration: float, span: Any) -> None:
        if isinstance(self.recorder, RedMetrics):
            self.recorder.record(method, route, status, duration, span)
            return
        # The SDK reads the span from the current context, as when the middleware records.
        from opentelemetry import context, trace

        token = context.attach(trace.set_span_in_context(span)) if span is not None else None
        try:
            self.recorder.record(method, route, status, duration, span)
        finally:
            if token is not None:
                context.detach(token)


def ours(metrics_data: Any) -> list[Any]:
    """Our two metrics in a collection, with their scope."""
    if metrics_data is None:
        return []
    return [
        (scope_metrics.scope, metric)
        for resource_metrics in metrics_data.resource_metrics
        for scope_metrics in scope_metrics_of(resource_metrics)
        for metric in scope_metrics.metrics
        if metric.name in NAMES
    ]


def scope_metrics_of(resource_metrics: Any) -> list[Any]:
    return list(resource_metrics.scope_metrics)


def comparable(collection: list[Any]) -> list[Any]:
    """Everything of a collection but timestamps and the identity of a counter's sampled exemplar."""
    out = []
    for scope, metric in collection:
        data = metric.data
        points = []
        for point in data.data_points:
            fields = {f.name: getattr(point, f.name) for f in dataclasses.fields(point) if "time_unix_nano" not in f.name}
            exemplars = fields.pop("exemplars")
            if metric.name == "http_requests_total":
                fields["exemplars"] = [(e.value, e.filtered_attributes) for e in exemplars]
            else:
                fields["exemplars"] = [(e.value, e.filtered_attributes, e.span_id, e.trace_id) for e in exemplars]
            points.append(fields)
        out.append(
            (
                (scope.name, scope.version, scope.schema_url),
                metric.name,
                metric.description,
                metric.unit,
                type(data).__name__,
                data.aggregation_temporality,
                getattr(data, "is_monotonic", None),
                points,
            )
        )
    return out


def timeline(collections: list[list[Any]]) -> list[Any]:
    """How the timestamps of successive collections relate: per point, start vs. first start and previous time."""
    out = []
    first_start: dict[Any, int] = {}
    previous_time: dict[Any, int] = {}
    for collection in collections:
        for _, metric in collection:
            for point in metric.data.data_points:
                key = (metric.name, tuple(sorted(point.attributes.items())))
                first_start.setdefault(key, point.start_time_unix_nano)
                out.append(
                    (
                        key,
                        point.start_time_unix_nano == first_start[key],
                        point.start_time_unix_nano == previous_time.get(key),
                        point.start_time_unix_nano <= point.time_unix_nano,
                    )
                )
                previous_time[key] = point.time_unix_nano
    return out


def run(setup: Setup, spans: list[Any]) -> dict[str, list[Any]]:
    """Record MEASUREMENTS in three rounds, the readers collecting at different points."""
    got: dict[str, list[Any]] = {"cumulative": [], "delta": [], "prometheus": []}
    for round_ in range(3):
        for k, (method, route, status, duration) in enumerate(MEASUREMENTS):
            setup.record(method, route, status, duration * (round_ + 1), spans[k % len(spans)])
            if k == 3:
                got["delta"].append(ours(setup.delta.get_metrics_data()))
        got["cumulative"].append(ours(setup.cumulative.get_metrics_data()))
        got["prometheus"].append(generate_latest(setup.registry).decode())
        if round_ == 1:
            got["delta"].append(ours(setup.delta.get_metrics_data()))
    got["delta"].append(ours(setup.delta.get_metrics_data()))
    got["delta"].append(ours(setup.delta.get_metrics_data()))  # nothing new: no delta points
    return got


@pytest.fixture
def spans() -> list[Any]:
    """Sampled spans the measurements are made under, and one moment without any."""
    tracer = TracerProvider().get_tracer("t")
    return [tracer.start_span("a"), tracer.start_span("b"), None]


@pytest.mark.parametrize("exemplar_filter", ["trace_based", "always_on", "always_off"])
def test_in_place_red_metrics_export_what_the_sdk_instruments_do(spans, exemplar_filter):
    sdk, in_place = Setup(False, exemplar_filter), Setup(True, exemplar_filter)
    assert isinstance(in_place.recorder, RedMetrics)
    expected, got = run(sdk, spans), run(in_place, spans)

    assert got["prometheus"] == expected["prometheus"]
    assert "http_request_duration_seconds_bucket" in got["prometheus"][0]
    for reader in ("cumulative", "delta"):
        assert [comparable(c) for c in got[reader]] == [comparable(c) for c in expected[reader]], reader
        assert timeline(got[reader]) == timeline(expected[reader]), reader
    assert got["delta"][-1] == [] == expected["delta"][-1]
    (_, histogram), *_ = [m for m in got["cumulative"][-1] if m[1].name == NAMES[1]]
    assert histogram.data.data_points[0].explicit_bounds == DURATION_BUCKETS


def test_readers_added_later_get_what_the_sdk_would_give_them(spans):
    setups = Setup(False), Setup(True)
    for setup in setups:
        setup.record("GET", "/a", 200, 0.01, spans[0])
        setup.late = InMemoryMetricReader()  # type: ignore[attr-defined]
        setup.provider.add_metric_reader(setup.late)  # type: ignore[attr-defined]
        setup.record("GET", "/a", 200, 0.02, spans[1])
        setup.record("GET", "/b", 500, 0.03, spans[1])
    expected, got = (comparable(ours(s.late.get_metrics_data())) for s in setups)  # type: ignore[attr-defined]
    assert got == expected
    assert [point["count"] for entry in got if entry[1] == NAMES[1] for point in entry[7]] == [1, 1]


def test_the_production_configuration_records_in_place(reset_otel, monkeypatch):
    """OTLP and Prometheus readers, as ``configure()`` builds them from the environment."""
    import otel_trader
    from tests.conftest import free_port

    monkeypatch.setenv("OTLP_ENDPOINT", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("TELEMETRY_LOGS_ENABLED", "false")
    manager = otel_trader.configure(enabled=True)
    assert len(manager.meter_provider._measurement_consumer._reader_storages) == 2  # type: ignore[union-attr]
    assert isinstance(MonitoringMiddleware(None)._recorder, RedMetrics)


def test_the_instruments_are_used_where_the_sdk_could_be_configured_otherwise():
    view = View(instrument_name="http_request_duration_seconds", attribute_keys={"method"})
    assert isinstance(Setup(True, views=(view,)).recorder, _InstrumentRecorder)
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    for preferred in (
        ExplicitBucketHistogramAggregation(boundaries=(0.1, 1.0)),
        ExplicitBucketHistogramAggregation(record_min_max=False),
    ):
        reader = InMemoryMetricReader(preferred_aggregation={Histogram: preferred})
        provider = MeterProvider(metric_readers=[reader, PrometheusMetricReader(registry=CollectorRegistry())])
        assert isinstance(MonitoringMiddleware(None, meter_provider=provider)._recorder, _InstrumentRecorder)

    from opentelemetry.metrics import NoOpMeterProvider

    noop = NoOpMeterProvider()
    meter = noop.get_meter("x")
    assert isinstance(
        red_recorder(noop, meter.create_counter("c"), meter.create_histogram("h"), status_label),
        _InstrumentRecorder,
    )


def test_one_state_per_provider_for_every_middleware_of_it():
    setup = Setup(True)
    other = MonitoringMiddleware(None, meter_provider=setup.provider)
    assert other._recorder is setup.recorder
    other._recorder.record("GET", "/x", 200, 0.01, None)
    setup.recorder.record("GET", "/x", 200, 0.01, None)
    (point,) = [
        p for _, m in ours(setup.cumulative.get_metrics_data()) if m.name == NAMES[0] for p in m.data.data_points
    ]
    assert point.value == 2


def test_the_middleware_records_through_it(reset_otel, monkeypatch):
    """Through a real app: statuses, routes, errors, and one series per status label."""
    setup = Setup(True)
    app = FastAPI()

    @app.get("/orders/{oid}")
    async def order(oid: str) -> dict[str, str]:
        if oid == "teapot":
            raise HTTPException(status_code=418)
        if oid == "boom":
            raise RuntimeError("boom")
        return {"oid": oid}

    app.add_middleware(MonitoringMiddleware, meter_provider=setup.provider, tracer_provider=TracerProvider())

    async def go() -> None:
        import httpx

        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for path in ("/orders/1", "/orders/2", "/orders/teapot", "/orders/boom", "/nope"):
                await client.get(path)

    asyncio.run(go())
    (_, counter), (_, histogram) = ours(setup.cumulative.get_metrics_data())
    counts = {tuple(sorted(p.attributes.items())): p.value for p in counter.data.data_points}
    assert counts == {
        (("method", "GET"), ("path", "/orders/{oid}"), ("status", "200")): 2,
        (("method", "GET"), ("path", "/orders/{oid}"), ("status", "418")): 1,
        (("method", "GET"), ("path", "/orders/{oid}"), ("status", "500")): 1,
        (("method", "GET"), ("path", "<unmatched>"), ("status", "404")): 1,
    }
    assert sum(p.count for p in histogram.data.data_points) == 5
    # The server span was current: every measurement offered an exemplar carrying its ids.
    assert all(p.exemplars and p.exemplars[0].trace_id for p in counter.data.data_points)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_starts_with_no_requests_counted():
    import json

    setup = Setup(True)
    for _ in range(5):
        setup.record("GET", "/a", 200, 0.01, None)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            before = ours(setup.cumulative.get_metrics_data())
            setup.record("GET", "/a", 200, 0.01, None)
            after = ours(setup.cumulative.get_metrics_data())
            report = {
                "before": len(before),
                "after": [p.value for _, m in after if m.name == NAMES[0] for p in m.data.data_points],
            }
        except Exception as exc:
            report = {"error": repr(exc)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert child == {"before": 0, "after": [1]}
    (point,) = [p for _, m in ours(setup.cumulative.get_metrics_data()) if m.name == NAMES[0] for p in m.data.data_points]
    assert point.value == 5  # the parent keeps its own
