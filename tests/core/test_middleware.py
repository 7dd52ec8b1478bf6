"""MonitoringMiddleware and instrument_app over real ASGI calls: RED metrics, one server span, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

import otel_trader
from otel_trader.web.middleware import RequestInfo

#: FastAPI ≥ 0.142 ships native telemetry; tests/core/test_old_fastapi.py runs this file on 0.115.
HAS_NATIVE = hasattr(FastAPI(), "_native_telemetry")


def make_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/api")

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.include_router(router)

    @app.post("/orders/{symbol}")
    async def place(symbol: str) -> dict[str, Any]:
        with otel_trader.trace_operation("place_order", attributes={"symbol": symbol}) as span:
            otel_trader.record_counter(
                "orders_total", attributes={"side": "buy", "status": "filled", "exchange": "okx"}
            )
            span.set_attribute("qty", 1)
        return {"ok": True}

    @app.get("/sleep")
    async def sleep(seconds: float) -> dict[str, float]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom for order 12345")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=418)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    sub = FastAPI()

    @sub.get("/x/{n}")
    async def sub_x(n: int) -> dict[str, int]:
        return {"n": n}

    app.mount("/sub", sub)
    return app


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("10.1.2.3", 5555))
    return httpx.AsyncClient(transport=transport, base_url="http://trader.local")


async def call(app: Any, *requests: tuple[str, str], **kwargs: Any) -> list[httpx.Response]:
    async with client(app) as c:
        return [await c.request(method, url, **kwargs) for method, url in requests]


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels without otel_scope_*, value) of every sample called ``name``."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                labels = {k: v for k, v in sample.labels.items() if not k.startswith("otel_scope")}
                found.append((labels, sample.value))
    return found


def value(text: str, name: str, **labels: str) -> float:
    matching = [v for ls, v in samples(text, name) if all(ls.get(k) == want for k, want in labels.items())]
    assert len(matching) == 1, (name, labels, samples(text, name))
    return matching[0]


@pytest.fixture
def app(telemetry) -> FastAPI:
    return otel_trader.instrument_app(make_app())


def test_red_metrics_use_seed_names_labels_and_route_templates(telemetry, app):
    asyncio.run(
        call(
            app,
            ("GET", "/api/items/1"),
            ("GET", "/api/items/2"),
            ("POST", "/orders/BTC-USDT"),
            ("GET", "/sub/x/7"),
            ("GET", "/teapot"),
        )
    )
    text = telemetry.scrape()
    assert value(text, "http_requests_total", method="GET", path="/api/items/{item_id}", status="200") == 2
    assert value(text, "http_requests_total", method="POST", path="/orders/{symbol}", status="200") == 1
    assert value(text, "http_requests_total", method="GET", path="/sub/x/{n}", status="200") == 1
    assert value(text, "http_requests_total", method="GET", path="/teapot", status="418") == 1
    assert value(text, "http_request_duration_seconds_count", method="GET", path="/api/items/{item_id}") == 2
    # Labels are exactly the seed's: method, path, status (histogram: method, path, le).
    assert {frozenset(ls) for ls, _ in samples(text, "http_requests_total")} == {
        frozenset({"method", "path", "status"})
    }
    assert {frozenset(ls) for ls, _ in samples(text, "http_request_duration_seconds_bucket")} == {
        frozenset({"method", "path", "le"})
    }
    assert value(text, "orders_total", side="buy", status="filled", exchange="okx") == 1


def test_duration_buckets_are_seconds(telemetry, app):
    asyncio.run(call(app, ("GET", "/sleep?seconds=0.2")))
    text = telemetry.scrape()
    bucket = {ls["le"]: v for ls, v in samples(text, "http_request_duration_seconds_bucket") if ls["path"] == "/sleep"}
    # With OTel's default (millisecond) boundaries everything lands in le="5"; ours are seconds.
    assert bucket["0.1"] == 0 and bucket["0.25"] == 1 and bucket["+Inf"] == 1
    assert "0.005" in bucket and "10.0" in bucket
    total = value(text, "http_request_duration_seconds_sum", path="/sleep")
    assert 0.2 <= total < 1.0


def test_unmatched_paths_collapse_into_one_series(telemetry, app):
    asyncio.run(call(app, *[("GET", f"/wp-admin/{i}.php") for i in range(100)]))
    text = telemetry.scrape()
    unmatched = [(ls, v) for ls, v in samples(text, "http_requests_total") if ls["status"] == "404"]
    assert unmatched == [({"method": "GET", "path": "<unmatched>", "status": "404"}, 100.0)]


def test_excluded_paths_are_neither_traced_nor_counted(telemetry, app):
    asyncio.run(call(app, ("GET", "/health"), ("GET", "/metrics")))
    text = telemetry.scrape()
    assert not [ls for ls, _ in samples(text, "http_requests_total") if ls["path"] in ("/health", "/metrics")]
    assert telemetry.finished_spans() == []


def test_exactly_one_server_span_per_request_and_no_double_counting(telemetry, app):
    asyncio.run(call(app, ("GET", "/api/items/1"), ("POST", "/orders/ETH"), ("GET", "/sub/x/1")))
    spans = telemetry.finished_spans()
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert sorted(s.name for s in servers) == ["GET /api/items/{item_id}", "GET /sub/x/{n}", "POST /orders/{symbol}"]
    # FastAPI's native telemetry (switched off by instrument_app) would add these:
    assert not [s for s in spans if s.name.startswith("fastapi.")]
    assert len({s.context.trace_id for s in servers}) == 3
    text = telemetry.scrape()
    assert "http_server_request_duration_seconds" not in text  # native metrics off
    assert sum(v for _, v in samples(text, "http_requests_total")) == 3
    child = next(s for s in spans if s.name == "place_order")
    parent = next(s for s in servers if s.name == "POST /orders/{symbol}")
    assert child.parent.span_id == parent.context.span_id
    assert dict(child.attributes) == {"symbol": "ETH", "qty": 1}


def test_server_span_attributes_follow_semconv_and_redact_query(telemetry, app):
    asyncio.run(call(app, ("GET", "/api/items/5?api_key=SECRET1&signature=SECRET2&limit=3")))
    (span,) = telemetry.finished_spans()
    assert span.kind == SpanKind.SERVER
    assert dict(span.attributes) == {
        "url.scheme": "http",
        "http.request.method": "GET",
        "network.protocol.version": "1.1",
        "server.address": "trader.local",
        "server.port": 80,
        "url.path": "/api/items/5",
        "url.query": "api_key=REDACTED&signature=REDACTED&limit=3",
        "http.route": "/api/items/{item_id}",
        "http.response.status_code": 200,
    }
    assert "SECRET" not in repr(span.to_json())


def test_incoming_traceparent_is_continued(telemetry, app):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent_id = "00f067aa0ba902b7"
    asyncio.run(call(app, ("GET", "/api/items/1"), headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}))
    (span,) = telemetry.finished_spans()
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent_id
    assert span.parent.is_remote


@pytest.mark.parametrize("order", ["default", "baggage first", "custom header"])
def test_propagators_are_asked_unless_their_answer_is_known(telemetry, app, order):
    """Without propagation headers the default propagators are skipped (their answer is an empty
    context); any other propagator set is asked for every request, whatever the headers."""
    from opentelemetry import baggage, propagate
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from otel_trader.web.middleware import ASGI_HEADERS
    from otel_trader.web.propagation import Extraction

    class CustomHeader(TextMapPropagator):
        """Continues the trace named in ``x-trace-id`` (as B3 or Jaeger propagators would)."""

        def extract(self, carrier, context=None, getter=None):
            found = (getter or ASGI_HEADERS).get(carrier, "x-trace-id")
            if not found:
                return context if context is not None else Context()
            parent = SpanContext(int(found[0], 16), 0x1234, is_remote=True, trace_flags=TraceFlags(1))
            return set_span_in_context(NonRecordingSpan(parent), context)

        def inject(self, carrier, context=None, setter=None):
            pass

        @property
        def fields(self):
            return {"x-trace-id"}

    from opentelemetry.context import Context

    saved = propagate.get_global_textmap()
    chosen = {
        "default": saved,
        "baggage first": CompositePropagator([W3CBaggagePropagator(), TraceContextTextMapPropagator()]),
        "custom header": CompositePropagator([CustomHeader()]),
    }[order]
    propagate.set_global_textmap(chosen)
    from otel_trader.web import middleware

    asked: list[Any] = []
    extract = middleware.propagate.extract

    def counting(carrier, *args, **kwargs):
        asked.append(dict(carrier))
        return extract(carrier, *args, **kwargs)

    try:
        assert Extraction().default_propagators() is (order == "default")
        for headers in ({}, {"user-agent": "wrk"}, {"baggage": "k=v"}, {"x-trace-id": "ab" * 16}):
            carrier = [(k.encode(), v.encode()) for k, v in headers.items()]
            asked.clear()
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(middleware.propagate, "extract", counting)
                asyncio.run(call(app, ("GET", "/api/items/1"), headers=headers))
            assert len(asked) == (1 if order != "default" or "baggage" in headers else 0), (order, headers)
            (span,) = telemetry.finished_spans()
            telemetry.spans.clear()
            expected = trace.get_current_span(propagate.extract(carrier, getter=ASGI_HEADERS)).get_span_context()
            if expected.is_valid:
                assert (span.context.trace_id, span.parent.span_id) == (expected.trace_id, expected.span_id)
            else:
                assert span.parent is None, headers
            if "x-trace-id" in headers:
                assert (span.parent is not None) is (order == "custom header")
        assert baggage.get_all() == {}  # nothing of a request's baggage leaked into the test's context
    finally:
        propagate.set_global_textmap(saved)


def test_unhandled_exception_is_500_marked_and_handed_to_hooks(telemetry, app):
    seen: list[tuple[BaseException, RequestInfo]] = []
    telemetry.manager.add_error_hook(lambda exc, info: seen.append((exc, info)))
    (response,) = asyncio.run(
        call(app, ("GET", "/boom?token=SECRET3"), headers={"Authorization": "Bearer SECRET4", "Cookie": "s=SECRET5"})
    )
    assert response.status_code == 500
    assert value(telemetry.scrape(), "http_requests_total", path="/boom", status="500") == 1
    (span,) = telemetry.finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.message"] == "kaboom for order 12345"
    (exc, info), = seen
    assert isinstance(exc, RuntimeError)
    assert info == RequestInfo(
        method="GET",
        route="/boom",
        path="/boom",
        status=500,
        client="10.1.2.3:5555",
        trace_id=format(span.context.trace_id, "032x"),
    )
    assert "SECRET" not in repr(info)


def test_hooks_added_after_the_app_started_are_called(telemetry, app):
    asyncio.run(call(app, ("GET", "/api/items/1")))  # builds the middleware stack
    seen: list[RequestInfo] = []
    telemetry.manager.add_error_hook(lambda exc, info: seen.append(info))
    asyncio.run(call(app, ("GET", "/boom")))
    assert [info.route for info in seen] == ["/boom"]


def test_a_failing_error_hook_does_not_change_the_response(telemetry, app):
    def broken(exc: BaseException, info: RequestInfo) -> None:
        raise ValueError("hook bug")

    telemetry.manager.add_error_hook(broken)
    (response,) = asyncio.run(call(app, ("GET", "/boom")))
    assert response.status_code == 500


def test_instrument_app_is_idempotent(telemetry):
    app = make_app()
    otel_trader.instrument_app(app)
    otel_trader.instrument_app(app)
    asyncio.run(call(app, ("GET", "/api/items/1")))
    assert len(telemetry.finished_spans()) == 1
    assert sum(v for _, v in samples(telemetry.scrape(), "http_requests_total")) == 1


def test_metrics_endpoint_is_mounted_with_runtime_metrics(telemetry, app):
    asyncio.run(call(app, ("GET", "/api/items/1")))
    (response,) = asyncio.run(call(app, ("GET", "/metrics")))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.text)}
    for expected in (
        "http_requests",  # the parser strips _total from the family name
        "http_request_duration_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds",
        "python_gc_objects_collected",
        "python_info",
        "target_info",
    ):
        assert expected in names, expected
    # Every family once: prometheus_client's own process/GC collectors were replaced, not doubled.
    families = [f.name for f in text_string_to_metric_families(response.text)]
    assert len(families) == len(set(families))
    assert value(response.text, "target_info", service_name="test-service", deployment_environment="test") == 1


def test_operation_spans_switch_hands_server_span_to_native_fastapi(telemetry):
    from otel_trader.integrations.fastapi import instrument_fastapi

    manager = telemetry.manager
    manager.config = manager.config.model_copy(update={"operation_spans": True})
    app = make_app()
    instrument_fastapi(app, manager)
    asyncio.run(call(app, ("POST", "/orders/SOL"), ("GET", "/boom")))
    spans = telemetry.finished_spans()
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert sorted(s.name for s in servers) == ["GET /boom", "POST /orders/{symbol}"]
    if HAS_NATIVE:
        assert {s.instrumentation_scope.name for s in servers} == {"fastapi"}
        assert {"fastapi.endpoint", "fastapi.serialization"} <= {s.name for s in spans}
    else:  # no native telemetry to hand the span to: ours makes it, still exactly one
        assert {s.instrumentation_scope.name for s in servers} == {"otel_trader.http"}
    boom = next(s for s in servers if s.name == "GET /boom")
    assert boom.status.status_code == StatusCode.ERROR
    assert [e for e in boom.events if e.name == "exception"], "the exception is recorded on the native span"
    text = telemetry.scrape()
    assert sum(v for _, v in samples(text, "http_requests_total")) == 2
    assert "http_server_request_duration_seconds" not in text


@pytest.mark.skipif(not HAS_NATIVE, reason="FastAPI < 0.142 has no native span to compare with")
def test_our_server_span_matches_native_fastapi_span(telemetry):
    """Same request through native FastAPI telemetry and through our middleware: same meaning."""
    from otel_trader.integrations.fastapi import instrument_fastapi

    ours_app = make_app()
    otel_trader.instrument_app(ours_app)
    native_app = make_app()
    manager = telemetry.manager
    instrument_fastapi(native_app, manager.__class__(manager.config.model_copy(update={"operation_spans": True})))
    for app in (ours_app, native_app):
        asyncio.run(call(app, ("GET", "/api/items/9?limit=2"), ("GET", "/nowhere")))
    servers = [s for s in telemetry.finished_spans() if s.kind == SpanKind.SERVER]
    by_scope: dict[str, list[Any]] = {}
    for span in servers:
        by_scope.setdefault(span.instrumentation_scope.name, []).append(span)
    ours, native = by_scope["otel_trader.http"], by_scope["fastapi"]
    for mine, theirs in zip(ours, native, strict=True):
        assert mine.name == theirs.name
        assert dict(mine.attributes) == dict(theirs.attributes)
        assert mine.status.status_code == theirs.status.status_code


def make_routed_app() -> FastAPI:
    """The guides' shapes: routers included with prefixes, nested, and in a mounted sub-app."""
    app = FastAPI()
    account = APIRouter()

    @account.get("/{item_id}")
    async def account_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    trading = APIRouter()

    @trading.get("/{item_id}")
    async def trading_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    inner = APIRouter(prefix="/inner")

    @inner.get("/orders/{oid}")
    async def inner_order(oid: str) -> dict[str, str]:
        return {"oid": oid}

    trading.include_router(inner, prefix="/nested")
    app.include_router(account, prefix="/api/account")
    app.include_router(trading, prefix="/api/trading")
    sub = FastAPI()
    sub_router = APIRouter(prefix="/positions")

    @sub_router.get("/{symbol}")
    async def position(symbol: str) -> dict[str, str]:
        return {"symbol": symbol}

    sub.include_router(sub_router, prefix="/v2")
    app.mount("/sub", sub)
    return app


ROUTED = {
    "/api/account/1": "/api/account/{item_id}",
    "/api/trading/2": "/api/trading/{item_id}",
    "/api/trading/nested/inner/orders/o-7": "/api/trading/nested/inner/orders/{oid}",
    "/sub/v2/positions/BTC": "/sub/v2/positions/{symbol}",
}


@pytest.mark.parametrize("native", [False, True], ids=["our-span", "fastapi-native-span"])
def test_prefixed_and_nested_routers_keep_their_full_template(telemetry, native):
    from otel_trader.integrations.fastapi import instrument_fastapi

    manager = telemetry.manager
    if native:
        manager = manager.__class__(manager.config.model_copy(update={"operation_spans": True}))
    app = make_routed_app()
    instrument_fastapi(app, manager)
    responses = asyncio.run(call(app, *[("GET", path) for path in ROUTED]))
    assert [r.status_code for r in responses] == [200] * len(ROUTED)
    text = telemetry.scrape()
    for template in ROUTED.values():
        assert value(text, "http_requests_total", path=template, status="200") == 1
        assert value(text, "http_request_duration_seconds_count", path=template) == 1
    servers = [s for s in telemetry.finished_spans() if s.kind == SpanKind.SERVER]
    assert sorted(s.name for s in servers) == sorted(f"GET {t}" for t in ROUTED.values())
    assert sorted(s.attributes["http.route"] for s in servers) == sorted(ROUTED.values())
