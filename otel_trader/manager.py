"""TelemetryManager: one per process; installs the OpenTelemetry SDK from :class:`TelemetryConfig`."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import platform
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from . import metrics as _metrics
from . import tracing as _tracing
from .settings import TelemetryConfig

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
    helper is a no-op; ``bool(manager)`` tells whether telemetry is active, so the seed's
    ``if telemetry:`` guards keep working.
    """

    def __init__(self, config: TelemetryConfig | None = None) -> None:
        self.config = config if config is not None else TelemetryConfig()
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.logger_provider: LoggerProvider | None = None
        self.resource: Resource | None = None
        #: The in-process Prometheus registry `/metrics` serves (None when disabled).
        self.prometheus_registry: Any = None
        self._configured = False
        self._shut_down = False
        self._lock = threading.Lock()
        self._instrumented: list[Callable[[], None]] = []
        #: Called with (exception, RequestInfo) for unhandled request exceptions; shared with
        #: every MonitoringMiddleware of this manager, so hooks added later still apply.
        self.error_hooks: list[Any] = []

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
        return self

    def _install(self, span_exporter: Any, metric_readers: Any, log_exporter: Any) -> None:
        from opentelemetry import _logs, metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from .exporters import build_exporters
        from .runtime_metrics import register_runtime_metrics

        config = self.config
        self.resource = build_resource(config)
        built = build_exporters(config) if span_exporter is None else None
        spans = span_exporter or (built[0] if built else None)
        readers: list[Any] = list(metric_readers or [])
        if metric_readers is None and built:
            readers.append(
                PeriodicExportingMetricReader(
                    built[1], export_interval_millis=config.metric_export_interval * 1000
                )
            )
        if config.prometheus_enabled:
            from .prometheus import build_prometheus_reader

            reader, self.prometheus_registry = build_prometheus_reader()
            readers.append(reader)

        self.meter_provider = MeterProvider(
            resource=self.resource, metric_readers=readers, shutdown_on_exit=False
        )
        metrics.set_meter_provider(self.meter_provider)

        self.tracer_provider = TracerProvider(
            resource=self.resource, sampler=build_sampler(config), shutdown_on_exit=False
        )
        if spans is not None:
            with sdk_self_metrics():
                processor = BatchSpanProcessor(spans, meter_provider=self.meter_provider)
            self.tracer_provider.add_span_processor(processor)
        trace.set_tracer_provider(self.tracer_provider)

        logs = log_exporter or (built[2] if built else None)
        if config.logs_enabled and config.integration_enabled("logging"):
            from .logs import install_log_export

            self.logger_provider = install_log_export(
                self.resource, logs, config.log_level, self.meter_provider
            )
            if self.logger_provider is not None:
                _logs.set_logger_provider(self.logger_provider)
        from .logs import install_log_correlation

        install_log_correlation()
        register_runtime_metrics(self.meter_provider)
        _tracing.refresh()
        _metrics.refresh()
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
        from .integrations import instrument_libraries

        self._instrumented = instrument_libraries(self.config, self.tracer_provider, self.meter_provider)

    def _after_fork(self) -> None:
        # A forked worker is its own instance: give it its own service.instance.id. All
        # tracers and the meter provider hold this one Resource object, so updating it in place
        # reaches every signal (Resource has no public setter).
        if self.resource is not None:
            from opentelemetry.attributes import BoundedAttributes

            attributes = dict(self.resource.attributes)
            attributes["service.instance.id"] = str(uuid.uuid4())
            attributes["process.pid"] = os.getpid()
            self.resource._attributes = BoundedAttributes(attributes=attributes, immutable=True)

    def instrument_app(self, app: Any) -> Any:
        """Instrument a FastAPI/Starlette app: RED metrics, server spans, ``/metrics``. Returns ``app``."""
        if not self.config.active or getattr(app, "_otel_trader_instrumented", False):
            return app
        self.configure()
        from .integrations.fastapi import instrument_fastapi

        instrument_fastapi(app, self)
        app._otel_trader_instrumented = True
        return app

    def add_error_hook(self, hook: Any) -> None:
        """Call ``hook(exc, request_info)`` for every unhandled request exception."""
        self.error_hooks.append(hook)

    # -- tear-down ----------------------------------------------------------------------------

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop every provider within ``timeout`` seconds (default: the configured deadline).

        Returns ``True`` when everything finished in time. With a dead collector the SDK's own
        shutdown waits up to 30 s; here the wait is cut at the deadline and what is still queued
        is abandoned (and counted by the SDK's processor metrics).
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
        handler = getattr(self.logger_provider, "_otel_trader_handler", None)
        if handler is not None:
            logging.getLogger().removeHandler(handler)
        deadline = self.config.shutdown_timeout_seconds if timeout is None else timeout
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
        finished = done.wait(deadline)
        if not finished:
            logger.warning(
                "otel-trader: telemetry shutdown did not finish within %.1fs; unsent data was dropped",
                deadline,
            )
        return finished

    # -- the seed's API (methods delegate to the module helpers) ------------------------------

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


@contextlib.contextmanager
def sdk_self_metrics() -> Iterator[None]:
    """Switch the SDK's self-metrics on for the processors built inside this block only.

    They count what a full queue drops (``otel_sdk_processor_span_processed_total{error_type=
    "queue_full"}``) at a cost per batch. The same switch on the TracerProvider would add three
    metric updates to every span, so it is not set process-wide.
    """
    name = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"
    previous = os.environ.get(name)
    os.environ[name] = "true" if previous is None else previous
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]


def build_resource(config: TelemetryConfig) -> Resource:
    """service.*, deployment.environment, host and process attributes, plus OTEL_RESOURCE_ATTRIBUTES."""
    from opentelemetry.sdk.resources import Resource

    attributes: dict[str, Any] = {
        "service.name": config.service_name,
        "service.instance.id": str(uuid.uuid4()),
        # Both spellings: SigNoz and older collectors read the first, semconv ≥ 1.27 the second.
        "deployment.environment": config.environment,
        "deployment.environment.name": config.environment,
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
        "process.runtime.name": platform.python_implementation().lower(),
        "process.runtime.version": platform.python_version(),
        "telemetry.distro.name": "otel-trader",
    }
    if config.service_version:
        attributes["service.version"] = config.service_version
    attributes.update(config.resource_attributes)
    # Resource.create would also merge the environment's OTEL_RESOURCE_ATTRIBUTES and
    # OTEL_SERVICE_NAME, overriding our precedence; build it directly instead.
    return Resource(attributes)


def build_sampler(config: TelemetryConfig) -> Any:
    """Parent-based ratio sampling by default; OTEL_TRACES_SAMPLER picks another."""
    from opentelemetry.sdk.trace import sampling

    ratio = sampling.TraceIdRatioBased(config.sample_ratio)
    return {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(ratio),
    }[config.traces_sampler]


_manager: TelemetryManager | None = None
_manager_lock = threading.Lock()


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
    """Instrument a FastAPI app from the environment; a no-op unless TELEMETRY_ENABLED=true."""
    return get_telemetry_manager().instrument_app(app)
