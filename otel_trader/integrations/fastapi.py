"""FastAPI: RED metrics middleware, exactly one server span per request, ``/metrics``.

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

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from ..middleware import MonitoringMiddleware
from ..prometheus import MetricsEndpoint

if TYPE_CHECKING:
    from ..manager import TelemetryManager

__all__ = ["instrument_fastapi", "native_telemetry_config"]


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
        app.add_route(
            config.metrics_path, MetricsEndpoint(manager.prometheus_registry), include_in_schema=False
        )
