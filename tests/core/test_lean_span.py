"""LeanTracer's spans are the SDK's: same fields, same export, same warnings, same sampling.

Every scenario runs twice on one provider whose only processor is the compact batch processor
(the set-up LeanTracer is used for): once with spans from the SDK's own ``Tracer.start_span``,
once from ``LeanTracer.start_span``, with the same ids (a counting id generator, reset before
each run). The exported spans are compared through the SDK's OTLP encoder (start and end times
and event times set to constants: they are the clock's), and the SDK's warnings are compared too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from otel_trader.sdk.lean_span import LeanSpan, LeanTracer
from otel_trader.sdk.span_queue import CompactBatchSpanProcessor
from otel_trader.web.middleware import MonitoringMiddleware
from tests.support import CollectingSpanExporter

PRIVATE_METERS = MeterProvider()


class CountingIds(IdGenerator):
    """Ids 1, 2, 3 …; trace ids spread over the 64 low bits so ratio sampling sees both outcomes."""

    def __init__(self) -> None:
        self.n = 0

    def generate_span_id(self) -> int:
        self.n += 1
        return self.n

    def generate_trace_id(self) -> int:
        self.n += 1
        return (self.n * 0x9E3779B97F4A7C15) & ((1 << 128) - 1) or 1


class Setup:
    def __init__(self, sampler: Sampler | None = None, limits: SpanLimits | None = None, **kw: Any) -> None:
        self.ids = CountingIds()
        self.exporter = CollectingSpanExporter()
        # Its queue metrics on a provider of its own: on the global one they would outlive the
        # test and show up in the next test's /metrics.
        self.processor = CompactBatchSpanProcessor(self.exporter, meter_provider=PRIVATE_METERS)
        self.provider = TracerProvider(
            sampler=sampler, span_limits=limits or SpanLimits(), id_generator=self.ids, **kw
        )
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer(
            "otel_trader.http", "1", schema_url="https://opentelemetry.io/schemas/1.44.0"
        )
        self.lean = LeanTracer(self.tracer)
        assert self.lean.ready()

    def run(
        self, scenario: Callable[[Callable[..., Any]], None], lean: bool, caplog: Any
    ) -> tuple[dict[str, Any], list[str]]:
        self.ids.n = 0
        self.exporter.spans.clear()
        caplog.clear()

        def start(
            name: str, context: Any = None, kind: SpanKind = SpanKind.SERVER, attributes: Any = None
        ) -> Any:
            if lean:
                span = self.lean.start_span(name, context, kind, dict(attributes) if attributes else None)
                if span.is_recording():
                    assert type(span) is LeanSpan
                return span
            return self.tracer.start_span(name, context=context, kind=kind, attributes=attributes)

        with caplog.at_level(logging.WARNING):
            scenario(start)
            self.processor.force_flush()
        for span in self.exporter.spans:
            span._start_time, span._end_time = 1_000, 2_000
            for event in span.events:
                event._timestamp = 3_000
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        return MessageToDict(encode_spans(self.exporter.spans)), warnings


def everything(start: Callable[..., Any]) -> None:
    span = start("GET", attributes={"url.path": "/orders/1", "server.port": 8080, "ok": True, "f": 0.5})
    span.set_attribute("http.route", "/orders/{oid}")
    span.set_attribute("url.path", "/again")  # a re-set key moves to the end
    span.set_attributes({"a": 1, "b": "two", "url.path": "/third"})
    span.set_attribute("a", 10)  # and again after set_attributes
    span.update_name("GET /orders/{oid}")
    span.add_event("filled", {"qty": 2}, timestamp=5)
    span.set_status(Status(StatusCode.ERROR, "bad"))
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR)  # ignored after OK, as in the SDK
    try:
        raise ValueError("boom")
    except ValueError as exc:
        span.record_exception(exc, timestamp=6)
    span.end()
    span.set_attribute("late", 1)  # warns
    span.add_event("late")  # warns
    span.end()  # warns


def odd_values(start: Callable[..., Any]) -> None:
    span = start("odd", attributes={"long": "x" * 50, "list": [1, 2], "none": None})
    span.set_attribute("bytes", b"\x00")
    span.set_attribute("", "empty key")
    span.set_attribute(7, "int key")  # type: ignore[arg-type]
    span.set_attribute("map", {"k": "v"})
    span.set_attributes({"long2": "y" * 40, "t": (True, False)})
    span.end()
    span2 = start("many")
    for i in range(8):
        span2.set_attribute(f"k{i}", i)  # past the count limit: the oldest go
    span2.set_attributes({"k7": "re", "m": 1})
    span2.add_event("e1")
    span2.add_event("e2")  # past max_events
    span2.end()
    with start("as a context manager", attributes={"x": 1}):
        pass
    try:
        with start("raises"):
            raise KeyError("k")
    except KeyError:
        pass


def parents(start: Callable[..., Any]) -> None:
    state = TraceState([("vendor", "v1")])
    for flags in (TraceFlags(1), TraceFlags(0), TraceFlags(3)):
        remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=flags, trace_state=state)
        span = start("remote child", trace.set_span_in_context(NonRecordingSpan(remote)))
        assert span.get_span_context().trace_state == state
        span.end()
    outer = start("local parent")
    inner = start("local child", trace.set_span_in_context(outer), SpanKind.INTERNAL)
    inner.end()
    outer.end()
    for _ in range(40):  # ratio samplers decide on the trace id
        start("root").end()


@pytest.mark.parametrize(
    "sampler",
    [
        None,
        ParentBased(TraceIdRatioBased(0.5)),
        TraceIdRatioBased(0.25),
        ALWAYS_OFF,
        StaticSampler(Decision.RECORD_ONLY),
    ],
    ids=["default", "parent-ratio", "ratio", "off", "record-only"],
)
@pytest.mark.parametrize(
    "limits",
    [SpanLimits(), SpanLimits(max_span_attributes=5, max_span_attribute_length=10, max_events=1)],
    ids=["default-limits", "tight-limits"],
)
@pytest.mark.parametrize("scenario", [everything, odd_values, parents])
def test_lean_spans_export_what_sdk_spans_do(sampler, limits, scenario, caplog):
    setup = Setup(sampler, limits)
    expected, sdk_warnings = setup.run(scenario, lean=False, caplog=caplog)
    got, lean_warnings = setup.run(scenario, lean=True, caplog=caplog)
    assert got == expected
    assert lean_warnings == sdk_warnings
    if sampler is None:
        assert setup.exporter.spans  # the comparison saw spans at all


def test_a_lean_span_has_every_field_of_an_sdk_span():
    setup = Setup()
    sdk_span = setup.tracer.start_span("sdk")
    lean = setup.lean.start_span("lean")
    assert isinstance(lean, SdkSpan)
    defaults = {
        name for name, value in vars(LeanSpan).items() if name.startswith("_") and not name.startswith("__")
    }
    defaults = {name for name in defaults if not callable(getattr(LeanSpan, name)) and name != "_abc_impl"}
    fields = set(vars(lean)) | defaults
    assert set(vars(sdk_span)) <= fields
    assert fields - set(vars(sdk_span)) == {"_span_processors"}


def test_sdk_span_metrics_count_lean_spans_alike(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")

    def counts(lean: bool) -> list[Any]:
        reader = InMemoryMetricReader()
        setup = Setup(
            ParentBased(TraceIdRatioBased(0.5)), meter_provider=MeterProvider(metric_readers=[reader])
        )
        open_spans = []
        for i in range(20):
            span = setup.lean.start_span("x") if lean else setup.tracer.start_span("x")
            if i % 3:
                span.end()
            else:
                open_spans.append(span)
        data = reader.get_metrics_data()
        return sorted(
            (m.name, tuple(sorted(p.attributes.items())), p.value)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            for p in m.data.data_points
        )

    expected = counts(lean=False)
    assert any(name.startswith("otel.sdk.span") for name, _, _ in expected)
    assert counts(lean=True) == expected


def test_a_disabled_tracer_gives_non_recording_spans_for_both():
    from opentelemetry.sdk.trace import _TracerConfig

    setup = Setup()
    setup.tracer._set_tracer_config(_TracerConfig(is_enabled=False))
    assert not setup.lean.start_span("x").is_recording()
    assert not setup.tracer.start_span("x").is_recording()


class ReadsAttributes(Sampler):
    """A sampler of the application's: it may decide on the attributes given to start_span."""

    def should_sample(self, *args: Any, **kwargs: Any) -> Any:
        return ALWAYS_OFF.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "reads attributes"


def test_lean_spans_are_used_only_where_the_sdk_would_do_nothing_more():
    setup = Setup()
    assert setup.lean.ready()
    setup.provider.add_span_processor(BatchSpanProcessor(CollectingSpanExporter()))  # its on_end wants a ReadableSpan copy
    assert not setup.lean.ready()  # re-checked when the processors change

    assert not LeanTracer(TracerProvider(sampler=ReadsAttributes()).get_tracer("x")).ready()
    assert not LeanTracer(TracerProvider(sampler=ParentBased(ReadsAttributes())).get_tracer("x")).ready()
    assert not LeanTracer(trace.NoOpTracer()).ready()

    proxy = trace.ProxyTracer("configured later")
    proxy._real_tracer = Setup().tracer  # what the API's proxy resolves to once a provider is set
    assert LeanTracer(proxy).ready()


def test_the_middleware_s_server_span_is_lean_and_parents_spans_of_the_sdk():
    setup = Setup()
    app = FastAPI()
    seen: list[Any] = []

    @app.get("/orders/{oid}")
    async def order(oid: str) -> dict[str, str]:
        current = trace.get_current_span()
        seen.append(current)
        current.set_attribute("order.id", oid)
        with setup.tracer.start_as_current_span("child"):
            pass
        return {"oid": oid}

    app.add_middleware(MonitoringMiddleware, tracer_provider=setup.provider, meter_provider=MeterProvider())
    with TestClient(app) as client:
        assert client.get("/orders/7").status_code == 200
    setup.processor.force_flush()
    assert type(seen[0]) is LeanSpan
    by_name = {s.name: s for s in setup.exporter.spans}
    server, child = by_name["GET /orders/{oid}"], by_name["child"]
    assert child.parent.span_id == server.context.span_id
    assert server.attributes["order.id"] == "7"
    assert server.attributes["http.route"] == "/orders/{oid}"
    assert server.attributes["http.response.status_code"] == 200


class NoticingStart(SpanProcessor):
    """A processor of the application's (its on_start may read attributes): the SDK's path then."""


@pytest.mark.parametrize(
    "limits",
    [SpanLimits(), SpanLimits(max_span_attribute_length=12), SpanLimits(max_span_attributes=6)],
    ids=["default-limits", "short-values", "few-attributes"],
)
def test_the_middleware_s_lean_server_span_is_the_sdk_s(limits, caplog):
    """Through the middleware: the lean span (the middleware's own length bound) against the SDK's."""
    import httpx

    def serve(lean: bool) -> tuple[list[dict[str, Any]], list[str]]:
        setup = Setup(limits=limits)
        if not lean:
            setup.provider.add_span_processor(NoticingStart())
        app = FastAPI()

        @app.api_route("/orders/{oid}", methods=["GET", "PURGE"])
        async def order(oid: str) -> dict[str, int]:
            return {"n": len(oid)}

        app.add_middleware(MonitoringMiddleware, tracer_provider=setup.provider, meter_provider=MeterProvider())
        middleware = MonitoringMiddleware(app, tracer_provider=setup.provider, meter_provider=MeterProvider())
        assert middleware._lean.ready() is lean

        async def go() -> None:
            transport = httpx.ASGITransport(app=app)
            for base in ("http://trader.local:8080", "https://" + "h" * 40, "http://[::1]"):
                async with httpx.AsyncClient(transport=transport, base_url=base) as client:
                    await client.get("/orders/1?x=1&api_key=secret")
                    await client.get("/orders/" + "y" * 30)
                    await client.request("PURGE", "/orders/2")
                    await client.get("/nope")

        caplog.clear()
        with caplog.at_level(logging.WARNING):
            import asyncio

            asyncio.run(go())
            setup.processor.force_flush()
        for span in setup.exporter.spans:
            span._start_time, span._end_time = 1_000, 2_000
        spans = MessageToDict(encode_spans(setup.exporter.spans))["resourceSpans"][0]["scopeSpans"][0]["spans"]
        return spans, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    expected, sdk_warnings = serve(lean=False)
    got, lean_warnings = serve(lean=True)
    assert len(got) == 12
    assert got == expected
    assert lean_warnings == sdk_warnings
