"""Exchange-client fixtures: the demo's mock Binance venue on loopback, telemetry exported in memory.

``venue`` serves :mod:`otel_trader.demo.binance` (plus ``/orders/{order_id}/fills`` and
``/echo`` for plain HTTP clients) under uvicorn in a thread of the test process, and records
what reached it (headers, query, body), so tests can check propagation and pull the signatures
the clients really sent. ``exported`` is otel-trader configured with in-memory span and log
exporters behind its scrubbing wrappers: what it holds is what would leave the process.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_trader
from otel_trader.demo.binance import MockBinance, install
from otel_trader.integrations import websockets as ws_integration
from otel_trader.integrations.fastapi import native_telemetry_config
from otel_trader.trading import exchanges
from tests.conftest import free_port


@dataclass
class Seen:
    """One request as the venue received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Venue:
    url: str
    state: MockBinance
    api_key: str
    secret: str
    seen: list[Seen] = field(default_factory=list)

    def signatures(self) -> list[str]:
        """Every ``signature`` value the venue received (query strings and bodies)."""
        from urllib.parse import parse_qsl

        out = []
        for s in self.seen:
            for source in (s.query, s.body.decode("utf-8", "replace")):
                out += [v for k, v in parse_qsl(source) if k == "signature"]
        return out


class _Recorder:
    """ASGI wrapper keeping each request's headers, query and body (bounded: the last 500)."""

    def __init__(self, app: Any, seen: list[Seen]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        answered: dict[str, str] = {}

        async def recording_receive() -> Any:
            message = await receive()
            if message.get("type") == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                answered.update({k.decode().lower(): v.decode() for k, v in message.get("headers", [])})
            await send(message)

        try:
            await self.app(scope, recording_receive, recording_send)
        finally:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            query = scope["query_string"].decode()
            self.seen.append(Seen(scope["method"], scope["path"], query, headers, b"".join(chunks), answered))
            del self.seen[:-500]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        # The venue sends its own Date header (its clock may be off); uvicorn would add the host's.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", date_header=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def venue_app(state: MockBinance, seen: list[Seen]) -> Any:
    """The mock venue without telemetry of its own (its spans would mix with the client's)."""
    app = FastAPI()
    native = native_telemetry_config(app)
    if native is not None:
        native.update(tracing=False, operation_spans=False, metrics=False, logs=False)
    install(app, state)

    @app.get("/orders/{order_id}/fills")
    async def fills(order_id: str) -> dict[str, Any]:
        return {"orderId": order_id, "fills": []}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/status/{code}")
    async def status(code: int) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"code": code}, status_code=code)

    return _Recorder(app, seen)


@pytest.fixture(autouse=True)
def _fresh_exchange_state() -> Iterator[None]:
    exchanges.reset_state()
    ws_integration.reset_state()
    yield
    exchanges.reset_state()
    ws_integration.reset_state()


@pytest.fixture
def venue() -> Iterator[Venue]:
    """The mock Binance venue with fresh credentials; no random failures (tests inject their own)."""
    api_key, secret = f"vk{secrets.token_hex(16)}", f"vs{secrets.token_hex(24)}"
    state = MockBinance(
        api_key=api_key,
        api_secret=secret,
        rate_limit_rate=0.0,
        timestamp_error_rate=0.0,
        error_rate=0.0,
        max_latency=0.003,
        seed=7,
    )
    seen: list[Seen] = []
    with ServerThread(venue_app(state, seen)) as server:
        yield Venue(f"http://127.0.0.1:{server.port}", state, api_key, secret, seen)


@dataclass
class Exported:
    """otel-trader on, exporting to memory through its scrubbing wrappers."""

    manager: Any
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter

    def finished_spans(self) -> list[Any]:
        assert self.manager.flush(timeout=10)
        return list(self.spans.get_finished_spans())

    def finished_logs(self) -> list[Any]:
        assert self.manager.flush(timeout=10)
        return list(self.logs.get_finished_logs())

    def scrape(self) -> str:
        from prometheus_client import REGISTRY, generate_latest

        return generate_latest(REGISTRY).decode()


@pytest.fixture
def start_telemetry(reset_otel: None, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Exported]:
    """``start(**settings)``: otel-trader on with ``settings`` (TelemetryConfig fields) and the environment."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

    def start(**settings: Any) -> Exported:
        spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
        manager = otel_trader.configure(
            enabled=True,
            exporter="none",
            service_name="exchange-tests",
            span_exporter=spans,
            log_exporter=logs,
            **settings,
        )
        return Exported(manager, spans, logs)

    return start


@pytest.fixture
def exported(start_telemetry: Callable[..., Exported]) -> Exported:
    """Telemetry on with the default settings."""
    return start_telemetry()


def by_name(spans: list[Any], name: str) -> list[Any]:
    """The spans called ``name``."""
    return [s for s in spans if s.name == name]


def children(spans: list[Any], parent: Any) -> list[Any]:
    """The spans whose parent is ``parent``."""
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
