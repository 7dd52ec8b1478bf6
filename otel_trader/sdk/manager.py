"""TelemetryManager: one per process; installs the OpenTelemetry SDK from :class:`TelemetryConfig`."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from otel_trader.sdk import metric_helpers as _metrics
from otel_trader.sdk import span_helpers as _tracing
from otel_trader.sdk.exit_budget import exit_budget
from otel_trader.settings import TelemetryConfig
from otel_trader.web.error_hooks import ErrorHooks

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

__all__ = ["TelemetryManager", "configure", "get_telemetry_manager", "instrument_app"]

logger = logging.getLogger("otel_trader")


class TelemetryManager:
    """Owns the process's tracer, meter and logger providers.

    ``configure()`` is idempotent. With telemetry disabled nothing is installed and every
    helper is a no-op; ``bool(manager)`` tells whether telemetry is active, so ``if telemetry:``
    guards work.
    """

    def __init__(self, config: TelemetryConfig | None = None) -> None:
        self.config = config if config is not None else TelemetryConfig()
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.logger_provider: LoggerProvider | None = None
        self.resource: Resource | None = None
        #: The in-process Prometheus registry `/metrics` serves (None when disabled).
        self.prometheus_registry: Any = None
        self._prometheus_reader: Any = None
        self._push_readers: list[Any] = []
        #: The root logger's handler feeding logger_provider (removed at shutdown).
        self._log_handler: logging.Handler | None = None
        self._configured = False
        self._shut_down = False
        self._lock = threading.Lock()
        self._instrumented: list[Callable[[], None]] = []
        #: Called with (exception, RequestInfo) for unhandled request exceptions; shared with
        #: every MonitoringMiddleware of this manager, so hooks added later still apply.
        self.error_hooks = ErrorHooks()

    def __bool__(self) -> bool:
        return self.config.active

    @property
    def configured(self) -> bool:
        """Whether providers are installed."""
        return self._configured

    # -- set-up -------------------------------------------------------------------------------

    def configure(
        self,
        *,
        span_exporter: SpanExporter | None = None,
        metric_readers: list[MetricReader] | None = None,
        log_exporter: Any = None,
    ) -> TelemetryManager:
        """Install providers, exporters and auto-instrumentation once; later calls do nothing.

        The keyword arguments replace the configured exporters (tests pass in-memory ones).
        """
        with self._lock:
            if self._configured or not self.config.active:
                return self
            self._install(span_exporter, metric_readers, log_exporter)
            self._configured = True
            exit_budget.restart()  # a new run: its exit has the whole budget
        return self

    def _install(self, span_exporter: Any, metric_readers: Any, log_exporter: Any) -> None:
        # Imported before any provider exists, on purpose: concurrent.futures.thread holds a lock
        # across fork and releases it in its own after-fork hook, and hooks run in registration
        # order. The SDK providers' after-fork hooks (>= 1.45) submit to a ThreadPoolExecutor; if
        # the module were first imported later (our Redis integration imports it), a forked
        # worker (gunicorn --preload) would deadlock in that hook before running any code.
        import concurrent.futures.thread  # noqa: F401

        from opentelemetry import _logs, metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        from otel_trader.sdk.exporters import build_exporters
        from otel_trader.sdk.pipeline import batch_options, build_sampler, build_span_limits, sdk_self_metrics
        from otel_trader.sdk.resource import build_resource
        from otel_trader.sdk.runtime_metrics import register_runtime_metrics
        from otel_trader.sdk.span_queue import CompactBatchSpanProcessor

        config = self.config
        self.resource = build_resource(config)
        built = build_exporters(config) if span_exporter is None else None
        spans = span_exporter or (built[0] if built else None)
        from otel_trader.redaction import add_redact_keys, install_console_redaction
        from otel_trader.sdk.scrubbing import ScrubbingSpanExporter

        # Every span exporter, also one passed in, sees spans only after scrubbing (export thread).
        add_redact_keys(config.redact_keys)
        spans = ScrubbingSpanExporter(spans) if spans is not None else None
        readers: list[Any] = list(metric_readers or [])
        if metric_readers is None and built:
            readers.append(
                PeriodicExportingMetricReader(
                    built[1], export_interval_millis=config.metric_export_interval * 1000
                )
            )
        if config.prometheus_enabled:
            from otel_trader.web.prometheus import build_prometheus_reader

            reader, self.prometheus_registry = build_prometheus_reader()
            self._prometheus_reader = reader
            readers.append(reader)

        # Flushed by flush(); a pull reader must not be: a Prometheus collect outside a scrape
        # leaves data that the next scrape then shows twice.
        self._push_readers = [r for r in readers if r is not self._prometheus_reader]
        self.meter_provider = MeterProvider(
            resource=self.resource, metric_readers=readers, shutdown_on_exit=False
        )
        metrics.set_meter_provider(self.meter_provider)

        self.tracer_provider = TracerProvider(
            resource=self.resource,
            sampler=build_sampler(config),
            span_limits=build_span_limits(config),
            shutdown_on_exit=False,
        )
        if spans is not None:
            with sdk_self_metrics():
                # The SDK's batch processor, queueing spans as plain tuples (see span_queue).
                processor = CompactBatchSpanProcessor(
                    spans, meter_provider=self.meter_provider, **batch_options(config, "bsp")
                )
            self.tracer_provider.add_span_processor(processor)
        trace.set_tracer_provider(self.tracer_provider)

        logs = log_exporter or (built[2] if built else None)
        if config.logs_enabled and config.integration_enabled("logging"):
            from otel_trader.sdk.logs import install_log_export

            installed = install_log_export(self.resource, logs, config, self.meter_provider)
            if installed is not None:
                self.logger_provider, self._log_handler = installed
                _logs.set_logger_provider(self.logger_provider)
        from otel_trader.sdk.logs import install_log_correlation

        install_log_correlation()
        install_console_redaction()  # after log export: covers our stderr fallback handler too
        register_runtime_metrics(self.meter_provider)
        _tracing.refresh()
        _metrics.refresh(config.metric_cardinality_limit)
        self._instrument_libraries()
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.shutdown)
        logger.info(
            "otel-trader telemetry on: service=%s environment=%s exporter=%s endpoint=%s",
            config.service_name,
            config.environment,
            config.exporter,
            config.otlp.endpoint if config.exporter == "otlp" else "-",
        )

    def _instrument_libraries(self) -> None:
        from otel_trader.integrations import instrument_libraries

        self._instrumented = instrument_libraries(self.config, self.tracer_provider, self.meter_provider)

    def _after_fork(self) -> None:
        # A forked worker is its own instance, and the parent's accumulated metric values are not
        # its own: new identity, empty metric state, and a target_info built anew on next scrape.
        if self.resource is None:
            return
        from otel_trader.sdk.fork_state import reset_metric_state
        from otel_trader.sdk.resource import refresh_after_fork
        from otel_trader.web.prometheus import forget_target_info

        refresh_after_fork(self.resource, (self.tracer_provider, self.meter_provider, self.logger_provider))
        forget_target_info(self._prometheus_reader)
        reset_metric_state(self.meter_provider)

    def instrument_app(self, app: Any) -> Any:
        """Instrument a FastAPI/Starlette app: RED metrics, server spans, ``/metrics``. Returns ``app``."""
        if not self.config.active or getattr(app, "_otel_trader_instrumented", False):
            return app
        self.configure()
        from otel_trader.integrations.fastapi import flush_after_lifespan, instrument_fastapi
        from otel_trader.redaction import install_console_redaction

        # Again here: under `opentelemetry-instrument uvicorn` configuration ran before uvicorn
        # set up its log handlers; by the time the app is built they exist.
        install_console_redaction()
        instrument_fastapi(app, self)
        flush_after_lifespan(app, self)
        app._otel_trader_instrumented = True
        return app

    def add_error_hook(self, hook: Any) -> None:
        """Call ``hook(exc, request_info)`` for every unhandled request exception."""
        self.error_hooks.add(hook)

    # -- tear-down ----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Export what is buffered now, waiting at most ``timeout`` seconds (default: the shutdown deadline).

        Returns ``True`` when every provider flushed in time. Providers keep working afterwards.
        """
        if self._shut_down or not self._configured:
            return True
        deadline = self.config.shutdown_timeout_seconds if timeout is None else timeout
        flushable = [p for p in (self.tracer_provider, self.logger_provider, *self._push_readers) if p]
        done = threading.Event()

        def flush_all() -> None:
            for provider in flushable:
                try:
                    provider.force_flush()
                except Exception:
                    logger.debug("provider flush failed", exc_info=True)
            done.set()

        # As in shutdown(): a stuck exporter keeps a daemon thread busy, not the caller.
        threading.Thread(target=flush_all, name="otel-trader-flush", daemon=True).start()
        return done.wait(deadline)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop every provider within ``timeout`` seconds (default: the exit budget).

        Returns ``True`` when everything finished in time. With a dead collector the SDK's own
        shutdown waits up to 30 s; here the wait is cut at the deadline and what is still queued
        is abandoned (and counted by the SDK's processor metrics). Without ``timeout`` it waits
        at most what is left of the process's exit budget (``TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS``,
        which the lifespan flush and the Telegram reporter's shutdown draw on too; see
        :mod:`otel_trader.sdk.exit_budget`), and spends what it waits.
        """
        with self._lock:
            if self._shut_down or not self._configured:
                return True
            self._shut_down = True
        for undo in self._instrumented:
            try:
                undo()
            except Exception:  # pragma: no cover - defensive
                logger.debug("uninstrument failed", exc_info=True)
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
        total = self.config.shutdown_timeout_seconds
        # One budget for the whole exit: after a lifespan flush that waited it out on a dead
        # collector, waiting again at atexit would only double the exit time.
        deadline = exit_budget.remaining(total) if timeout is None else timeout
        providers = [p for p in (self.tracer_provider, self.logger_provider, self.meter_provider) if p]
        done = threading.Event()

        def stop_all() -> None:
            for provider in providers:
                try:
                    provider.shutdown()
                except Exception:
                    logger.debug("provider shutdown failed", exc_info=True)
            done.set()

        # A daemon thread: if the exporters are stuck, interpreter exit does not wait for it.
        threading.Thread(target=stop_all, name="otel-trader-shutdown", daemon=True).start()
        if timeout is None:
            with exit_budget.spending():
                finished = done.wait(deadline)
        else:
            finished = done.wait(deadline)
        if not finished:
            logger.warning(
                "otel-trader: telemetry shutdown did not finish within %.1fs; unsent data was dropped",
                total if timeout is None else timeout,
            )
        return finished

    # -- the helpers as methods (they delegate to the module functions) -----------------------

    def trace_operation(
        self,
        name: str,
        attributes: dict[str, Any] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> _tracing.Operation:
        """Span context manager/decorator; see :func:`otel_trader.trace_operation`."""
        return _tracing.trace_operation(name, attributes, kind)

    def add_span_attribute(self, key: str, value: Any) -> None:
        """Set an attribute on the current span (no-op without one)."""
        _tracing.add_span_attribute(key, value)

    def record_counter(
        self, name: str, value: float = 1, attributes: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Add to a counter; see :func:`otel_trader.record_counter`."""
        _metrics.record_counter(name, value, attributes, **kwargs)

    def record_histogram(
        self, name: str, value: float, attributes: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Record into a histogram; see :func:`otel_trader.record_histogram`."""
        _metrics.record_histogram(name, value, attributes, **kwargs)

    def set_gauge(
        self, name: str, value: float, attributes: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Set a gauge; see :func:`otel_trader.set_gauge`."""
        _metrics.set_gauge(name, value, attributes, **kwargs)

    def get_current_span(self) -> Span:
        """The active span (a non-recording one when there is none)."""
        return trace.get_current_span()


_manager: TelemetryManager | None = None
_manager_lock = threading.Lock()


def current_manager() -> TelemetryManager | None:
    """The process's TelemetryManager if one was made, without making one (no configuration)."""
    return _manager


def get_telemetry_manager() -> TelemetryManager:
    """The process's TelemetryManager, configured from the environment on first use."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = TelemetryManager().configure()
    return _manager


def configure(
    config: TelemetryConfig | None = None,
    *,
    span_exporter: SpanExporter | None = None,
    metric_readers: list[MetricReader] | None = None,
    log_exporter: Any = None,
    **settings: Any,
) -> TelemetryManager:
    """Configure telemetry once for this process and return the manager.

    ``configure(service_name="bot", enabled=True)`` overrides the environment; the exporter
    arguments replace the configured exporters (tests, benchmarks). A second call returns the
    already-configured manager unchanged.
    """
    global _manager
    with _manager_lock:
        if _manager is None or not _manager.configured:
            _manager = TelemetryManager(config or TelemetryConfig(**settings))
    return _manager.configure(
        span_exporter=span_exporter, metric_readers=metric_readers, log_exporter=log_exporter
    )


def instrument_app(app: Any) -> Any:
    """Instrument a FastAPI app from the environment; a no-op unless TELEMETRY_ENABLED=true.

    With ``TELEGRAM_ERROR_REPORTING_ENABLED=true`` it also starts Telegram error reporting for
    the app (with or without telemetry); invalid Telegram settings raise ConfigError here.
    """
    manager = get_telemetry_manager()
    from otel_trader.telegram.app import attach_error_reporting

    attach_error_reporting(app, manager)
    return manager.instrument_app(app)
