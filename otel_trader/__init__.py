"""otel-trader: OpenTelemetry traces, metrics, logs and error alerts for FastAPI trading services.

    import otel_trader
    otel_trader.instrument_app(app)      # reads the environment; a no-op unless TELEMETRY_ENABLED=true
"""

from __future__ import annotations

from .manager import TelemetryManager, configure, get_telemetry_manager, instrument_app
from .metrics import observe_gauge, record_counter, record_histogram, record_up_down, set_gauge
from .middleware import MonitoringMiddleware, RequestInfo
from .redaction import add_redact_keys
from .settings import ConfigError, TelemetryConfig
from .tracing import add_span_attribute, trace_operation

__all__ = [
    "ConfigError",
    "MonitoringMiddleware",
    "RequestInfo",
    "TelemetryConfig",
    "TelemetryManager",
    "add_redact_keys",
    "add_span_attribute",
    "configure",
    "get_telemetry_manager",
    "instrument_app",
    "observe_gauge",
    "record_counter",
    "record_histogram",
    "record_up_down",
    "set_gauge",
    "trace_operation",
]
