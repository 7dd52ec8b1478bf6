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
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from . import metrics as _metrics
from . import tracing as _tracing
from .exit_budget import exit_budget
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
        self._prometheus_reader: Any = None
        self._push_readers: list[Any] = []
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

        from .exporters import build_exporters
        from .runtime_metrics import register_runtime_metrics
        from .span_queue import CompactBatchSpanProcessor

        config = self.config
        self.resource = build_resource(config)
        built = build_exporters(config) if span_exporter is None else None
        spans = span_exporter or (built[0] if built else None)
        from .redaction import add_redact_keys, install_console_redaction
        from .scrubbing import ScrubbingSpanExporter

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
            from .prometheus import build_prometheus_reader

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
            from .logs import install_log_export

            self.logger_provider = install_log_export(self.resource, logs, config, self.meter_provider)
            if self.logger_provider is not None:
                _logs.set_logger_provider(self.logger_provider)
        from .logs import install_log_correlation

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
        from .integrations import instrument_libraries

        self._instrumented = instrument_libraries(self.config, self.tracer_provider, self.meter_provider)

    def _after_fork(self) -> None:
        # A forked worker is its own instance: its own service.instance.id and process.pid.
        # SDK >= 1.45 providers refresh service.instance.id themselves after fork (a per-process
        # id, merged into a *new* Resource object per provider) but not process.pid, and no
        # longer see the object built here; older SDKs keep that object. So update the object in
        # place (Resource has no public setter) and merge the same attributes into each provider.
        if self.resource is None:
            return
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.resources import Resource

        fresh: dict[str, Any] = {"service.instance.id": _process_instance_id(), "process.pid": os.getpid()}
        self.resource._attributes = BoundedAttributes(
            attributes={**self.resource.attributes, **fresh}, immutable=True
        )
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            update = getattr(provider, "_update_resource", None)
            if update is not None:
                try:
                    update(Resource(fresh))
                except Exception:  # never break the child over an attribute
                    logger.debug("resource update after fork failed", exc_info=True)
        # The Prometheus reader builds target_info once and keeps it; a scrape before the fork
        # would leave the child showing the parent's identity.
        collector = getattr(self._prometheus_reader, "_collector", None)
        if collector is not None and hasattr(collector, "_target_info"):
            collector._target_info = None
        # The parent's accumulated metric values are not this instance's: start empty.
        from .fork_state import reset_metric_state

        reset_metric_state(self.meter_provider)

    def instrument_app(self, app: Any) -> Any:
        """Instrument a FastAPI/Starlette app: RED metrics, server spans, ``/metrics``. Returns ``app``."""
        if not self.config.active or getattr(app, "_otel_trader_instrumented", False):
            return app
        self.configure()
        from .integrations.fastapi import instrument_fastapi
        from .redaction import install_console_redaction

        # Again here: under `opentelemetry-instrument uvicorn` configuration ran before uvicorn
        # set up its log handlers; by the time the app is built they exist.
        install_console_redaction()
        instrument_fastapi(app, self)
        _flush_after_lifespan(app, self)
        app._otel_trader_instrumented = True
        return app

    def add_error_hook(self, hook: Any) -> None:
        """Call ``hook(exc, request_info)`` for every unhandled request exception."""
        self.error_hooks.append(hook)

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
        :mod:`otel_trader.exit_budget`), and spends what it waits.
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


def _process_instance_id() -> str:
    """The SDK's per-process service.instance.id (what its providers use after a fork), else a new UUID."""
    try:
        from opentelemetry.sdk.resources import ServiceInstanceIdResourceDetector

        return str(ServiceInstanceIdResourceDetector().detect().attributes["service.instance.id"])
    except Exception:  # SDK without the detector
        return str(uuid.uuid4())


def _flush_after_lifespan(app: Any, manager: TelemetryManager) -> None:
    """Flush telemetry, within what is left of the exit budget, when ``app``'s lifespan ends.

    uvicorn handles SIGTERM by shutting down and then re-raising the signal with the default
    handler, which ends the process without running atexit: the atexit ``shutdown()`` never
    runs in ``docker stop``/Kubernetes/systemd, and the last spans, logs and metrics were lost.
    The lifespan shutdown is the last point the application reliably reaches. A flush, not a
    shutdown, so an app started and stopped several times in one process (tests) keeps working.

    The flush runs after the application's own lifespan shutdown (where the Telegram reporter's
    ``shutdown()`` sends its last reports) and gets what that left of
    :data:`~otel_trader.exit_budget.exit_budget`; the budget restarts when the lifespan starts.
    """
    router: Any = getattr(app, "router", None)
    original = getattr(router, "lifespan_context", None)
    if original is None:
        return

    @contextlib.asynccontextmanager
    async def lifespan(lifespan_app: Any) -> AsyncIterator[Any]:
        exit_budget.restart()  # a new run: its exit has the whole budget
        from .loop_health import monitor_event_loop

        loop_monitor = monitor_event_loop()  # None when TELEMETRY_LOOP_MONITOR=false
        try:
            async with original(lifespan_app) as state:
                from .gc_freeze import freeze_started_app, unfreeze

                frozen = freeze_started_app(manager.config.gc_freeze)
                try:
                    yield state
                finally:
                    if frozen:
                        unfreeze()
        finally:
            if loop_monitor is not None:
                loop_monitor.stop()
        from anyio import to_thread

        timeout = exit_budget.remaining(manager.config.shutdown_timeout_seconds)
        with exit_budget.spending():
            await to_thread.run_sync(manager.flush, timeout)

    router.lifespan_context = lifespan


def batch_options(config: TelemetryConfig, signal: str) -> dict[str, int]:
    """Keyword arguments of the SDK's batch processor for ``signal`` (``bsp`` spans, ``blrp`` logs).

    Passed explicitly, validated by the settings table: the SDK would read the same variables
    itself, and crash ``configure()`` on a negative or huge value. The batch is capped at the
    queue size, which the SDK otherwise rejects.
    """
    queue = getattr(config, f"{signal}_max_queue_size")
    return {
        "schedule_delay_millis": getattr(config, f"{signal}_schedule_delay_ms"),
        "max_queue_size": queue,
        "max_export_batch_size": min(queue, getattr(config, f"{signal}_max_export_batch_size")),
        "export_timeout_millis": getattr(config, f"{signal}_export_timeout_ms"),
    }


def build_span_limits(config: TelemetryConfig) -> Any:
    """The SDK's span limits from the environment, with string attributes capped by default.

    The SDK keeps attribute values of any length unless told otherwise: one client sending a
    100 KB URL then makes every span of that request (and its export batch) 100 KB.
    """
    from opentelemetry.sdk.trace import SpanLimits

    limit = config.attribute_value_length_limit
    return SpanLimits(
        max_attributes=config.attribute_count_limit,
        max_span_attributes=config.attribute_count_limit,
        max_events=config.span_event_count_limit,
        max_links=config.span_link_count_limit,
        max_event_attributes=config.event_attribute_count_limit,
        max_link_attributes=config.link_attribute_count_limit,
        max_attribute_length=limit,
        max_span_attribute_length=limit,
    )


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
    name = config.traces_sampler
    if name not in _SUPPORTED_SAMPLERS:
        logger.warning(
            "otel-trader: OTEL_TRACES_SAMPLER=%s is not available in OpenTelemetry Python; "
            "using parentbased_traceidratio (TRACE_SAMPLE_RATIO=%g) instead",
            name,
            config.sample_ratio,
        )
        name = "parentbased_traceidratio"
    return {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(ratio),
    }[name]


_SUPPORTED_SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)


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
    """Instrument a FastAPI app from the environment; a no-op unless TELEMETRY_ENABLED=true.

    With ``TELEGRAM_ERROR_REPORTING_ENABLED=true`` it also starts Telegram error reporting for
    the app (with or without telemetry); invalid Telegram settings raise ConfigError here.
    """
    manager = get_telemetry_manager()
    from .telegram.app import attach_error_reporting

    attach_error_reporting(app, manager)
    return manager.instrument_app(app)
