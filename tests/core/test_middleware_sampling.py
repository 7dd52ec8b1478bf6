"""Sampling as a first-class path: every sampler × caller (none, sampled, unsampled) × outcome.

Whatever the sampler decides, a request is served as without telemetry (its own error, never
one of ours), counted once in the RED metrics, and a failing one reaches the error hooks with
its trace id; only sampled requests produce (ended, exported) spans. Raw ASGI calls, so an
exception raised by the middleware cannot hide behind a 500 that Starlette already sent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import generate_latest

import otel_trader
from otel_trader.web.middleware import RequestInfo
from tests.core.test_middleware import value

REQUESTS = 40
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLERS = {
    "no-parent": None,
    "sampled-parent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
    "unsampled-parent": f"00-{TRACE_ID}-00f067aa0ba902b7-00",
}
SAMPLERS = [
    ("always_on", "1"),
    ("always_off", "1"),
    ("traceidratio", "0.1"),
    ("traceidratio", "0"),
    ("parentbased_always_on", "1"),
    ("parentbased_always_off", "1"),
    ("parentbased_traceidratio", "0.1"),
    ("parentbased_traceidratio", "0"),
]


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ok/{n}")
    async def ok(n: int) -> dict[str, int]:
        with otel_trader.trace_operation("inner", attributes={"n": n}):
            otel_trader.add_span_attribute("extra", n)
        return {"n": n}

    @app.get("/fail/{n}")
    async def fail(n: int) -> None:
        raise RuntimeError(f"handler failure {n}")

    @app.get("/http-error/{n}")
    async def http_error(n: int) -> None:
        raise HTTPException(status_code=503)

    return app


async def raw_call(app: Any, path: str, traceparent: str | None) -> tuple[int, BaseException | None]:
    headers = [(b"host", b"trader.local:8000")]
    if traceparent:
        headers.append((b"traceparent", traceparent.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    try:
        await app(scope, receive, send)
    except BaseException as exc:  # noqa: BLE001 - what escapes is the observation
        return status, exc
    return status, None


@pytest.mark.parametrize(("sampler", "arg"), SAMPLERS)
@pytest.mark.parametrize("caller", list(CALLERS))
def test_every_sampler_and_caller(reset_otel, monkeypatch, caplog, sampler, arg, caller):
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_EXPORTER", "none")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    exporter = InMemorySpanExporter()
    manager = otel_trader.configure(span_exporter=exporter)
    reports: list[tuple[BaseException, RequestInfo]] = []
    manager.add_error_hook(lambda exc, info: reports.append((exc, info)))
    app = otel_trader.instrument_app(make_app())
    traceparent = CALLERS[caller]

    async def run() -> list[tuple[str, int, BaseException | None]]:
        results = []
        for n in range(REQUESTS):
            for kind in ("ok", "fail", "http-error"):
                status, exc = await raw_call(app, f"/{kind}/{n}", traceparent)
                results.append((kind, status, exc))
        return results

    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        results = asyncio.run(run())

    # Served exactly as without telemetry: the handler's own error, never one of ours.
    for kind, status, exc in results:
        if kind == "ok":
            assert (status, exc) == (200, None)
        elif kind == "http-error":
            assert (status, exc) == (503, None)
        else:
            assert status == 500 and isinstance(exc, RuntimeError) and "handler failure" in str(exc), exc
    assert not [r for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]

    # Counted once each, whatever was sampled.
    text = generate_latest(manager.prometheus_registry).decode()
    assert value(text, "http_requests_total", path="/ok/{n}", status="200") == REQUESTS
    assert value(text, "http_requests_total", path="/fail/{n}", status="500") == REQUESTS
    assert value(text, "http_requests_total", path="/http-error/{n}", status="503") == REQUESTS

    # Every failure reaches the hooks, with the caller's trace id when there is one.
    assert len(reports) == REQUESTS
    assert all(isinstance(exc, RuntimeError) and info.route == "/fail/{n}" for exc, info in reports)
    if traceparent:
        assert {info.trace_id for _, info in reports} == {TRACE_ID}
    else:
        assert all(info.trace_id and len(info.trace_id) == 32 for _, info in reports)

    manager.flush()
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    sampled_all = sampler == "always_on" or (
        sampler == "parentbased_always_on" and caller != "unsampled-parent"
    ) or (sampler.startswith("parentbased") and caller == "sampled-parent")
    sampled_none = (
        sampler == "always_off"
        or (sampler.startswith("parentbased") and caller == "unsampled-parent")
        or (arg == "0" and not (sampler.startswith("parentbased") and caller == "sampled-parent"))
        or (sampler == "parentbased_always_off" and caller == "no-parent")
    )
    if sampler == "traceidratio" and traceparent and arg != "0":
        # The ratio decides on the (fixed) caller's trace id alone: all or nothing.
        from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

        decision = TraceIdRatioBased(float(arg)).should_sample(None, int(TRACE_ID, 16), "x").decision
        assert len(servers) == (3 * REQUESTS if decision == Decision.RECORD_AND_SAMPLE else 0)
    elif sampled_all:
        assert len(servers) == 3 * REQUESTS
    elif sampled_none:
        assert servers == []
    else:  # a ratio of 0.1 over 120 new traces
        assert 0 < len(servers) < 3 * REQUESTS * 0.5, len(servers)
    for span in servers:
        # A sampled span is complete: named after its route, status recorded, ended.
        assert span.name in {"GET /ok/{n}", "GET /fail/{n}", "GET /http-error/{n}"}
        assert span.end_time is not None
        assert span.attributes["http.response.status_code"] in (200, 500, 503)
        if span.name == "GET /fail/{n}":
            assert span.attributes["error.type"] == "RuntimeError"
    # Children follow their server span's decision.
    inner = [s for s in spans if s.name == "inner"]
    assert len(inner) == len([s for s in servers if s.name == "GET /ok/{n}"])
