"""Unique marker secrets planted through every entry point of a real app appear at no exit.

The leaking API of ``tests/e2e/apps/secrets_app.py`` runs under a real uvicorn server (in a
thread, access log on) with otel-trader configured on in-memory span and log exporters. Each
request plants markers the way a careless trading bot leaks a credential: query string, a bot
token and a webhook secret in the URL path, ``trace_operation`` attributes,
``add_span_attribute``, log ``extra``, ``logger.exception`` with a DSN in the exception, an
unhandled exception with a bare bot token, an httpx call with user:password and ``api_key`` in
its URL, ``record_counter`` attributes. Then every exit of the process is searched: what the
span and log exporters received, the in-process ``/metrics`` text, the application's own
console log handler, and everything written to stdout/stderr (uvicorn's error and access
logs). A marker found anywhere fails the test; the telemetry itself must still be there.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
import uvicorn
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_trader
from tests.conftest import free_port
from tests.e2e.apps.secrets_app import create_app, leaked, leaky_requests, make_markers

pytestmark = pytest.mark.timeout(90)


class _Server:
    """uvicorn serving in a thread (it installs signal handlers only in the main thread)."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-markers", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """The application's own console logging (as ``logging.basicConfig`` would set it up)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def call(port: int, method: str, path: str) -> int:
    """One request over plain http.client (no telemetry of the test's own), on a new connection
    (uvicorn closes the connection after an unhandled exception)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_no_marker_reaches_any_exit(
    reset_otel: None, console: io.StringIO, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make_markers()
    port = free_port()
    monkeypatch.setenv("SECRET_MARKERS", json.dumps(m))
    monkeypatch.setenv("EXCHANGE_URL", f"http://127.0.0.1:{port}")  # the app calls itself
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    # uvicorn configures its loggers when its Config is built, before the app is loaded: the
    # order of a real `uvicorn --factory` start.
    config = uvicorn.Config(
        create_app,
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="info",
        access_log=True,
        lifespan="off",
    )
    manager = otel_trader.configure(
        enabled=True, exporter="none", service_name="markers", span_exporter=spans, log_exporter=logs
    )
    server = _Server(config)
    server.start()
    try:
        for method, path, status in leaky_requests(m):
            assert call(port, method, path) == status, path
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            metrics_text = response.read().decode()
        assert manager.flush(timeout=10)
    finally:
        server.stop()

    exported_spans = spans.get_finished_spans()
    exported_logs = logs.get_finished_logs()
    out, err = capfd.readouterr()
    exits = {
        "span exporter": "\n".join(s.to_json() for s in exported_spans),
        "log exporter": "\n".join(r.to_json() for r in exported_logs),
        "/metrics": metrics_text,
        "console log handler": console.getvalue(),
        "stdout": out,
        "stderr": err,
    }
    leaks = {where: leaked(m, text) for where, text in exits.items()}
    assert {where: names for where, names in leaks.items() if names} == {}

    # The data is still there, with the secrets replaced rather than dropped.
    by_name = {s.name: s for s in exported_spans}
    query = by_name["GET /orders/{symbol}"].attributes["url.query"]
    assert query.startswith("api_key=REDACTED&accessToken=REDACTED") and query.endswith("qty=2"), query
    assert by_name["place_order"].attributes["api_key"] == "REDACTED"
    assert by_name["place_order"].attributes["password"] == "REDACTED"
    assert by_name["GET /bot{token}/sendMessage"].attributes["url.path"] == "/botREDACTED/sendMessage"
    assert by_name["POST /webhook/{secret}"].attributes["url.path"] == "/webhook/REDACTED"
    failed = by_name["GET /fail"]
    assert failed.status.description == "RuntimeError: Telegram rejected token REDACTED"
    assert any(
        "rejected token REDACTED" in str(e.attributes.get("exception.stacktrace")) for e in failed.events
    )
    client = next(s for s in exported_spans if str(s.attributes.get("url.full", "")).endswith("qty=1"))
    assert str(client.attributes["url.full"]).startswith("http://REDACTED:REDACTED@127.0.0.1")
    bodies = [str(r.log_record.body) for r in exported_logs]
    assert any(b.startswith("HTTP Request: GET http://REDACTED:REDACTED@127.0.0.1") for b in bodies), bodies
    placed = next(r.log_record for r in exported_logs if r.log_record.body == "order placed for BTCUSDT")
    assert placed.attributes is not None and placed.attributes["api_key"] == "REDACTED"
    assert "leaky_orders_total" in metrics_text
    assert "Exception in ASGI application" in err and "Telegram rejected token REDACTED" in err
    assert "POST /webhook/REDACTED HTTP/1.1" in out  # uvicorn's access log
    assert "postgresql://REDACTED:REDACTED@db" in console.getvalue()
