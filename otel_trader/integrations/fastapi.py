"""FastAPI: RED metrics middleware, exactly one server span per request, ``/metrics``, and a
telemetry flush when the app's lifespan ends.

FastAPI ≥ 0.142 ships native OpenTelemetry that switches itself on as soon as global providers
exist (a SERVER span, its own duration/active-request metrics, exception logs, and per-request
operation spans). Left alone next to any other instrumentation it double-traces and
double-counts. ``instrument_app`` therefore decides once, per app, who makes the server span:

* by default our middleware does (measured cheaper, see ``benchmarks/overhead.py``), and native
  telemetry is switched off for the app;
* with ``FASTAPI_OPERATION_SPANS=true`` native telemetry makes the server span and the operation
  spans, and our middleware only records RED metrics and reports errors under it.

Native metrics and native exception logs are always off: RED metrics and error reporting are ours.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import TYPE_CHECKING, Any

from otel_trader.sdk.exit_budget import exit_budget
from otel_trader.web.middleware import MonitoringMiddleware
from otel_trader.web.prometheus import MetricsEndpoint, clashing_names

if TYPE_CHECKING:
    from otel_trader.sdk.manager import TelemetryManager

__all__ = ["flush_after_lifespan", "instrument_fastapi", "native_telemetry_config"]

logger = logging.getLogger("otel_trader")


def native_telemetry_config(app: Any) -> MutableMapping[str, Any] | None:
    """FastAPI's native telemetry settings for ``app`` (a live dict), or None on FastAPI < 0.142."""
    config = getattr(app, "_telemetry", None)
    if isinstance(config, dict) and hasattr(app, "_native_telemetry"):
        return config
    return None


def instrument_fastapi(app: Any, manager: TelemetryManager) -> None:
    """Add the middleware and the metrics route to ``app`` according to ``manager.config``."""
    config = manager.config
    tracing = config.integration_enabled("fastapi")
    native = native_telemetry_config(app)
    native_span = tracing and native is not None and config.operation_spans
    if native is not None:
        excluded = MonitoringMiddleware(None, excluded_paths=config.excluded_paths)._excluded
        native.update(
            tracing=native_span,
            operation_spans=native_span,
            metrics=False,
            logs=False,
            exclude=lambda scope: excluded(scope.get("path", "")),
        )
    app.add_middleware(
        MonitoringMiddleware,
        server_span=tracing and not native_span,
        excluded_paths=config.excluded_paths,
        error_hooks=manager.error_hooks,
    )
    if config.prometheus_enabled:
        _warn_clashing_metrics(manager.prometheus_registry)
        if _has_own_route(app, config.metrics_path):
            # The app's route comes first and would shadow ours without a word.
            logger.warning(
                "otel-trader: the application already serves %s; otel-trader does not add its own. "
                "A prometheus_client make_asgi_app() there shows otel-trader's metrics too (same "
                "default registry); set METRICS_PATH to serve otel-trader's elsewhere",
                config.metrics_path,
            )
        else:
            from otel_trader.web.multiprocess import install as share_between_workers

            # Under several workers each scrape reaches one of them: serve the merge of all.
            served = share_between_workers(app, manager)
            app.add_route(config.metrics_path, MetricsEndpoint(served), include_in_schema=False)


#: Families the middleware emits; an application metric of the same name is found at start-up.
_HTTP_FAMILIES = ("http_requests_total", "http_request_duration_seconds")


def _warn_clashing_metrics(registry: Any) -> None:
    for name in clashing_names(registry, _HTTP_FAMILIES):
        logger.warning(
            "otel-trader: the application defines its own prometheus_client metric %r, which "
            "otel-trader's middleware also records; /metrics will serve the application's only. "
            "Remove or rename it (otel-trader's has labels method, path, status)",
            name,
        )


def _has_own_route(app: Any, path: str) -> bool:
    stripped = path.rstrip("/") or "/"
    for route in getattr(getattr(app, "router", None), "routes", ()):
        route_path = getattr(route, "path", None)
        if isinstance(route_path, str) and (route_path.rstrip("/") or "/") == stripped:
            return True
    return False


def flush_after_lifespan(app: Any, manager: TelemetryManager) -> None:
    """Flush telemetry, within what is left of the exit budget, when ``app``'s lifespan ends.

    uvicorn handles SIGTERM by shutting down and then re-raising the signal with the default
    handler, which ends the process without running atexit: the atexit ``shutdown()`` never
    runs in ``docker stop``/Kubernetes/systemd, and the last spans, logs and metrics were lost.
    The lifespan shutdown is the last point the application reliably reaches. A flush, not a
    shutdown, so an app started and stopped several times in one process (tests) keeps working.

    The flush runs after the application's own lifespan shutdown (where the Telegram reporter's
    ``shutdown()`` sends its last reports) and gets what that left of
    :data:`~otel_trader.sdk.exit_budget.exit_budget`; the budget restarts when the lifespan starts.
    """
    router: Any = getattr(app, "router", None)
    original = getattr(router, "lifespan_context", None)
    if original is None:
        return

    @contextlib.asynccontextmanager
    async def lifespan(lifespan_app: Any) -> AsyncIterator[Any]:
        exit_budget.restart()  # a new run: its exit has the whole budget
        from otel_trader.trading.loop_health import monitor_event_loop

        loop_monitor = monitor_event_loop()  # None when TELEMETRY_LOOP_MONITOR=false
        try:
            async with original(lifespan_app) as state:
                from otel_trader.sdk.gc_freeze import freeze_started_app, unfreeze

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
