"""WebSocket client connections (``websockets`` ≥ 13, asyncio client): lifetime, reconnects, messages.

No span per message: a market-data feed delivers thousands a second. Per connection there is
one short CLIENT span for the opening handshake (``websocket connect``, with ``server.address``,
``url.full`` scrubbed and ``websocket.stream``), and these metrics, labelled ``server`` (the
host) and ``stream``:

================================================================  =========  ===========================
Prometheus name                                                   type       extra labels
================================================================  =========  ===========================
``websocket_client_connections``                                  gauge      —
``websocket_client_connects_total``                               counter    outcome (success, error)
``websocket_client_reconnects_total``                             counter    —
``websocket_client_connection_duration_seconds_{bucket,…}``       histogram  — (at close; 1 s … 1 day)
``websocket_client_messages_total``                               counter    direction (received, sent)
``websocket_client_last_message_timestamp_seconds``               gauge      — (unix time)
================================================================  =========  ===========================

A reconnect is a successful connection to a stream that had one before in this process, so
``async for ws in connect(...)`` loops and hand-written retry loops count alike. ``stream`` is
the URL path with identifiers (listen keys, tokens) replaced (``/ws/{id}``) and the query
dropped, or the name given with :func:`stream_name`. Message counting costs an integer
increment per message; counts are read at export time. ``server`` is bounded at 50 values,
``stream`` at 100 (then ``__other__``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_trader.integrations.http_client import path_template
from otel_trader.integrations.on_import import when_imported
from otel_trader.redaction import redact_url
from otel_trader.trading.labels import BoundedLabel, PerProvider, count_label_overflow

__all__ = ["LIFETIME_BUCKETS", "instrument", "reset_state", "stream_name"]

logger = logging.getLogger("otel_trader")

LIFETIME_BUCKETS = (1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 24 * 3600.0)

_stream_override: ContextVar[str | None] = ContextVar("otel_trader_ws_stream", default=None)


@contextmanager
def stream_name(name: str) -> Iterator[None]:
    """Label the WebSocket connections opened inside the block as ``stream=name``.

    ``with stream_name("binance-trades"): async for ws in connect(url): ...`` — reconnects made
    by that loop keep the name.
    """
    token = _stream_override.set(name)
    try:
        yield
    finally:
        _stream_override.reset(token)


class _Stream:
    """Totals of one (server, stream) label set: closed connections' counts plus open ones'."""

    __slots__ = ("attributes", "received", "sent", "last_message", "connected_once", "open")

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes
        self.received = 0
        self.sent = 0
        self.last_message = 0.0
        self.connected_once = False
        self.open: weakref.WeakSet[Any] = weakref.WeakSet()


class _Connection:
    """Per-connection counts, touched only by the connection's event loop (no lock per message)."""

    __slots__ = ("stream", "received", "sent", "last_message", "opened", "closed", "__weakref__")

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.received = 0
        self.sent = 0
        self.last_message = 0.0
        self.opened = time.monotonic()
        self.closed = False


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.server = BoundedLabel("server", 50, count_label_overflow)
        self.stream = BoundedLabel("stream", 100, count_label_overflow)
        self.streams: dict[tuple[str, str], _Stream] = {}

    def get(self, server: str, stream: str) -> _Stream:
        key = (self.server(server[:64] or "unknown"), self.stream(stream[:64] or "/"))
        with self.lock:
            found = self.streams.get(key)
            if found is None:
                found = self.streams[key] = _Stream({"server": key[0], "stream": key[1]})
            return found

    def snapshot(self) -> list[tuple[_Stream, int, int, float, int]]:
        """(stream, received, sent, last message, open connections) per label set."""
        with self.lock:
            streams = list(self.streams.values())
        out = []
        for s in streams:
            conns = [c for c in list(s.open) if not c.closed]
            received = s.received + sum(c.received for c in conns)
            sent = s.sent + sum(c.sent for c in conns)
            last = max([s.last_message, *(c.last_message for c in conns)])
            out.append((s, received, sent, last, len(conns)))
        return out


_registry = _Registry()


def reset_state() -> None:
    """Forget streams, their counts and seen label values (tests)."""
    global _registry
    _registry = _Registry()


def _observe_open(_options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(n, s.attributes) for s, _, _, _, n in _registry.snapshot()]


def _observe_messages(_options: CallbackOptions) -> Iterable[Observation]:
    out = []
    for s, received, sent, _, _ in _registry.snapshot():
        out.append(Observation(received, {**s.attributes, "direction": "received"}))
        out.append(Observation(sent, {**s.attributes, "direction": "sent"}))
    return out


def _observe_last(_options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(last, s.attributes) for s, _, _, last, _ in _registry.snapshot() if last]


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        meter.create_observable_up_down_counter(
            "websocket_client_connections",
            callbacks=[_observe_open],
            unit="{connection}",
            description="Open WebSocket client connections per server and stream.",
        )
        self.connects = meter.create_counter(
            "websocket_client_connects_total",
            unit="{connection}",
            description="WebSocket client connection attempts by outcome (success, error).",
        )
        self.reconnects = meter.create_counter(
            "websocket_client_reconnects_total",
            unit="{connection}",
            description="Successful WebSocket connections to a stream that was connected before.",
        )
        self.lifetime = meter.create_histogram(
            "websocket_client_connection_duration_seconds",
            unit="s",
            description="Lifetime of closed WebSocket client connections, in seconds.",
            explicit_bucket_boundaries_advisory=LIFETIME_BUCKETS,
        )
        meter.create_observable_counter(
            "websocket_client_messages_total",
            callbacks=[_observe_messages],
            unit="{message}",
            description="WebSocket messages per server and stream, by direction (received, sent).",
        )
        meter.create_observable_gauge(
            "websocket_client_last_message_timestamp_seconds",
            callbacks=[_observe_last],
            unit="s",
            description="Unix time of the last message received per server and stream.",
        )


_instruments: PerProvider[_Instruments] = PerProvider(_Instruments, "otel_trader.websockets")

_DATA_OPCODES: frozenset[Any] = frozenset()


def _labels(uri: str) -> tuple[str, str, str]:
    """(server, stream, scrubbed URL) of a ``ws://``/``wss://`` URI."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname or "unknown"
        path = parts.path or "/"
    except ValueError:
        host, path = "unknown", "/"
    return host, _stream_override.get() or path_template(path), redact_url(uri)


class _Instrumentation:
    def __init__(self, tracer_provider: Any) -> None:
        self.tracer = trace.get_tracer("otel_trader.websockets", tracer_provider=tracer_provider)
        self.active = True
        self.patched: list[tuple[type, str, Any, bool]] = []

    def replace(self, cls: type, name: str, wrapper: Any) -> None:
        own = name in cls.__dict__
        self.patched.append((cls, name, cls.__dict__.get(name), own))
        setattr(cls, name, wrapper)

    def patch(self, client: ModuleType) -> None:
        global _DATA_OPCODES
        from websockets.frames import DATA_OPCODES

        _DATA_OPCODES = frozenset(DATA_OPCODES)
        connect_cls = client.connect
        connection_cls = client.ClientConnection
        opening = "connect" if "connect" in vars(connect_cls) else "__await_impl__"
        self.replace(connect_cls, opening, self.opening(getattr(connect_cls, opening)))
        self.replace(connection_cls, "process_event", self.received(connection_cls.process_event))
        self.replace(connection_cls, "send", self.sending(connection_cls.send))
        self.replace(connection_cls, "connection_lost", self.lost(connection_cls.connection_lost))

    def opening(self, func: Any) -> Any:
        instrumentation = self

        async def wrapper(self: Any) -> Any:
            if not instrumentation.active:
                return await func(self)
            server, stream_label, url = _labels(str(getattr(self, "uri", "")))
            stream = _registry.get(server, stream_label)
            inst = _instruments.get()
            span = instrumentation.tracer.start_span("websocket connect", kind=SpanKind.CLIENT)
            if span.is_recording():
                span.set_attribute("server.address", server)
                span.set_attribute("url.full", url)
                span.set_attribute("websocket.stream", stream.attributes["stream"])
            try:
                with trace.use_span(
                    span, end_on_exit=False, record_exception=False, set_status_on_exception=False
                ):
                    connection = await func(self)
            except BaseException as exc:
                if span.is_recording():
                    span.set_attribute("error.type", type(exc).__name__)
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.end()
                if inst is not None:
                    inst.connects.add(1, {**stream.attributes, "outcome": "error"})
                raise
            span.end()
            state = _Connection(stream)
            try:
                connection._otel_trader_ws = state
            except AttributeError:  # a connection class with __slots__ (custom create_connection)
                return connection
            stream.open.add(state)
            if inst is not None:
                inst.connects.add(1, {**stream.attributes, "outcome": "success"})
                if stream.connected_once:
                    inst.reconnects.add(1, stream.attributes)
            stream.connected_once = True
            return connection

        wrapper.__wrapped__ = func  # type: ignore[attr-defined]
        return wrapper

    def received(self, func: Any) -> Any:
        def process_event(self: Any, event: Any) -> None:
            func(self, event)
            state = getattr(self, "_otel_trader_ws", None)
            if (
                state is not None
                and getattr(event, "fin", False)
                and getattr(event, "opcode", None) in _DATA_OPCODES
            ):
                state.received += 1
                state.last_message = time.time()

        process_event.__wrapped__ = func  # type: ignore[attr-defined]
        return process_event

    def sending(self, func: Any) -> Any:
        async def send(self: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            result = await func(self, message, *args, **kwargs)
            state = getattr(self, "_otel_trader_ws", None)
            if state is not None:
                state.sent += 1
            return result

        send.__wrapped__ = func  # type: ignore[attr-defined]
        return send

    def lost(self, func: Any) -> Any:
        def connection_lost(self: Any, exc: Exception | None) -> None:
            try:
                _closed(getattr(self, "_otel_trader_ws", None))
            except Exception:
                logger.debug("otel-trader: recording a WebSocket close failed", exc_info=True)
            func(self, exc)

        connection_lost.__wrapped__ = func  # type: ignore[attr-defined]
        return connection_lost

    def undo(self) -> None:
        self.active = False
        for cls, name, original, own in reversed(self.patched):
            if own:
                setattr(cls, name, original)
            else:
                delattr(cls, name)
        self.patched.clear()


def _closed(state: _Connection | None) -> None:
    if state is None or state.closed:
        return
    state.closed = True
    stream = state.stream
    with _registry.lock:
        stream.received += state.received
        stream.sent += state.sent
        stream.last_message = max(stream.last_message, state.last_message)
    stream.open.discard(state)
    inst = _instruments.get()
    if inst is not None:
        inst.lifetime.record(time.monotonic() - state.opened, stream.attributes)


def instrument(tracer_provider: Any, meter_provider: Any, config: Any = None) -> Callable[[], None]:
    """Instrument the ``websockets`` asyncio client when it is imported; return the undo function."""
    instrumentation = _Instrumentation(tracer_provider)
    cancel = when_imported("websockets.asyncio.client", instrumentation.patch)

    def undo() -> None:
        cancel()
        instrumentation.undo()

    return undo
