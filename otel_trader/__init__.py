"""otel-trader: OpenTelemetry traces, metrics, logs and error alerts for FastAPI trading services.

import otel_trader
otel_trader.instrument_app(app)      # reads the environment; a no-op unless TELEMETRY_ENABLED=true
"""

from __future__ import annotations

from otel_trader import trading
from otel_trader.redaction import add_redact_keys
from otel_trader.sdk.manager import TelemetryManager, configure, get_telemetry_manager, instrument_app
from otel_trader.sdk.metric_helpers import (
    observe_gauge,
    record_counter,
    record_histogram,
    record_up_down,
    set_gauge,
)
from otel_trader.sdk.span_helpers import add_span_attribute, trace_operation
from otel_trader.settings import ConfigError, TelemetryConfig
from otel_trader.telegram import TelegramErrorReporter, TelegramLogHandler, get_error_reporter
from otel_trader.trading import LabelValueError
from otel_trader.trading.redis_pool import RedisPoolMonitor
from otel_trader.web.middleware import MonitoringMiddleware, RequestInfo

# web/health.py needs FastAPI (an optional extra): imported on first use of these names.
_LAZY = {
    "health_router": "otel_trader.web.health",
    "make_health_router": "otel_trader.web.health",
    "register_health_dependencies": "otel_trader.web.health",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "LabelValueError",
    "MonitoringMiddleware",
    "RedisPoolMonitor",
    "RequestInfo",
    "TelemetryConfig",
    "TelegramErrorReporter",
    "TelegramLogHandler",
    "TelemetryManager",
    "add_redact_keys",
    "add_span_attribute",
    "configure",
    "get_error_reporter",
    "get_telemetry_manager",
    "health_router",
    "instrument_app",
    "make_health_router",
    "observe_gauge",
    "record_counter",
    "record_histogram",
    "record_up_down",
    "register_health_dependencies",
    "set_gauge",
    "trace_operation",
    "trading",
]
