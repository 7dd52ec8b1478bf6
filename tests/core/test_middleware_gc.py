"""Requests through the real middleware and SDK leave nothing to the cyclic GC and nothing alive.

The GC's full collections traverse the whole heap and pause every request in flight for tens of
milliseconds; the span path must neither make reference cycles (only the cyclic GC frees those)
nor keep its objects alive past the request (they then reach the old generation, whose growth
is what triggers full collections). The server here does what uvicorn does between requests on
a keep-alive connection: it schedules a keep-alive timer from inside the response's last
``send`` and cancels it when the next request arrives, and the loop keeps the cancelled timer
(and the context it copied) until it prunes its heap.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import otel_trader

REQUESTS = 300


class Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Watch(SpanProcessor):
    """Keeps a weak reference to every span the SDK starts."""

    def __init__(self) -> None:
        self.spans: list[weakref.ref[Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.spans.append(weakref.ref(span))


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{oid}")
    async def order(oid: str) -> dict[str, str]:
        with otel_trader.trace_operation("load_order", attributes={"oid": oid}):
            if oid.startswith("missing"):
                raise HTTPException(status_code=404)
            if oid.startswith("boom"):
                raise RuntimeError(f"order {oid} exploded")
        return {"oid": oid}

    return app


async def serve(app: Any, paths: list[str]) -> list[asyncio.TimerHandle]:
    """One keep-alive connection, uvicorn-style; returns the (cancelled) keep-alive timers."""
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            timers.append(loop.call_later(60, lambda: None))

    for path in paths:
        if timers:
            timers[-1].cancel()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"trader.local")],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        with contextlib.suppress(RuntimeError):  # what the server logs; the 500 response was sent
            await app(scope, receive, send)
    return timers


def paths(n: int) -> list[str]:
    kinds = ("ok", "ok", "missing", "boom")
    return [f"/orders/{kinds[i % len(kinds)]}-{i}" for i in range(n)]


@pytest.fixture
def traced(reset_otel: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FastAPI, Watch]]:
    monkeypatch.setenv("TELEMETRY_LOGS_ENABLED", "false")
    manager = otel_trader.configure(enabled=True, exporter="none", span_exporter=Discard())
    watch = Watch()
    manager.tracer_provider.add_span_processor(watch)  # type: ignore[union-attr]
    app = otel_trader.instrument_app(make_app())
    asyncio.run(serve(app, paths(40)))  # warm-up: middleware stack, caches, instruments
    yield app, watch


@pytest.fixture
def gc_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _ours(obj: Any) -> bool:
    """Whether a garbage object belongs to the span path: our frames, SDK spans and contexts."""
    module = type(obj).__module__
    if module.startswith("opentelemetry"):
        return True
    code = getattr(obj, "f_code", None) or getattr(obj, "gi_code", None) or getattr(obj, "cr_code", None)
    return code is not None and "otel_trader" in code.co_filename


def test_requests_leave_no_reference_cycles_on_the_span_path(traced, gc_off):
    app, _ = traced
    gc.set_debug(gc.DEBUG_SAVEALL)
    asyncio.run(serve(app, paths(REQUESTS)))
    gc.collect()
    ours = [obj for obj in gc.garbage if _ours(obj)]
    assert ours == [], f"{len(ours)} objects of the span path were only freed by the cyclic GC: {ours[:10]}"


def test_no_span_outlives_its_request(traced, gc_off):
    """Reference counting alone frees every span, although the server keeps its timers around."""
    app, watch = traced
    watch.spans.clear()
    timers = asyncio.run(serve(app, paths(REQUESTS)))
    assert len(timers) == REQUESTS
    assert len(watch.spans) == 2 * REQUESTS  # the server span and the operation span
    alive = [ref() for ref in watch.spans if ref() is not None]
    assert alive == [], f"{len(alive)} of {len(watch.spans)} spans still referenced after their request"


@pytest.mark.parametrize("setting", ["true", "false"])
def test_the_lifespan_freezes_the_started_app_and_unfreezes_at_its_end(reset_otel, monkeypatch, setting):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_EXPORTER", "none")
    monkeypatch.setenv("TELEMETRY_LOGS_ENABLED", "false")
    monkeypatch.setenv("TELEMETRY_GC_FREEZE", setting)
    started: list[int] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append(gc.get_freeze_count())  # the app's own start-up runs before the freeze
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    otel_trader.instrument_app(app)
    assert gc.get_freeze_count() == 0
    with TestClient(app) as client:
        assert client.get("/ping").status_code == 200
        frozen = gc.get_freeze_count()
    assert started == [0]
    assert (frozen > 1000) if setting == "true" else (frozen == 0)
    assert gc.get_freeze_count() == 0
