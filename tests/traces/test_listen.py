"""``otel-trader traces --grpc/--http``: real apps export through our SDK straight to the command.

Two uvicorn apps of the end-to-end suite (the trading API and its exchange) run with
``OTLP_ENDPOINT`` pointed at the listening command, the exchange over gRPC and the API over
HTTP, so one trace arrives in pieces over both protocols and must be drawn whole.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_trader.traces.listen import OtlpReceiver, parse_address
from otel_trader.traces.model import Span, spans_from_json_line, spans_from_proto
from tests.e2e.conftest import AppProcess, app_env

from .helpers import DEMO_FILE, Command
from .test_model import _sdk_spans

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_a_real_app_exports_to_the_command_over_grpc_and_http(tmp_path, redis_server):
    saved = tmp_path / "received.jsonl"
    command = Command(
        ["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--route", "/orders/{symbol}", "--limit", "1",
         "--settle", "1.5", "--duration", "120", "--save", str(saved), "--width", "150"]
    )
    apps: list[AppProcess] = []
    try:
        grpc_port = int(command.wait_for(r"OTLP_ENDPOINT=127\.0\.0\.1:(\d+) \(gRPC\)").group(1))
        http_port = int(command.wait_for(r"OTLP_ENDPOINT=http://127\.0\.0\.1:(\d+) OTLP_PROTOCOL").group(1))
        exchange = AppProcess(
            "exchange", "tests.e2e.apps.trader_app:create_exchange",
            app_env("e2e-exchange", f"127.0.0.1:{grpc_port}"), tmp_path,
        )
        apps.append(exchange)
        exchange.wait_ready()
        api = AppProcess(
            "api", "tests.e2e.apps.trader_app:create_api",
            app_env(
                "e2e-api", f"http://127.0.0.1:{http_port}", OTLP_PROTOCOL="http/protobuf",
                EXCHANGE_URL=exchange.url, DATABASE_URL=f"sqlite:///{tmp_path / 'orders.db'}",
                REDIS_URL=redis_server.url,
            ),
            tmp_path,
        )
        apps.append(api)
        api.wait_ready()
        assert api.get("/quote/ETH-USDT")[0] == 200  # another route: filtered out
        time.sleep(2.5)  # metric exports (every second) reach the listener too
        assert api.get("/orders/BTC-USDT")[0] == 200
        for app in apps:
            # Metrics and logs are accepted as well: no export failure is reported.
            assert "cannot export" not in app.stderr(), app.stderr()
        out = command.finish(timeout=60)
    finally:
        for app in apps:
            app.stop()
        command.stop()
    err = "".join(command.err)
    assert command.proc.returncode == 0, err
    (trace_id,) = re.findall(r"^trace ([0-9a-f]{32})  GET /orders/\{symbol\}", out, re.M)
    body = out.split("\n")[2:]
    for pattern in (
        r"^GET /orders/\{symbol\} +200 ",
        r"^[├└]─ place_order ",
        # Depth 2, under place_order: the exchange call, without its query string.
        r"^[│ ]  [├└]─ GET\b.* 127\.0\.0\.1:\d+(/ticker/BTC-USDT)? +200 ",
        # Depth 3, under the call: the exchange's server span, received over gRPC.
        r"^[│ ]  [│ ]  [├└]─ GET /ticker/\{symbol\} +\[e2e-exchange\] +200 ",
        r"INSERT orders +sqlite",
        r"SELECT orders +sqlite",
        r"SET +redis",
        r"GET +redis",
    ):
        assert any(re.search(pattern, line) for line in body), f"{pattern!r} not in:\n{out}"
    assert "ETH-USDT" not in out and "\x1b" not in out
    assert re.search(r"received \d+ spans in \d+ OTLP requests", err)

    # What it received was saved: the command an error report quotes finds the trace there.
    found = subprocess.run(
        [sys.executable, "-m", "otel_trader.traces", "--trace-id", trace_id, "--width", "150"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OTEL_TRADER_TRACES_FILE": str(saved)},
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split("\n")[2:] == body


def _post(port: int, body: bytes, content_type: str, path: str = "/v1/traces", gzipped: bool = False):
    headers = {"Content-Type": content_type}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_http_receiver_takes_json_and_protobuf_and_refuses_garbage():
    received: list[list[Span]] = []
    with OtlpReceiver(received.append, http_address=("127.0.0.1", 0)) as receiver:
        port = receiver.http_port
        assert port
        line = DEMO_FILE.read_text().splitlines()[0]
        status, body = _post(port, line.encode(), "application/json", gzipped=True)
        assert (status, json.loads(body)) == (200, {})
        request = encode_spans(_sdk_spans())
        status, body = _post(port, request.SerializeToString(), "application/x-protobuf")
        assert status == 200 and ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()
        assert _post(port, b"\x08\x96\x01", "application/x-protobuf", path="/v1/metrics")[0] == 200
        assert _post(port, b"{not json", "application/json")[0] == 400
        assert _post(port, b"", "application/json", path="/v1/other")[0] == 404
        assert receiver.requests == 2  # trace export requests; metrics and logs are answered, not counted
    assert received == [spans_from_json_line(line), spans_from_proto(request)]


def test_a_taken_port_is_reported():
    with OtlpReceiver(lambda spans: None, grpc_address=("127.0.0.1", 0)) as first:
        assert first.grpc_port
        with pytest.raises(OSError, match="cannot listen for OTLP/gRPC"):
            OtlpReceiver(lambda spans: None, grpc_address=("127.0.0.1", first.grpc_port)).start()


def test_addresses():
    assert parse_address("4317") == ("127.0.0.1", 4317)
    assert parse_address("0.0.0.0:4318") == ("0.0.0.0", 4318)
    assert parse_address("http://localhost:4318/") == ("localhost", 4318)
    assert parse_address("[::1]:4317") == ("::1", 4317)
    with pytest.raises(ValueError):
        parse_address("localhost")
