"""MonitoringMiddleware: pure ASGI; RED metrics, the server span, and the error hook.

Per request it does the least it can: one span (unless FastAPI's native telemetry already
makes it), one counter add and one histogram record with cached attribute dicts, and the route
template read from the scope the router filled in. Everything else is prepared once.

Metrics: ``http_requests_total`` and ``http_request_duration_seconds``; names, labels and allowed
values are listed in :mod:`otel_trader.metric_catalog`.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from time import perf_counter
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_trader.redaction import redact_query
from otel_trader.sdk import current_context
from otel_trader.sdk.lean_span import LeanSpan, LeanTracer
from otel_trader.sdk.span_fastpath import DirectAttributes
from otel_trader.sdk.span_helpers import mark_error
from otel_trader.web.error_hooks import ErrorHook, ErrorHooks
from otel_trader.web.propagation import ASGI_HEADERS, DEFAULT_PROPAGATION_HEADERS, Extraction
from otel_trader.web.red_metrics import red_recorder

__all__ = [
    "DURATION_BUCKETS",
    "ErrorHook",
    "MonitoringMiddleware",
    "RequestInfo",
    "UNMATCHED_ROUTE",
    "route_template",
]

logger = logging.getLogger("otel_trader")

UNMATCHED_ROUTE = "<unmatched>"
#: Seconds. OTel's default histogram boundaries (0, 5, 10, … 10000) assume milliseconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.44.0"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What an error hook learns about the failed request: never headers, cookies, query or body."""

    method: str
    route: str
    path: str
    status: int
    client: str | None
    trace_id: str | None


def route_template(scope: dict[str, Any], root_path: str = "") -> str:
    """The matched route's template (``/orders/{symbol}``), with any mount prefix; UNMATCHED_ROUTE if none.

    FastAPI's native telemetry resolves included routers and mounts itself; without it the
    Starlette router leaves the matched route in ``scope["route"]`` and the mount prefix in
    ``scope["root_path"]``.
    """
    native = scope.get("fastapi.telemetry")
    native_route = getattr(native, "route", None)
    if native_route:
        return str(native_route)
    route = scope.get("route")
    if route is None and "endpoint" in scope:
        route = _route_for_endpoint(scope)
    path_format = _included_path_format(scope, route) or getattr(route, "path_format", None)
    if not path_format:
        return UNMATCHED_ROUTE
    if not hasattr(route, "endpoint"):
        # A Mount of a non-router app (StaticFiles, a prometheus app) is itself the match.
        return str(path_format)
    # Routes inside mounted routers carry the mount's path in root_path.
    return scope.get("root_path", "")[len(root_path) :] + path_format


def _included_path_format(scope: dict[str, Any], route: Any) -> str | None:
    """The full template of a route reached through ``include_router(..., prefix=...)``.

    FastAPI ≥ 0.150 keeps included routers as nested route objects: ``scope["route"]`` is then
    the router's own ``APIRoute`` with its local path (``/{item_id}``), and the path with every
    prefix is on the effective-route context FastAPI records for the match.
    """
    fastapi_scope = scope.get("fastapi")
    if route is None or not isinstance(fastapi_scope, dict):
        return None
    context = fastapi_scope.get("effective_route_context")
    if context is None:
        return None
    starlette_route = getattr(context, "starlette_route", None)
    if getattr(context, "original_route", None) is not route and starlette_route is not route:
        return None  # recorded for an outer match (a mount leading elsewhere)
    return getattr(starlette_route, "path_format", None) or getattr(context, "path_format", None)


_endpoint_routes: weakref.WeakKeyDictionary[Any, dict[Any, list[Any]]] = weakref.WeakKeyDictionary()


def _route_for_endpoint(scope: dict[str, Any]) -> Any:
    """Starlette < 0.47 does not record the matched route; find it from the endpoint it does record.

    The endpoint → routes map is built once per app; only an endpoint shared by several routes
    costs a ``matches()`` per candidate.
    """
    app = scope.get("app")
    router = getattr(app, "router", None)
    if router is None:
        return None
    try:
        by_endpoint = _endpoint_routes[app]
    except KeyError:
        by_endpoint = {}
        for candidate in getattr(router, "routes", ()):
            endpoint = getattr(candidate, "endpoint", None)
            if endpoint is not None:
                by_endpoint.setdefault(endpoint, []).append(candidate)
        _endpoint_routes[app] = by_endpoint
    candidates = by_endpoint.get(scope["endpoint"], ())
    if len(candidates) == 1:
        return candidates[0]
    from starlette.routing import Match

    probe = dict(scope, path=scope.get("path", ""))
    for candidate in candidates:
        if candidate.matches(probe)[0] == Match.FULL:
            return candidate
    return None


#: Host header value and scheme → the server.address/server.port attributes they give. A server
#: sees few distinct Host values; any number of them may come from clients, so past the limit
#: the cache is cleared (and refilled by the Host values in use).
_HOST_CACHE_LIMIT = 256
#: A DNS name (253) and a port: longer Host values are not kept.
_CACHED_HOST_BYTES = 260
_host_attributes: dict[tuple[bytes, str], tuple[tuple[str, Any], ...]] = {}


def _host_fields(host: bytes, scheme: str) -> tuple[tuple[str, Any], ...]:
    """The ``server.address`` (and ``server.port``, when known) attributes of a Host header."""
    found = _host_attributes.get((host, scheme))
    if found is not None:
        return found
    address, port = _split_host(host.decode("latin-1"))
    fields: tuple[tuple[str, Any], ...] = (("server.address", address),)
    if port is not None or scheme in _DEFAULT_PORTS:
        fields += (("server.port", port if port is not None else _DEFAULT_PORTS[scheme]),)
    if len(host) <= _CACHED_HOST_BYTES:
        if len(_host_attributes) >= _HOST_CACHE_LIMIT:
            _host_attributes.clear()
        _host_attributes[(host, scheme)] = fields
    return fields


def _split_host(host: str) -> tuple[str, int | None]:
    """``example.com:8080`` → (``example.com``, 8080); ``[::1]:80`` → (``::1``, 80).

    The Host header is client input: a port that is not 1-5 ASCII digits in range (``'²'``,
    ``'٣'``, ``99999``) is no port.
    """
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        address, _, port = host.partition(":")
    if port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536:
        return address, int(port)
    return address, None


#: Status codes kept as they are in the ``status`` label: the registered ones. Any other code a
#: handler returns is counted under its class (``"4xx"``), so handler-chosen codes cannot create
#: series; ``status=~"5.."`` still matches ``"5xx"``.
_KNOWN_STATUSES = frozenset(int(s) for s in HTTPStatus)


def status_label(status: int) -> str:
    """The ``status`` label of a response code: the code, its class (``5xx``) if unregistered, ``0`` if none."""
    if status in _KNOWN_STATUSES:
        return str(status)
    if 100 <= status <= 599:
        return f"{status // 100}xx"
    return "0" if status == 0 else "other"


def _span_base_name(method: str) -> str:
    return "HTTP" if method == "_OTHER" else method


_warned: set[str] = set()


def _warn_once(what: str) -> None:
    """Log a failure of the middleware's own work once per kind, with its traceback."""
    if what in _warned:
        logger.debug("otel-trader: %s failed", what, exc_info=True)
        return
    _warned.add(what)
    logger.warning(
        "otel-trader: %s failed; the request is served, its telemetry is incomplete. "
        "Logged once; please report it.",
        what,
        exc_info=True,
    )


async def _send_outside_span(send: Any, message: dict[str, Any], outer: Any) -> None:
    """Send the last message of a response with the context from outside the request current.

    Servers schedule their keep-alive timer from inside this call (uvicorn's
    ``loop.call_later``), and an asyncio timer handle keeps the context copied at scheduling
    even after it is cancelled, until the loop prunes cancelled timers. With the server span
    current, every finished request's span and its attributes would stay reachable from there
    long enough to be moved into the GC's old generation, making full collections frequent.
    """
    token = current_context.attach(outer)
    try:
        await send(message)
    finally:
        current_context.detach(token)


class MonitoringMiddleware:
    """RED metrics, one SERVER span per request, and the error hook, as a pure ASGI middleware.

    ``server_span=False`` leaves the span to FastAPI's native telemetry (which then is the
    current span here, and gets the exception recorded on it).
    """

    def __init__(
        self,
        app: Any,
        *,
        server_span: bool = True,
        excluded_paths: Iterable[str] = ("/metrics", "/health"),
        error_hooks: ErrorHooks | Iterable[ErrorHook] = (),
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.app = app
        self.server_span = server_span
        # The manager's ErrorHooks itself, not a copy: hooks added after the middleware was built
        # (e.g. a reporter installed in lifespan startup) must still be called.
        self.error_hooks = error_hooks if isinstance(error_hooks, ErrorHooks) else ErrorHooks(error_hooks)
        prefixes = tuple(p.rstrip("/") for p in excluded_paths if p.strip("/"))
        self._excluded_exact = frozenset(prefixes)
        self._excluded_prefixes = tuple(p + "/" for p in prefixes)
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter("otel_trader.http", schema_url=_SCHEMA_URL)
        self._requests = meter.create_counter(
            "http_requests_total", unit="{request}", description="Total HTTP requests."
        )
        self._duration = meter.create_histogram(
            "http_request_duration_seconds",
            unit="s",
            description="HTTP request duration in seconds.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        spans = tracer_provider or trace.get_tracer_provider()
        self._tracer = spans.get_tracer("otel_trader.http", schema_url=_SCHEMA_URL)
        #: Starts the server span without the SDK's per-span containers when it may.
        self._lean = LeanTracer(self._tracer)
        #: Writes the server span's attributes without the SDK's per-value checks when it may.
        self._direct = DirectAttributes(spans)
        self._extraction = Extraction()
        #: Records both instruments per request: in place for an SDK provider (see red_metrics).
        self._recorder = red_recorder(provider, self._requests, self._duration, status_label)

    def add_error_hook(self, hook: ErrorHook) -> None:
        """Call ``hook(exc, request_info)`` for every unhandled exception."""
        self.error_hooks.add(hook)

    def _excluded(self, path: str) -> bool:
        return path in self._excluded_exact or path.startswith(self._excluded_prefixes)

    def _start_span(self, scope: dict[str, Any], method: str) -> tuple[Any, object]:
        headers = scope.get("headers") or ()
        host = None
        propagated = False
        for name, value in headers:
            if name == b"host":
                if host is None:
                    host = value
            elif name in DEFAULT_PROPAGATION_HEADERS:
                propagated = True
        if propagated or not self._extraction.default_propagators():
            parent = propagate.extract(headers, getter=ASGI_HEADERS)
        else:
            parent = otel_context.Context()
        scheme = str(scope.get("scheme", "http"))
        attributes: dict[str, Any] = {"url.scheme": scheme, "http.request.method": method}
        version = address = redacted = original = ""
        if scope.get("http_version"):
            attributes["network.protocol.version"] = version = str(scope["http_version"])
        if host is not None:
            attributes.update(_host_fields(bytes(host), scheme))
            address = attributes["server.address"]
        elif scope.get("server"):
            address, port = scope["server"][0], scope["server"][1]
            attributes["server.address"] = address = str(address)
            if isinstance(port, int):
                attributes["server.port"] = port
        attributes["url.path"] = path = str(scope.get("path", ""))
        query = scope.get("query_string")
        if query:
            attributes["url.query"] = redacted = redact_query(query.decode("latin-1"))
        if method == "_OTHER":
            attributes["http.request.method_original"] = original = str(scope.get("method", ""))
        # Every str value above, for the span's length limit (LeanTracer checks only this).
        longest = max(len(scheme), len(version), len(address), len(path), len(redacted), len(original))
        if self._lean.ready():
            span = self._lean.start_span(
                _span_base_name(method), parent, SpanKind.SERVER, attributes, longest
            )
        elif self._direct.ready():
            span = self._tracer.start_span(_span_base_name(method), context=parent, kind=SpanKind.SERVER)
            if span.is_recording() and not self._direct.write(span, attributes):
                span.set_attributes(attributes)
        else:
            span = self._tracer.start_span(
                _span_base_name(method),
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attributes,
            )
        return span, current_context.attach(current_context.with_span(span, parent))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self._excluded(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        # Contract: nothing a client sends and nothing telemetry does makes this raise. Any
        # failure of our own is logged once and the request goes on untraced.
        method = scope.get("method")
        method = method if method in _KNOWN_METHODS else "_OTHER"
        root_path = scope.get("root_path", "")
        span: Any = None
        token: Any = None
        outer: Any = None
        if self.server_span:
            try:
                outer = otel_context.get_current()
                span, token = self._start_span(scope, method)
            except Exception:
                _warn_once("starting the server span")
            # Mounted FastAPI sub-apps skip their native telemetry when this key exists, so a
            # request through a mount still gets one server span and is counted once.
            scope.setdefault("fastapi.telemetry", None)
        status = 0

        async def send_with_status(message: dict[str, Any]) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif token is not None and kind == "http.response.body" and not message.get("more_body"):
                await _send_outside_span(send, message, outer)
                return
            await send(message)

        error: BaseException | None = None
        start = perf_counter()
        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                self._finish(scope, root_path, method, status, error, perf_counter() - start, span)
            except Exception:
                _warn_once("recording the request")
            # The frame holds the exception and the exception's traceback holds the frame: a
            # reference cycle only the cyclic GC would free, with the request's span inside.
            error = None
            if span is not None:
                try:
                    span.end()
                finally:
                    current_context.detach(token)

    def _finish(
        self,
        scope: dict[str, Any],
        root_path: str,
        method: str,
        status: int,
        error: BaseException | None,
        duration: float,
        span: Any,
    ) -> None:
        if error is not None and isinstance(error, Exception):
            status = 500
        route = route_template(scope, root_path)
        current = span if span is not None else trace.get_current_span()
        self._recorder.record(method, route, status, duration, current)
        # An unsampled span (sampler, or a caller's traceparent flags 00) records nothing.
        if span is not None and span.is_recording():
            final: dict[str, Any] = {}
            if route != UNMATCHED_ROUTE:
                final["http.route"] = route
                span.update_name(f"{_span_base_name(method)} {route}")
            if status:
                final["http.response.status_code"] = status
            if type(span) is LeanSpan:
                if final:
                    span.set_attributes(final, len(route))
            elif final and not (self._direct.ready() and self._direct.write(span, final)):
                span.set_attributes(final)
            if error is None and (status >= 500 or not status):
                span.set_attribute("error.type", str(status) if status else "incomplete_response")
                span.set_status(Status(StatusCode.ERROR))
        if error is not None and isinstance(error, Exception):
            mark_error(current, error)
            self._report(error, scope, method, route, current)

    def _report(self, exc: Exception, scope: dict[str, Any], method: str, route: str, span: Any) -> None:
        if not self.error_hooks:
            return
        ctx = span.get_span_context()
        client = scope.get("client")
        info = RequestInfo(
            method=method,
            route=route,
            path=scope.get("path", ""),
            status=500,
            client=f"{client[0]}:{client[1]}" if client else None,
            trace_id=format(ctx.trace_id, "032x") if ctx.is_valid else None,
        )
        self.error_hooks.call(exc, info)
