"""Log export over OTLP and log–trace correlation.

Every ``logging.LogRecord`` gets ``trace_id`` and ``span_id`` (hex, or ``"0"`` outside a span),
so a plain formatter like ``%(trace_id)s`` works; exported records carry the trace context too.
:class:`TraceFormatter` ends the lines of records made inside a trace with how to open it:
``otel-trader traces --trace-id <id>`` and, with ``SIGNOZ_URL`` set, the SigNoz link.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NamedTuple

from opentelemetry import trace

__all__ = ["LogExport", "TraceFormatter", "install_log_correlation", "install_log_export"]

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


class TraceFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose lines for records inside a trace say how to open it.

    ``… order failed  [trace: otel-trader traces --trace-id 4bf9… · https://signoz/trace/4bf9…]``.
    The hint goes on the record's first line, before any traceback, so the line naming the
    error names its trace. The SigNoz link appears when ``signoz_url`` (default ``$SIGNOZ_URL``)
    is set. Records without a trace id (outside a span, or made before log correlation was
    installed) are formatted as by the base class.
    """

    def __init__(self, *args: Any, signoz_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = signoz_url if signoz_url is not None else os.environ.get("SIGNOZ_URL", "").strip()
        self.signoz_url = url.rstrip("/") or None

    def trace_hint(self, trace_id: str) -> str:
        """``[trace: otel-trader traces --trace-id <id> · <SigNoz link>]``."""
        from otel_trader.traces import local_command

        link = f" · {self.signoz_url}/trace/{trace_id}" if self.signoz_url else ""
        return f"[trace: {local_command(trace_id)}{link}]"

    def format(self, record: logging.LogRecord) -> str:
        """The base class's text, with :meth:`trace_hint` at the end of its first line."""
        text = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        if not isinstance(trace_id, str) or len(trace_id) != 32 or trace_id == "0" * 32:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first}  {self.trace_hint(trace_id)}{newline}{rest}"


class _StderrFallback(logging.Handler):
    """otel-trader's own warnings on stderr while the application has not configured logging.

    Python prints otherwise unhandled warnings through ``logging.lastResort`` only when no
    handler exists anywhere; the export handler on the root logger counts as one. Without this,
    under plain uvicorn (which configures only its own loggers) a warning such as "collector
    unreachable" would only be exported, to the collector it is about.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if any(not getattr(h, "_otel_trader_export", False) for h in logging.getLogger().handlers):
            return  # the application has a handler of its own: the record reaches it by propagation
        try:
            # sys.stderr looked up per record, like lastResort (it may be replaced at runtime).
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _install_stderr_fallback() -> None:
    package_logger = logging.getLogger("otel_trader")
    if not any(isinstance(h, _StderrFallback) for h in package_logger.handlers):
        fallback = _StderrFallback(logging.WARNING)
        fallback.setFormatter(TraceFormatter())
        package_logger.addHandler(fallback)


class LogExport(NamedTuple):
    """What :func:`install_log_export` installed: the provider, and the root logger's handler feeding it."""

    provider: Any
    handler: logging.Handler


def install_log_export(resource: Any, exporter: Any, config: Any, meter_provider: Any) -> LogExport | None:
    """Create a LoggerProvider exporting through ``exporter`` and attach a handler to the root logger.

    ``config`` (a TelemetryConfig) gives the level, the batch options and the attribute limits,
    the same as for spans. Returns ``None`` without an exporter; the caller owns the handler
    (and removes it from the root logger at shutdown).
    """
    level = config.log_level
    if exporter is None:
        return None
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(
        resource=resource,
        shutdown_on_exit=False,
        log_record_limits=LogRecordLimits(
            max_attributes=config.attribute_count_limit,
            max_attribute_length=config.attribute_value_length_limit,
        ),
    )
    from otel_trader.sdk.pipeline import batch_options, sdk_self_metrics
    from otel_trader.sdk.scrubbing import ScrubbingLogExporter

    # Secrets are scrubbed and long bodies cut on the export thread, not in the logging call.
    exporter = ScrubbingLogExporter(exporter, body_limit_chars=config.attribute_value_length_limit)
    with sdk_self_metrics():
        processor = BatchLogRecordProcessor(
            exporter, meter_provider=meter_provider, **batch_options(config, "blrp")
        )
    provider.add_log_record_processor(processor)
    handler = LoggingHandler(level=getattr(logging, level), logger_provider=provider)
    # The exporter's own warnings must not be exported again through it (a loop when the
    # collector is down).
    handler.addFilter(lambda record: not record.name.startswith(("opentelemetry", "grpc")))
    handler._otel_trader_export = True  # type: ignore[attr-defined]
    logging.getLogger().addHandler(handler)
    _install_stderr_fallback()
    if logging.getLogger().level > getattr(logging, level) or logging.getLogger().level == logging.NOTSET:
        # Python's root logger defaults to WARNING; without this INFO records never reach the handler.
        logging.getLogger().setLevel(getattr(logging, level))
    return LogExport(provider, handler)
