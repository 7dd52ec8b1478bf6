"""The server span's attributes, written by the middleware directly, are what the SDK would have stored.

The same requests go through a middleware whose provider allows the direct write and through one
whose provider does not (a span processor the middleware does not know), and the exported spans
are compared; values past the span limits and user processors keep the SDK's own handling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler

from otel_trader.web.middleware import MonitoringMiddleware

PATHS = ["/orders/1?x=1&api_key=secret", "/orders/" + "y" * 300, "/nope", "/orders/2"]


class Noticing(SpanProcessor):
    """A processor of the application's: it may look at attributes when a span starts."""

    def __init__(self) -> None:
        self.at_start: list[dict[str, Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.at_start.append(dict(span.attributes))


class ByPath(Sampler):
    """A sampler that decides on attributes (the SDK passes it those given to start_span)."""

    def should_sample(
        self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
    ):
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "ByPath"


def run(provider: TracerProvider) -> list[dict[str, Any]]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()

    @app.get("/orders/{oid}")
    async def order(oid: str) -> dict[str, int]:
        return {"n": len(oid)}

    app.add_middleware(MonitoringMiddleware, tracer_provider=provider, meter_provider=MeterProvider())

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://trader.local:8080") as client:
            for path in PATHS:
                await client.get(path)

    asyncio.run(go())
    return [
        {"name": s.name, "attributes": dict(s.attributes), "dropped": s.dropped_attributes}
        for s in exporter.get_finished_spans()
    ]


def middleware_of(provider: TracerProvider) -> MonitoringMiddleware:
    return MonitoringMiddleware(None, tracer_provider=provider, meter_provider=MeterProvider())


def attribute_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the SDK logs about attribute values (truncated, dropped, invalid)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(("opentelemetry.attributes", "opentelemetry.sdk.trace"))
    ]


@pytest.mark.parametrize(
    "limits",
    [SpanLimits(), SpanLimits(max_span_attribute_length=100), SpanLimits(max_span_attributes=5)],
    ids=["default", "short-values", "few-attributes"],
)
def test_direct_attributes_equal_the_sdk_s(limits, caplog):
    direct = TracerProvider(span_limits=limits)
    assert middleware_of(direct)._direct.ready()
    through_sdk = TracerProvider(span_limits=limits)
    through_sdk.add_span_processor(Noticing())
    assert not middleware_of(through_sdk)._direct.ready()

    with caplog.at_level(logging.WARNING):
        expected = run(through_sdk)
        sdk_warnings = attribute_warnings(caplog)
        caplog.clear()
        got = run(direct)
        direct_warnings = attribute_warnings(caplog)
    assert got == expected
    assert direct_warnings == sdk_warnings  # truncation and dropping are the SDK's, warnings included
    assert got[0]["attributes"]["url.query"] == "x=1&api_key=REDACTED"


def test_processors_that_look_at_start_still_see_the_attributes():
    provider = TracerProvider()
    noticing = Noticing()
    provider.add_span_processor(noticing)
    run(provider)
    assert noticing.at_start and all(a.get("url.path", "").startswith("/") for a in noticing.at_start)


def test_samplers_that_read_attributes_still_get_them():
    assert not middleware_of(TracerProvider(sampler=ByPath()))._direct.ready()
    assert not middleware_of(TracerProvider(sampler=ParentBased(ByPath())))._direct.ready()
    assert middleware_of(TracerProvider(sampler=ParentBased(ALWAYS_ON)))._direct.ready()


def test_the_decision_follows_processors_added_later():
    provider = TracerProvider()
    middleware = middleware_of(provider)
    assert middleware._direct.ready()
    provider.add_span_processor(Noticing())
    assert not middleware._direct.ready()


@pytest.mark.parametrize(
    "attributes",
    [
        {"symbol": "BTC-USDT", "qty": 1, "px": 0.5, "ok": True},
        {"symbol": "x" * 5000},  # past the default value length cap: the SDK truncates and warns
        {"ids": [1, 2], "none": None, "raw": b"\x00", "": "empty key", 7: "int key"},
    ],
    ids=["plain", "long", "odd"],
)
def test_trace_operation_attributes_equal_the_sdk_s(reset_otel, caplog, attributes):
    import otel_trader

    exporter = InMemorySpanExporter()
    manager = otel_trader.configure(enabled=True, exporter="none", logs_enabled=False, span_exporter=exporter)
    from otel_trader.sdk import span_helpers as tracing

    assert tracing._direct.ready()
    tracer = manager.tracer_provider.get_tracer("otel_trader")  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING):
        with tracer.start_as_current_span("op", attributes=attributes):
            pass
        sdk_warnings = attribute_warnings(caplog)
        caplog.clear()
        with otel_trader.trace_operation("op", attributes=attributes):
            pass
        ours_warnings = attribute_warnings(caplog)
    assert manager.flush(10)
    expected, got = exporter.get_finished_spans()
    assert (dict(got.attributes), got.dropped_attributes) == (
        dict(expected.attributes),
        expected.dropped_attributes,
    )
    assert list(got.attributes) == list(expected.attributes)
    assert ours_warnings == sdk_warnings
