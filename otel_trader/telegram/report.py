"""What one error report carries: an immutable snapshot taken where the error happened.

Capturing runs on the caller's path (a request, a log call), so it only copies what it needs:
type, a bounded message, ``(file, line, function)`` of the innermost frames (source lines are
read later, in the sender), the trace id and the request's method/route/status/client. The
exception object itself is not kept: it would pin every frame's locals in the queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from opentelemetry import trace

from otel_trader.web.middleware import RequestInfo

__all__ = ["ErrorReport", "Frame", "capture_exception", "capture_record", "innermost_location"]

#: Frames kept per report (innermost last); the formatter may show fewer.
MAX_FRAMES = 30
#: Characters of an exception message or log message kept before formatting.
MAX_MESSAGE = 2000
MAX_CONTEXT_ITEMS = 20
MAX_CONTEXT_VALUE = 500

Frame = tuple[str, int, str]  # (filename, lineno, function)


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """One error, ready to be formatted in the sender; holds no live objects."""

    timestamp: float
    level: int
    error_type: str
    message: str
    frames: tuple[Frame, ...] = ()
    #: Frames left out above ``frames`` (the outermost ones).
    frames_omitted: int = 0
    cause: str | None = None
    #: Where the cause was raised (its innermost frame): usually where the real failure is.
    cause_frame: Frame | None = None
    request: RequestInfo | None = None
    trace_id: str | None = None
    context: tuple[tuple[str, str], ...] = ()
    #: ``exception``, ``request`` or ``log``.
    source: str = "exception"
    #: The formatted log message when the report comes from a log record.
    log_message: str | None = None
    logger_name: str | None = None
    #: Set on follow-ups: how many more like this were suppressed in the window.
    suppressed: int = 0
    window_seconds: float = 0.0
    first_seen: float = field(default=0.0)

    @property
    def level_name(self) -> str:
        """``ERROR``, ``CRITICAL``, … (the metric's ``level`` label)."""
        return str(logging.getLevelName(self.level))


def _innermost_tb(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def innermost_location(exc: BaseException) -> str:
    """``file:line`` of the frame that raised ``exc`` (cheap: walks the traceback links only)."""
    tb = _innermost_tb(exc.__traceback__)
    if tb is None:
        return "<no traceback>"
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def _frames(tb: TracebackType | None) -> tuple[tuple[Frame, ...], int]:
    frames: list[Frame] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    omitted = max(0, len(frames) - MAX_FRAMES)
    return tuple(frames[omitted:]), omitted


def safe_str(value: Any, limit: int = MAX_MESSAGE) -> str:
    """``str(value)`` cut to ``limit`` characters; never raises (a broken ``__str__`` is an error too)."""
    try:
        text = str(value)
    except Exception as exc:  # the report must still go out
        text = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


def type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``package.module.Error`` otherwise."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def _cause(exc: BaseException) -> tuple[str | None, Frame | None]:
    inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if inner is None:
        return None, None
    tb = _innermost_tb(inner.__traceback__)
    frame = (tb.tb_frame.f_code.co_filename, tb.tb_lineno, tb.tb_frame.f_code.co_name) if tb else None
    return f"{type_name(inner)}: {safe_str(inner, 300)}", frame


def current_trace_id() -> str | None:
    """The current span's trace id (hex), or None outside a valid span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _context_items(context: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    if not context:
        return ()
    items = []
    for key, value in list(context.items())[:MAX_CONTEXT_ITEMS]:
        items.append((safe_str(key, 100), safe_str(value, MAX_CONTEXT_VALUE)))
    return tuple(items)


def capture_exception(
    exc: BaseException,
    level: int = logging.ERROR,
    *,
    context: Mapping[str, Any] | None = None,
    request: RequestInfo | None = None,
    trace_id: str | None = None,
    log_message: str | None = None,
    logger_name: str | None = None,
    timestamp: float | None = None,
) -> ErrorReport:
    """Snapshot ``exc`` (and where it happened) into an :class:`ErrorReport`."""
    frames, omitted = _frames(exc.__traceback__)
    cause, cause_frame = _cause(exc)
    if request is not None:
        source = "request"
    elif log_message is not None:
        source = "log"
    else:
        source = "exception"
    return ErrorReport(
        timestamp=time.time() if timestamp is None else timestamp,
        level=level,
        error_type=type_name(exc),
        message=safe_str(exc),
        frames=frames,
        frames_omitted=omitted,
        cause=cause,
        cause_frame=cause_frame,
        request=request,
        trace_id=trace_id or (request.trace_id if request is not None else None) or current_trace_id(),
        context=_context_items(context),
        source=source,
        log_message=log_message,
        logger_name=logger_name,
    )


def record_trace_id(record: logging.LogRecord) -> str | None:
    """The trace id the log correlation put on ``record``, else the current span's."""
    value = getattr(record, "trace_id", None)
    if isinstance(value, str) and value.strip("0"):
        return value
    return current_trace_id()


def capture_record(record: logging.LogRecord) -> ErrorReport:
    """Snapshot a log record: its exception if it has one, else the record itself."""
    try:
        message = safe_str(record.getMessage())
    except Exception:  # bad %-args: report the template rather than nothing
        message = safe_str(record.msg)
    exc = record.exc_info[1] if record.exc_info else None
    context = {"logger": record.name, "origin": f"{record.pathname}:{record.lineno} in {record.funcName}"}
    if exc is not None:
        return capture_exception(
            exc,
            record.levelno,
            context=context,
            trace_id=record_trace_id(record),
            log_message=message,
            logger_name=record.name,
            timestamp=record.created,
        )
    return ErrorReport(
        timestamp=record.created,
        level=record.levelno,
        error_type=f"log record ({record.levelname})",
        message=message,
        frames=((record.pathname, record.lineno, record.funcName or "?"),),
        trace_id=record_trace_id(record),
        context=_context_items(context),
        source="log",
        logger_name=record.name,
    )
