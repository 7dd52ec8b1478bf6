"""The API's current context, read and set through the API's own ContextVar and key directly.

``opentelemetry.context.attach`` and ``detach`` are two Python calls each around ``set`` and
``reset`` of the ContextVar the default runtime context (``ContextVarsRuntimeContext``) keeps,
and ``trace.set_span_in_context`` two around a copy of the context with the span under the
API's key. The middleware does each of them once or twice per request; these are the same
operations without the calls. Where the runtime context or the key is not the API's default
(checked at import), they are the API's functions themselves.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

__all__ = ["SPAN_KEY", "SPAN_KEY_KNOWN", "attach", "detach", "with_span"]

#: The key ``set_span_in_context`` stores the span under (private in the API: checked below).
SPAN_KEY: str = getattr(trace.propagation, "_SPAN_KEY", "current-span")


def _span_key_is_known() -> bool:
    probe = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    stored = trace.set_span_in_context(probe, Context({"other": 1}))
    return dict(stored) == {"other": 1, SPAN_KEY: probe} and trace.get_current_span(stored) is probe


#: Whether a context holds its span under :data:`SPAN_KEY`, as the API reads and writes it.
SPAN_KEY_KNOWN = _span_key_is_known()


def _context_var() -> ContextVar[Any] | None:
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if type(var) is ContextVar else None


_VAR = _context_var()

#: ``opentelemetry.context.attach``: make ``context`` current, return the token to detach.
attach: Any = _VAR.set if _VAR is not None else otel_context.attach
_reset: Any = _VAR.reset if _VAR is not None else otel_context.detach


def detach(token: Any) -> None:
    """``opentelemetry.context.detach``: restore the context ``token`` replaced; a failure is logged."""
    try:
        _reset(token)
    except Exception:
        otel_context.detach(token)  # fails again, and logs it as the API does


def with_span(span: trace.Span, context: Context) -> Context:
    """``trace.set_span_in_context(span, context)``."""
    if SPAN_KEY_KNOWN:
        return Context({**context, SPAN_KEY: span})
    return trace.set_span_in_context(span, context)
