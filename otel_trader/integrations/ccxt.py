# Long because ccxt's sync and async classes are wrapped the same way (a span and metrics per
# unified call, errors classified, headers read), and the wrapping only makes sense as one unit.
"""ccxt: a span and exchange metrics per API call, rate-limit headroom and clock skew from responses.

For every exchange class of ``ccxt`` (sync, over requests), ``ccxt.async_support`` and
``ccxt.pro`` (async, over aiohttp), patched when the module is first imported (nothing imports
ccxt here):

* **unified methods** (``create_order``, ``fetch_balance``, ``load_markets``…, every method
  ccxt's ``has`` lists, except the ``watch_*`` streams): one INTERNAL span
  ``ccxt.<exchange>.<method>`` with ``ccxt.exchange``, ``ccxt.method`` and, where given,
  ``ccxt.symbol``, ``ccxt.order.type``, ``ccxt.order.side``, ``ccxt.order.id``; on failure
  ``error.type`` and ``ccxt.error`` (the ccxt exception class), the exception event and ERROR
  status. Its HTTP request spans (the aiohttp/requests integrations) are its children. Only the
  outermost call is measured: ``create_order`` calling ``load_markets`` is one span whose HTTP
  children show the ``exchangeInfo`` request.
* **implicit endpoints** called directly (``exchange.public_get_time()``, ``fapiPrivateGetPositionRisk``):
  the same span and metrics, with the endpoint's snake-case name as ``method``.
* **metrics** (:mod:`otel_trader.trading.exchanges`): ``exchange_request_duration_seconds``,
  ``exchange_requests_total``, ``exchange_errors_total``, ``exchange_last_success_timestamp_seconds``;
  every response's headers feed ``exchange_rate_limit_used_ratio``, its ``Date`` header and
  every ``fetch_time()`` feed ``exchange_clock_skew_seconds``.

Request parameters, bodies, headers and credentials are never recorded. The HTTP span of a
ccxt call is named after ccxt's endpoint template (``GET /api/v3/order``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_trader.integrations.http_client import endpoint_template
from otel_trader.integrations.on_import import when_imported
from otel_trader.trading import exchanges

__all__ = ["classify", "instrument"]

logger = logging.getLogger("otel_trader")

#: The method label of the ccxt call being measured in this context (nested calls pass through).
_current: ContextVar[str | None] = ContextVar("otel_trader_ccxt_call", default=None)

#: ccxt's camelCase rule (Exchange.__init__), to match snake_case methods with ``has`` keys.
_CAMEL_EXCEPTIONS = {"ohlcv": "OHLCV", "le": "LE", "be": "BE", "adl": "ADL"}
#: Unified in practice though not listed in ``has``.
_ALSO_UNIFIED = frozenset({"load_markets"})
#: Streams: one call per message, so no span per call (the WebSocket integration counts them).
_STREAMING_PREFIXES = ("watch", "un_watch")
#: ccxt errors meaning "the venue answered and refused this request" (outcome ``rejected``).
_REJECTED_NAMES = (
    "ArgumentsRequired",
    "BadRequest",
    "InsufficientFunds",
    "InvalidAddress",
    "InvalidOrder",
    "OperationRejected",
)
_ARGUMENTS = {
    "symbol": "ccxt.symbol",
    "type": "ccxt.order.type",
    "side": "ccxt.order.side",
    "id": "ccxt.order.id",
}


@functools.lru_cache(maxsize=8192)
def _camel(name: str) -> str:
    parts = name.split("_")
    return parts[0] + "".join(_CAMEL_EXCEPTIONS.get(p, p.capitalize()) for p in parts[1:])


_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _snake(name: str) -> str:
    """``createOrderWs`` → ``create_order_ws``, ``fetchOHLCV`` → ``fetch_ohlcv`` (the metric label)."""
    return _WORD_START.sub("_", name).lower() if not name.islower() else name


class _Errors:
    """ccxt's exception classes, read once ccxt is imported."""

    def __init__(self) -> None:
        errors = sys.modules["ccxt.base.errors"]
        base = errors.BaseError
        self.names = frozenset(
            n for n, c in vars(errors).items() if inspect.isclass(c) and issubclass(c, base)
        )
        self.module = errors.__name__
        self.rejected = tuple(getattr(errors, n) for n in _REJECTED_NAMES if hasattr(errors, n))


_errors: _Errors | None = None


def classify(exc: BaseException) -> tuple[str, str]:
    """``(outcome, error)`` of a failed call: outcome ``rejected``, ``error`` or ``cancelled``.

    ``error`` is the ccxt exception class (the nearest ccxt class of a subclass), else the
    exception's own class name.
    """
    global _errors
    if isinstance(exc, asyncio.CancelledError) or not isinstance(exc, Exception):
        return "cancelled", type(exc).__name__
    errors = _errors
    if errors is None:
        if "ccxt.base.errors" not in sys.modules:
            return "error", type(exc).__name__
        errors = _errors = _Errors()
    name = next(
        (
            c.__name__
            for c in type(exc).__mro__
            if c.__module__ == errors.module and c.__name__ in errors.names
        ),
        None,
    )
    if name is None:
        return "error", type(exc).__name__
    return ("rejected" if isinstance(exc, errors.rejected) else "error"), name


# -- the wrappers ----------------------------------------------------------------------------


class _Instrumentation:
    """One instrument() call: its tracer, what it patched, and whether it is still on."""

    def __init__(self, tracer_provider: Any) -> None:
        self.tracer = trace.get_tracer("otel_trader.ccxt", tracer_provider=tracer_provider)
        self.active = True
        self.lock = threading.RLock()
        self.patched: list[tuple[type, str, Any, bool]] = []  # (class, attribute, original, was own)
        self.seen: set[type] = set()
        self.originals: dict[int, Any] = {}  # id(original function) -> wrapper
        self.implicit_names: dict[tuple[str, str, str], str] = {}

    # -- spans and metrics ------------------------------------------------------------------

    def start(
        self, exchange: Any, method: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        exchange_id = str(getattr(exchange, "id", None) or type(exchange).__name__)
        span = self.tracer.start_span(f"ccxt.{exchange_id}.{method}", kind=SpanKind.INTERNAL)
        if span.is_recording():
            span.set_attribute("ccxt.exchange", exchange_id)
            span.set_attribute("ccxt.method", method)
            if func is not None:
                for name, value in _arguments(func, args, kwargs):
                    span.set_attribute(_ARGUMENTS[name], value)
        return exchange_id, span

    def finish(
        self, exchange_id: str, method: str, span: Any, started: float, exc: BaseException | None
    ) -> None:
        duration = time.perf_counter() - started
        try:
            if exc is None:
                outcome, error = "success", None
            else:
                outcome, error = classify(exc)
                if span.is_recording():
                    span.set_attribute("ccxt.outcome", outcome)
                    if outcome != "cancelled":
                        span.set_attribute("error.type", error)
                        span.set_attribute("ccxt.error", error)
                        span.record_exception(exc)
                        span.set_status(Status(StatusCode.ERROR, error))
            exchanges.record_call(exchange_id, method, duration, outcome, error)
        except Exception:  # telemetry must never change what the call returns or raises
            logger.debug("otel-trader: recording a ccxt call failed", exc_info=True)
        finally:
            span.end()

    # -- wrapping -----------------------------------------------------------------------------

    def unified(self, func: Any, method: str) -> Any:
        clock = method == "fetch_time"
        if inspect.iscoroutinefunction(func):

            async def async_wrapper(self_: Any, *args: Any, **kwargs: Any) -> Any:
                if _current.get() is not None or not self.active:
                    if clock and self.active:
                        return await _timed_fetch_time(func, self_, args, kwargs)
                    return await func(self_, *args, **kwargs)
                exchange_id, span = self.start(self_, method, func, args, kwargs)
                token = _current.set(method)
                attached = context_api.attach(trace.set_span_in_context(span))
                started = time.perf_counter()
                wall = time.time()
                try:
                    result = await func(self_, *args, **kwargs)
                except BaseException as exc:
                    context_api.detach(attached)
                    _current.reset(token)
                    self.finish(exchange_id, method, span, started, exc)
                    raise
                context_api.detach(attached)
                _current.reset(token)
                self.finish(exchange_id, method, span, started, None)
                if clock:
                    _record_skew(exchange_id, result, wall, time.time())
                return result

            return _named(async_wrapper, func)

        def sync_wrapper(self_: Any, *args: Any, **kwargs: Any) -> Any:
            if _current.get() is not None or not self.active:
                if clock and self.active:
                    return _timed_fetch_time_sync(func, self_, args, kwargs)
                return func(self_, *args, **kwargs)
            exchange_id, span = self.start(self_, method, func, args, kwargs)
            token = _current.set(method)
            attached = context_api.attach(trace.set_span_in_context(span))
            started = time.perf_counter()
            wall = time.time()
            try:
                result = func(self_, *args, **kwargs)
            except BaseException as exc:
                context_api.detach(attached)
                _current.reset(token)
                self.finish(exchange_id, method, span, started, exc)
                raise
            context_api.detach(attached)
            _current.reset(token)
            self.finish(exchange_id, method, span, started, None)
            if clock:
                _record_skew(exchange_id, result, wall, time.time())
            return result

        return _named(sync_wrapper, func)

    def implicit_name(self, path: Any, api: Any, method: Any) -> str:
        key = (str(api), str(method), str(path))
        name = self.implicit_names.get(key)
        if name is None:
            api_name = "_".join(map(str, api)) if isinstance(api, (list, tuple)) else str(api)
            raw = f"{api_name}_{str(method).lower()}_{path}"
            name = re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")[:64] or "request"
            if len(self.implicit_names) < 4096:
                self.implicit_names[key] = name
        return name

    def fetch2(self, func: Any) -> Any:
        """``fetch2(path, api, method, params, config)``: the endpoint template, and implicit calls."""

        def endpoint(exchange: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str] | None:
            path = args[0] if args else kwargs.get("path")
            if not isinstance(path, str):
                return None
            params = args[3] if len(args) > 3 else kwargs.get("params")
            sent = path
            if "{" in path and isinstance(params, dict):
                try:
                    sent = exchange.implode_params(path, params)
                except Exception:
                    sent = path
            return sent, path

        def call_name(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            path = args[0] if args else kwargs.get("path", "")
            api = args[1] if len(args) > 1 else kwargs.get("api", "public")
            method = args[2] if len(args) > 2 else kwargs.get("method", "GET")
            return self.implicit_name(path, api, method)

        if inspect.iscoroutinefunction(func):

            async def async_fetch2(self_: Any, *args: Any, **kwargs: Any) -> Any:
                if not self.active:
                    return await func(self_, *args, **kwargs)
                marked = endpoint_template.set(endpoint(self_, args, kwargs))
                try:
                    if _current.get() is not None:
                        return await func(self_, *args, **kwargs)
                    method = call_name(args, kwargs)
                    exchange_id, span = self.start(self_, method, None, args, kwargs)
                    token = _current.set(method)
                    attached = context_api.attach(trace.set_span_in_context(span))
                    started = time.perf_counter()
                    try:
                        result = await func(self_, *args, **kwargs)
                    except BaseException as exc:
                        context_api.detach(attached)
                        _current.reset(token)
                        self.finish(exchange_id, method, span, started, exc)
                        raise
                    context_api.detach(attached)
                    _current.reset(token)
                    self.finish(exchange_id, method, span, started, None)
                    return result
                finally:
                    endpoint_template.reset(marked)

            return _named(async_fetch2, func)

        def sync_fetch2(self_: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return func(self_, *args, **kwargs)
            marked = endpoint_template.set(endpoint(self_, args, kwargs))
            try:
                if _current.get() is not None:
                    return func(self_, *args, **kwargs)
                method = call_name(args, kwargs)
                exchange_id, span = self.start(self_, method, None, args, kwargs)
                token = _current.set(method)
                attached = context_api.attach(trace.set_span_in_context(span))
                started = time.perf_counter()
                try:
                    result = func(self_, *args, **kwargs)
                except BaseException as exc:
                    context_api.detach(attached)
                    _current.reset(token)
                    self.finish(exchange_id, method, span, started, exc)
                    raise
                context_api.detach(attached)
                _current.reset(token)
                self.finish(exchange_id, method, span, started, None)
                return result
            finally:
                endpoint_template.reset(marked)

        return _named(sync_fetch2, func)

    def on_rest_response(self, func: Any) -> Any:
        """Every response ccxt receives (sync and async): rate-limit headers, Date, exchangeInfo."""

        def wrapper(
            self_: Any, code: Any, reason: Any, url: Any, method: Any, headers: Any, body: Any, *rest: Any
        ) -> Any:
            result = func(self_, code, reason, url, method, headers, body, *rest)
            if self.active and headers:
                try:
                    _observe_response(self_, url, headers, body)
                except Exception:
                    logger.debug("otel-trader: reading exchange response headers failed", exc_info=True)
            return result

        return _named(wrapper, func)

    def init(self, func: Any) -> Any:
        """``__init__``: a subclass defined by the application is patched at its first instance."""

        def wrapper(self_: Any, *args: Any, **kwargs: Any) -> Any:
            cls = type(self_)
            if self.active and cls not in self.seen:
                self.patch_hierarchy(cls)
            return func(self_, *args, **kwargs)

        return _named(wrapper, func)

    # -- patching -----------------------------------------------------------------------------

    def replace(self, cls: type, name: str, wrapper: Any) -> None:
        own = name in cls.__dict__
        original = cls.__dict__.get(name)
        setattr(cls, name, wrapper)
        self.patched.append((cls, name, original, own))

    def patch_class(self, cls: type, has: frozenset[str]) -> None:
        if cls in self.seen or cls is object:
            return
        self.seen.add(cls)
        for name, value in list(vars(cls).items()):
            if not inspect.isfunction(value) or getattr(value, "_otel_trader_wrapped", False):
                continue
            wrapper = self.originals.get(id(value))
            if wrapper is None:
                if name == "fetch2":
                    wrapper = self.fetch2(value)
                elif name == "on_rest_response":
                    wrapper = self.on_rest_response(value)
                elif (
                    name == "__init__"
                    and cls.__module__ == "ccxt.base.exchange"
                    and cls.__name__ == "BaseExchange"
                ):
                    wrapper = self.init(value)
                elif (
                    name[0] != "_"
                    and not name.startswith(_STREAMING_PREFIXES)
                    and (name in _ALSO_UNIFIED or _camel(name) in has)
                ):
                    wrapper = self.unified(value, _snake(name))
                else:
                    continue
                self.originals[id(value)] = wrapper
            # camelCase aliases (createOrder) name the same function object as create_order.
            self.replace(cls, name, wrapper)

    def patch_hierarchy(self, cls: type) -> None:
        with self.lock:
            has = _unified_keys()
            for klass in reversed(cls.__mro__):
                module = getattr(klass, "__module__", "")
                if module.startswith("ccxt.abstract."):
                    continue  # implicit endpoints are Entry descriptors, measured in fetch2
                self.patch_class(klass, has)

    def patch_module(self, module: ModuleType) -> None:
        global _errors
        if _errors is None:
            _errors = _Errors()
        for exchange_id in getattr(module, "exchanges", ()):
            cls = getattr(module, exchange_id, None)
            if isinstance(cls, type):
                self.patch_hierarchy(cls)

    def undo(self) -> None:
        with self.lock:
            self.active = False
            for cls, name, original, own in reversed(self.patched):
                if own:
                    setattr(cls, name, original)
                else:
                    with contextlib.suppress(AttributeError):
                        delattr(cls, name)
            self.patched.clear()
            self.seen.clear()
            self.originals.clear()


def _named(wrapper: Any, func: Any) -> Any:
    wrapper.__name__ = func.__name__
    wrapper.__qualname__ = func.__qualname__
    wrapper.__doc__ = func.__doc__
    wrapper.__module__ = func.__module__
    wrapper.__wrapped__ = func
    wrapper._otel_trader_wrapped = True
    return wrapper


_has_keys: frozenset[str] | None = None


def _unified_keys() -> frozenset[str]:
    global _has_keys
    if _has_keys is None:
        base = sys.modules["ccxt.base.exchange"].Exchange
        _has_keys = frozenset(k for k in base.describe(base)["has"] if k[:1].islower())
    return _has_keys


_positions: dict[int, tuple[tuple[str, int], ...]] = {}


def _arguments(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) of the symbol/type/side/id arguments given to ``func``, as text."""
    key = id(func)
    positions = _positions.get(key)
    if positions is None:
        try:
            names = list(inspect.signature(func).parameters)[1:]  # without self
        except (TypeError, ValueError):
            names = []
        positions = tuple((n, i) for i, n in enumerate(names) if n in _ARGUMENTS)
        _positions[key] = positions
    out = []
    for name, index in positions:
        value = args[index] if index < len(args) else kwargs.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            out.append((name, str(value)[:128]))
    return out


def _record_skew(exchange_id: str, result: Any, sent: float, received: float) -> None:
    if isinstance(result, (int, float)) and not isinstance(result, bool) and result > 0:
        exchanges.record_clock_skew(exchange_id, result / 1000.0 - (sent + received) / 2.0, "fetch_time")


async def _timed_fetch_time(func: Any, exchange: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    sent = time.time()
    result = await func(exchange, *args, **kwargs)
    _record_skew(str(getattr(exchange, "id", "")), result, sent, time.time())
    return result


def _timed_fetch_time_sync(func: Any, exchange: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    sent = time.time()
    result = func(exchange, *args, **kwargs)
    _record_skew(str(getattr(exchange, "id", "")), result, sent, time.time())
    return result


def _observe_response(exchange: Any, url: Any, headers: Any, body: Any) -> None:
    exchange_id = str(getattr(exchange, "id", None) or type(exchange).__name__)
    try:
        path = urlsplit(str(url)).path
    except ValueError:
        path = ""
    if path.endswith("exchangeInfo") and isinstance(body, str):
        # Before the headers: this response's own weight is counted against the published limit.
        exchanges.learn_binance_limits(exchange_id, path, body)
    exchanges.observe_response_headers(exchange_id, headers, path)
    date = headers.get("Date") or headers.get("date")
    if date:
        exchanges.observe_date_header(exchange_id, str(date))


def instrument(tracer_provider: Any, meter_provider: Any, config: Any = None) -> Callable[[], None]:
    """Instrument ccxt's exchange classes when ccxt is imported; return the undo function."""
    instrumentation = _Instrumentation(tracer_provider)
    cancels = [
        when_imported(name, instrumentation.patch_module)
        for name in ("ccxt", "ccxt.async_support", "ccxt.pro")
    ]

    def undo() -> None:
        for cancel in cancels:
            cancel()
        instrumentation.undo()

    return undo
