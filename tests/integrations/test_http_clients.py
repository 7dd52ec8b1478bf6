"""aiohttp and requests client spans, for real, against the mock venue on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import free_port

from .conftest import Exported, Venue, by_name


def _client_spans(exported: Exported) -> list[Any]:
    return [s for s in exported.finished_spans() if s.kind == SpanKind.CLIENT]


def _requests_get(url: str, **kwargs: Any) -> Any:
    import requests

    return requests.get(url, timeout=10, **kwargs)


async def _aiohttp_get(url: str, **kwargs: Any) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        await response.read()
        return response


def _get(client: str, url: str, **kwargs: Any) -> int:
    if client == "requests":
        return int(_requests_get(url, **kwargs).status_code)
    return int(asyncio.run(_aiohttp_get(url, **kwargs)).status)


CLIENTS = ["requests", "aiohttp"]


@pytest.mark.parametrize("client", CLIENTS)
def test_one_client_span_per_call_named_by_template_with_stable_attributes(
    exported: Exported, venue: Venue, client: str
) -> None:
    import otel_trader

    with otel_trader.trace_operation("reconcile"):
        for order_id in ("8231", "8232", "c0ffee00-1111-2222-3333-444455556666"):
            assert _get(client, f"{venue.url}/orders/{order_id}/fills?api_key=K3Y{order_id}&limit=5") == 200
    spans = _client_spans(exported)
    assert [s.name for s in spans] == ["GET /orders/{id}/fills"] * 3
    parent = by_name(exported.finished_spans(), "reconcile")[0]
    port = int(venue.url.rsplit(":", 1)[1])
    for span, order_id in zip(spans, ("8231", "8232", "c0ffee00-1111-2222-3333-444455556666"), strict=True):
        a = span.attributes
        assert span.parent.span_id == parent.context.span_id
        assert a["http.request.method"] == "GET"
        assert a["http.response.status_code"] == 200
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == port
        assert a["url.template"] == "/orders/{id}/fills"
        assert a["url.full"] == f"{venue.url}/orders/{order_id}/fills?api_key=REDACTED&limit=5"
        assert "http.url" not in a  # stable conventions only
    assert "K3Y" not in repr([s.to_json() for s in exported.finished_spans()])


@pytest.mark.parametrize("client", CLIENTS)
def test_error_status_and_refused_connection(exported: Exported, venue: Venue, client: str) -> None:
    assert _get(client, f"{venue.url}/status/503") == 503
    closed = f"http://127.0.0.1:{free_port()}/api/v3/time"
    with pytest.raises(Exception):  # noqa: B017 - each library raises its own connection error
        _get(client, closed)
    served, refused = _client_spans(exported)
    assert served.name == "GET /status/{id}"
    assert served.attributes["http.response.status_code"] == 503
    assert served.attributes["error.type"] == "503" and served.status.status_code == StatusCode.ERROR
    assert refused.name == "GET /api/v3/time"
    assert refused.attributes["error.type"] in ("ConnectionError", "ClientConnectorError")
    assert refused.status.status_code == StatusCode.ERROR


@pytest.mark.parametrize("client", CLIENTS)
def test_bodies_and_headers_are_not_recorded(exported: Exported, venue: Venue, client: str) -> None:
    body = "symbol=BTCUSDT&timestamp=1700000000000&signature=5ec12e7bodyvalue"
    headers = {"X-MBX-APIKEY": "hdrkey12345", "Content-Type": "application/x-www-form-urlencoded"}
    if client == "requests":
        import requests

        assert requests.post(f"{venue.url}/echo", data=body, headers=headers, timeout=10).status_code == 200
    else:
        import aiohttp

        async def post() -> int:
            async with aiohttp.ClientSession() as session, session.post(
                f"{venue.url}/echo", data=body, headers=headers
            ) as response:
                return response.status

        assert asyncio.run(post()) == 200
    (span,) = _client_spans(exported)
    assert span.name == "POST /echo"
    recorded = span.to_json()
    assert "5ec12e7bodyvalue" not in recorded and "hdrkey12345" not in recorded
    assert venue.seen[-1].body.decode() == body  # the request itself was sent unchanged


class _ForwardProxy(http.server.ThreadingHTTPServer):
    """An HTTP forward proxy on loopback that answers every request itself and keeps its headers.

    Requests to ``http://api.binance.com/...`` through it are what a call to a third-party
    host looks like on the wire, without leaving the machine.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                proxy.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                payload = json.dumps({"serverTime": 1}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def forward_proxy() -> Iterator[_ForwardProxy]:
    proxy = _ForwardProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def _via_proxy(client: str, url: str, proxy: str) -> int:
    if client == "requests":
        return int(_requests_get(url, proxies={"http": proxy}).status_code)
    return int(asyncio.run(_aiohttp_get(url, proxy=proxy)).status)


@pytest.mark.parametrize("client", CLIENTS)
def test_trace_context_goes_to_our_hosts_only(
    start_telemetry: Any, venue: Venue, forward_proxy: _ForwardProxy, client: str
) -> None:
    exported = start_telemetry()
    import otel_trader

    with otel_trader.trace_operation("bot-loop"):
        assert _get(client, f"{venue.url}/api/v3/time") == 200
        assert _via_proxy(client, "http://api.binance.com/api/v3/time", forward_proxy.url) == 200
    ours = venue.seen[-1].headers
    spans = _client_spans(exported)
    local = next(s for s in spans if s.attributes["server.address"] == "127.0.0.1")
    foreign = next(s for s in spans if s.attributes["server.address"] == "api.binance.com")
    assert ours["traceparent"].split("-")[2] == f"{local.context.span_id:016x}"
    path, theirs = forward_proxy.seen[-1]
    assert path == "http://api.binance.com/api/v3/time"
    assert not {"traceparent", "tracestate", "baggage"} & set(theirs), theirs
    assert foreign.name == "GET /api/v3/time"  # still traced, only nothing sent to them


@pytest.mark.parametrize("client", CLIENTS)
def test_listed_hosts_get_trace_context(start_telemetry: Any, forward_proxy: _ForwardProxy, client: str) -> None:
    start_telemetry(propagate_hosts=["*.binance.com"])
    import otel_trader

    with otel_trader.trace_operation("bot-loop"):
        assert _via_proxy(client, "http://api.binance.com/api/v3/time", forward_proxy.url) == 200
        assert _via_proxy(client, "http://api.kraken.com/0/public/Time", forward_proxy.url) == 200
    (_, binance), (_, kraken) = forward_proxy.seen
    assert "traceparent" in binance and "traceparent" not in kraken


@pytest.mark.parametrize("client", CLIENTS)
def test_switched_off_by_name(start_telemetry: Any, venue: Venue, client: str) -> None:
    exported = start_telemetry(disabled_instrumentations=["aiohttp-client" if client == "aiohttp" else client])
    assert _get(client, f"{venue.url}/api/v3/time") == 200
    assert _client_spans(exported) == []
    assert "traceparent" not in venue.seen[-1].headers


def test_both_clients_duration_metric_keeps_its_labels(exported: Exported, venue: Venue) -> None:
    # ccxt's sync and async classes in one bot: requests and aiohttp record the same metric with
    # different attribute keys, which the Prometheus exposition must not shift under wrong labels.
    assert _get("requests", f"{venue.url}/api/v3/time") == 200
    assert _get("aiohttp", f"{venue.url}/api/v3/ping") == 200
    from otel_trader.demo.summary import parse

    port = venue.url.rsplit(":", 1)[1]
    counts = [s for s in parse(exported.scrape()) if s.name == "http_client_request_duration_seconds_count"]
    assert len(counts) == 2
    for sample in counts:
        assert sample.labels["server_address"] == "127.0.0.1" and sample.labels["server_port"] == port
        assert sample.labels["http_request_method"] == "GET" and sample.labels["http_response_status_code"] == "200"
