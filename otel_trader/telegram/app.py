"""Telegram reporting started with the app: what ``instrument_app`` does when it is enabled.

With ``TELEGRAM_ERROR_REPORTING_ENABLED=true`` the five lines must be enough: the reporter is
built at start-up (invalid settings raise :class:`otel_trader.ConfigError` there, not at the
first error), its hook is installed, and it is started and stopped by the app's lifespan. With
telemetry off the error hook still needs a middleware to call it: a metrics-free, span-free
:class:`~otel_trader.web.middleware.MonitoringMiddleware` is added for that.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from otel_trader.telegram.process import get_error_reporter
from otel_trader.telegram.reporter import TelegramErrorReporter

if TYPE_CHECKING:
    from otel_trader.sdk.manager import TelemetryManager

__all__ = ["attach_error_reporting"]


def attach_error_reporting(app: Any, manager: TelemetryManager) -> TelegramErrorReporter | None:
    """Install and lifespan-start the environment's reporter for ``app``; None when reporting is off.

    Call before the telemetry flush is attached to the lifespan, so that at shutdown the reporter
    sends its last reports first and the telemetry flush follows (one exit budget for both).
    """
    reporter = get_error_reporter()
    if reporter is None or not reporter.enabled or getattr(app, "_otel_trader_telegram", False):
        return reporter
    app._otel_trader_telegram = True
    reporter.install(manager, middleware_added=True)
    if not manager:
        from otel_trader.web.middleware import MonitoringMiddleware

        app.add_middleware(
            MonitoringMiddleware, server_span=False, excluded_paths=(), error_hooks=manager.error_hooks
        )
    _run_with_lifespan(app, reporter)
    return reporter


def _run_with_lifespan(app: Any, reporter: TelegramErrorReporter) -> None:
    router: Any = getattr(app, "router", None)
    original = getattr(router, "lifespan_context", None)
    if original is None:
        return

    @contextlib.asynccontextmanager
    async def lifespan(lifespan_app: Any) -> AsyncIterator[Any]:
        await reporter.initialize()
        try:
            async with original(lifespan_app) as state:
                yield state
        finally:
            await reporter.shutdown()

    router.lifespan_context = lifespan
