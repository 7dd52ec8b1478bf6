"""WebSocket client connections, for real: a websockets server and client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel_trader.demo.summary import parse
from tests.conftest import free_port

from .conftest import Exported

MESSAGES = 25
LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"


def value(text: str, name: str, **labels: str) -> float | None:
    found = [s.value for s in parse(text) if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found) if found else None


async def _feed(ws: Any) -> None:
    """A market-data stream: waits for the subscription, sends MESSAGES ticks, closes normally."""
    await ws.recv()
    for i in range(MESSAGES):
        await ws.send(f'{{"e":"trade","p":"{65000 + i}"}}')
    await ws.close()


def test_connections_reconnects_and_messages_without_a_span_per_message(exported: Exported) -> None:
    from websockets.asyncio.server import serve

    async def main() -> tuple[int, float | None]:
        async with serve(_feed, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}/ws/{LISTEN_KEY}?token=wsSECRET123"
            from websockets.asyncio.client import connect

            open_now = None
            received = 0
            sessions = 0
            async for ws in connect(url):
                await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@trade"]}')
                if sessions == 0:
                    open_now = value(exported.scrape(), "websocket_client_connections")
                async for _ in ws:
                    received += 1
                sessions += 1
                if sessions == 3:
                    break
            await asyncio.sleep(0.1)  # the last close reaches connection_lost
            return received, open_now

    started = time.time()
    received, open_now = asyncio.run(main())
    assert received == 3 * MESSAGES
    assert open_now == 1.0

    spans = exported.finished_spans()
    assert [s.name for s in spans] == ["websocket connect"] * 3  # three handshakes, no span per message
    span = spans[0]
    assert span.kind == SpanKind.CLIENT
    assert span.attributes["server.address"] == "127.0.0.1"
    assert span.attributes["websocket.stream"] == "/ws/{id}"
    assert span.attributes["url.full"].endswith("?token=REDACTED")
    assert "wsSECRET123" not in repr([s.to_json() for s in spans])

    text = exported.scrape()
    labels = {"server": "127.0.0.1", "stream": "/ws/{id}"}
    assert value(text, "websocket_client_connects_total", outcome="success", **labels) == 3.0
    assert value(text, "websocket_client_reconnects_total", **labels) == 2.0
    assert value(text, "websocket_client_messages_total", direction="received", **labels) == 3 * MESSAGES
    assert value(text, "websocket_client_messages_total", direction="sent", **labels) == 3.0
    assert value(text, "websocket_client_connections", **labels) == 0.0
    assert value(text, "websocket_client_connection_duration_seconds_count", **labels) == 3.0
    last = value(text, "websocket_client_last_message_timestamp_seconds", **labels)
    assert last is not None and started <= last <= time.time()
    assert LISTEN_KEY not in text and "wsSECRET123" not in text


def test_failed_connections_and_named_streams(exported: Exported) -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from otel_trader.integrations.websockets import stream_name

    async def main() -> None:
        with pytest.raises(OSError):
            await connect(f"ws://127.0.0.1:{free_port()}/stream?streams=btcusdt@depth")
        async with serve(_feed, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            with stream_name("binance-depth"):
                async with connect(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@depth") as ws:
                    await ws.send("subscribe")
                    async for _ in ws:
                        pass
        await asyncio.sleep(0.1)

    asyncio.run(main())
    failed, named = exported.finished_spans()
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes["error.type"] == "ConnectionRefusedError"
    assert named.attributes["websocket.stream"] == "binance-depth"
    text = exported.scrape()
    assert value(text, "websocket_client_connects_total", outcome="error", stream="/stream") == 1.0
    assert value(text, "websocket_client_connects_total", outcome="success", stream="binance-depth") == 1.0
    assert value(text, "websocket_client_messages_total", direction="received", stream="binance-depth") == MESSAGES
    assert value(text, "websocket_client_reconnects_total", stream="binance-depth") is None


def test_switched_off(start_telemetry: Any) -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    exported = start_telemetry(disabled_instrumentations=["websockets"])

    async def main() -> None:
        async with serve(_feed, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send("subscribe")
                async for _ in ws:
                    pass

    asyncio.run(main())
    assert exported.finished_spans() == []
    assert "websocket_client_" not in exported.scrape()
