"""Nothing a client sends makes the middleware raise: generated ASGI scopes and headers.

Hypothesis generates HTTP scopes the way hostile or broken clients and proxies produce them:
odd methods, non-ASCII and huge paths, binary header values, Host headers with non-ASCII digits
or out-of-range ports, malformed traceparent/tracestate/baggage, strange schemes, HTTP versions,
client and server tuples. The instrumented app must behave exactly like the bare app (same
status, same exception escaping, if any) and otel-trader must log nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otel_trader
from otel_trader.web.middleware import MonitoringMiddleware, _split_host

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"

text = st.text(max_size=40)
latin1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=60).map(lambda s: s.encode("latin-1"))
host_values = st.one_of(
    st.builds(lambda h, p: f"{h}:{p}".encode("utf-8", "surrogatepass"), text, text),
    st.builds(lambda h, p: f"[{h}]:{p}".encode("utf-8", "surrogatepass"), text, text),
    st.sampled_from(
        [b"h:\xb2", b"h:\xb9", b"[::1]:\xb3", "h:²".encode(), "h:٣".encode(), b"h:99999", b"h:0", b"h:-1", b"[::1", b"["]
    ),
    st.binary(max_size=40),
)
traceparents = st.one_of(
    st.sampled_from(
        [
            f"00-{TRACE_ID}-00f067aa0ba902b7-01",
            f"00-{TRACE_ID}-00f067aa0ba902b7-00",
            f"ff-{TRACE_ID}-00f067aa0ba902b7-01",
            f"00-{'0' * 32}-00f067aa0ba902b7-01",
            f"00-{TRACE_ID}-{'0' * 16}-01",
            f"00-{TRACE_ID}-00f067aa0ba902b7-zz",
            f"01-{TRACE_ID}-00f067aa0ba902b7-01-extra",
            "00-" + "x" * 5000,
        ]
    ).map(str.encode),
    latin1,
)
header_names = st.sampled_from(
    [b"host", b"traceparent", b"tracestate", b"baggage", b"user-agent", b"x-forwarded-for", b"content-type", b"cookie"]
)


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    result = []
    for name in draw(st.lists(header_names, max_size=8)):
        if name == b"host":
            result.append((name, draw(host_values)))
        elif name == b"traceparent":
            result.append((name, draw(traceparents)))
        elif name == b"baggage":
            result.append((name, draw(st.one_of(latin1, st.just(b"k=" + b"v" * 9000), st.just(b"=,;=%zz")))))
        else:
            result.append((name, draw(latin1)))
    return result


@st.composite
def scopes(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(
        st.one_of(
            st.builds(lambda s: "/" + s, text),
            st.sampled_from(["/", "/ok", "/ok/1", "/items/%00", "/" + "a" * 20_000, "//", "/metrics/../x"]),
        )
    )
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": draw(st.sampled_from(["1.0", "1.1", "2", "3", ""])),
        "method": draw(st.one_of(st.sampled_from(["GET", "POST", "DELETE", "PATCH", "get", "BREW", ""]), text)),
        "scheme": draw(st.sampled_from(["http", "https", "ws", ""])),
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "root_path": draw(st.sampled_from(["", "/api", "/prefix/deeper"])),
        "query_string": draw(st.one_of(latin1, st.just(b"api_key=x&" * 500))),
        "headers": draw(headers()),
        "client": draw(st.one_of(st.none(), st.tuples(text, st.integers(-1, 70000)))),
        "server": draw(
            st.one_of(st.none(), st.tuples(text, st.one_of(st.none(), st.integers(-1, 70000))))
        ),
        "state": {},
    }


async def run(app: Any, scope: dict[str, Any]) -> tuple[int, str | None]:
    status = 0
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    try:
        await app(dict(scope, state={}), receive, send)
    except Exception as exc:  # noqa: BLE001 - compared between bare and instrumented
        return status, type(exc).__name__
    return status, None


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ok/{n}")
    async def ok(n: str) -> dict[str, str]:
        return {"n": n}

    @app.api_route("/{anything:path}", methods=["GET", "POST", "DELETE", "PATCH"])
    async def anything(anything: str) -> dict[str, int]:
        return {"len": len(anything)}

    return app


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def test_instrumented_app_behaves_like_the_bare_app(telemetry, caplog):
    bare = make_app()
    instrumented = otel_trader.instrument_app(make_app())

    @FUZZ
    @given(scope=scopes())
    def check(scope: dict[str, Any]) -> None:
        expected = asyncio.run(run(bare, scope))
        got = asyncio.run(run(instrumented, scope))
        assert got == expected, scope

    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        check()
    assert not [r.getMessage() for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING]
    assert telemetry.finished_spans(), "the fuzzed requests were traced"


def test_raw_middleware_never_raises_on_client_input(telemetry, caplog):
    async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = MonitoringMiddleware(plain)

    @FUZZ
    @given(scope=scopes())
    def check(scope: dict[str, Any]) -> None:
        assert asyncio.run(run(middleware, scope)) == (200, None)

    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        check()
    assert not [r.getMessage() for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com:8080", ("example.com", 8080)),
        ("[::1]:80", ("::1", 80)),
        ("h:²", ("h", None)),
        ("h:٣", ("h", None)),
        ("h:99999", ("h", None)),
        ("h:0", ("h", None)),
        ("h:", ("h", None)),
        ("[::1", ("::1", None)),
    ],
)
def test_host_ports_are_ascii_digits_in_range(host, expected):
    assert _split_host(host) == expected


def test_unicode_digit_host_port_is_served(telemetry):
    app = otel_trader.instrument_app(make_app())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ok/1",
        "raw_path": b"/ok/1",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", "trader.local:²".encode("latin-1"))],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    assert [asyncio.run(run(app, scope)) for _ in range(100)] == [(200, None)] * 100
    (span, *_) = [s for s in telemetry.finished_spans() if s.name == "GET /ok/{n}"]
    assert span.attributes["server.address"] == "trader.local"


def test_handler_chosen_status_codes_cannot_create_series(telemetry):
    from fastapi.responses import Response

    from tests.core.test_middleware import samples

    app = FastAPI()

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        return Response(status_code=code)

    otel_trader.instrument_app(app)

    async def send_all() -> None:
        transport = httpx_transport(app)
        async with transport as client:
            for code in range(100, 1000):
                await client.get(f"/status/{code}")

    asyncio.run(send_all())
    series = {ls["status"]: v for ls, v in samples(telemetry.scrape(), "http_requests_total") if ls["path"] == "/status/{code}"}
    from http import HTTPStatus

    registered = {str(int(s)) for s in HTTPStatus}
    assert set(series) == registered | {"1xx", "2xx", "3xx", "4xx", "5xx", "other"}
    assert len(series) < 80
    assert sum(series.values()) == 900  # every request still counted
    assert series["other"] == 400  # 600-999
    assert series["5xx"] == 100 - len([s for s in registered if s.startswith("5")])


def httpx_transport(app: Any) -> Any:
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://trader.local")
