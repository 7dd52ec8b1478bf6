"""Log export over OTLP and log–trace correlation.

Every ``logging.LogRecord`` gets ``trace_id`` and ``span_id`` (hex, or ``"0"`` outside a span),
so a plain formatter like ``%(trace_id)s`` works; exported records carry the trace context too.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

__all__ = ["install_log_correlation", "install_log_export"]

_installed_factory: Any = None


def install_log_correlation() -> None:
    """Wrap the log record factory once so each record carries the current trace and span ids."""
    global _installed_factory
    if _installed_factory is not None:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        else:
            record.trace_id = record.span_id = "0"
        return record

    logging.setLogRecordFactory(factory)
    _installed_factory = factory


def install_log_export(resource: Any, exporter: Any, level: str, meter_provider: Any) -> Any:
    """Create a LoggerProvider exporting through ``exporter`` and attach a handler to the root logger."""
    if exporter is None:
        return None
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    from .manager import sdk_self_metrics

    with sdk_self_metrics():
        processor = BatchLogRecordProcessor(exporter, meter_provider=meter_provider)
    provider.add_log_record_processor(processor)
    handler = LoggingHandler(level=getattr(logging, level), logger_provider=provider)
    # The exporter's own warnings must not be exported again through it (a loop when the
    # collector is down).
    handler.addFilter(lambda record: not record.name.startswith(("opentelemetry", "grpc")))
    from .redaction import RedactingFilter

    handler.addFilter(RedactingFilter())
    logging.getLogger().addHandler(handler)
    if logging.getLogger().level > getattr(logging, level) or logging.getLogger().level == logging.NOTSET:
        # Python's root logger defaults to WARNING; without this INFO records never reach the handler.
        logging.getLogger().setLevel(getattr(logging, level))
    provider._otel_trader_handler = handler  # type: ignore[attr-defined]
    return provider
