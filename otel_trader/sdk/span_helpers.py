"""Span helpers: ``trace_operation`` and ``add_span_attribute``.

``trace_operation`` is on the hot path of every traced business call, so it is a small slotted
class rather than a generator-based context manager: it starts the span, attaches it to the
context and ends it itself, which costs less than ``tracer.start_as_current_span``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from otel_trader.sdk.span_fastpath import DirectAttributes

__all__ = ["Operation", "add_span_attribute", "trace_operation"]

F = TypeVar("F", bound=Callable[..., Any])

_INSTRUMENTATION_NAME = "otel_trader"
_tracer: trace.Tracer = trace.get_tracer(_INSTRUMENTATION_NAME)
_direct = DirectAttributes(trace.get_tracer_provider())


def refresh() -> None:
    """Re-read the global tracer provider (called after configuration)."""
    global _tracer, _direct
    _tracer = trace.get_tracer(_INSTRUMENTATION_NAME)
    _direct = DirectAttributes(trace.get_tracer_provider())


def error_type(exc: BaseException) -> str:
    """The semconv ``error.type`` of an exception: its qualified class name."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def mark_error(span: Span, exc: BaseException) -> None:
    """Record ``exc`` on ``span`` the way the SDK's ``use_span`` does, plus ``error.type``."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_attribute("error.type", error_type(exc))
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class Operation:
    """A span around a block or a function: sync and async context manager, and decorator."""

    __slots__ = ("name", "attributes", "kind", "_span", "_token")

    def __init__(self, name: str, attributes: dict[str, Any] | None, kind: SpanKind) -> None:
        self.name = name
        self.attributes = attributes
        self.kind = kind
        self._span: Span | None = None
        self._token: object = None

    def __enter__(self) -> Span:
        attributes = self.attributes
        if attributes and _direct.ready():
            # Written after the start, without the SDK's per-value checks when it may (span_fastpath).
            span = _tracer.start_span(self.name, kind=self.kind)
            if span.is_recording() and not _direct.write(span, attributes, trusted=False):
                span.set_attributes(attributes)
        else:
            span = _tracer.start_span(self.name, kind=self.kind, attributes=attributes)
        self._span = span
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        span = self._span
        assert span is not None
        try:
            if exc is not None:
                mark_error(span, exc)
            span.end()
        finally:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._span = None

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        """Use as a decorator: one span per call, sync or async."""
        name, attributes, kind = self.name, self.attributes, self.kind
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with Operation(name, attributes, kind):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Operation(name, attributes, kind):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def trace_operation(
    name: str,
    attributes: dict[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Operation:
    """Trace a block or function as a span named ``name``.

    ``with trace_operation("place_order", {"symbol": s}) as span:`` — also ``async with`` and
    ``@trace_operation("name")``. An exception is recorded on the span, sets ERROR status and
    ``error.type``, and is re-raised. Without configured telemetry the span is a cheap no-op.
    """
    return Operation(name, attributes, kind)


def add_span_attribute(key: str, value: Any) -> None:
    """Set ``key=value`` on the current span; does nothing when there is no recording span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(key, value)
