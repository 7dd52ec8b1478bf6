"""Builds the span, metric and log exporters for the configured destination.

Each exporter is wrapped in :class:`ForkSafe`, so a process forked after configuration
(gunicorn ``--preload``, multiprocessing) gets a fresh gRPC channel or HTTP session instead of
sharing the parent's, which gRPC does not allow.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .settings import TelemetryConfig

__all__ = ["ForkSafe", "build_exporters"]


class ForkSafe:
    """An exporter proxy that re-creates the real exporter in a forked child.

    The SDK's batch processors and periodic reader restart their own threads after fork;
    this handles the transport underneath them.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._exporter = factory()

    @property
    def inner(self) -> Any:
        """The real exporter for this process."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._exporter = self._factory()
                    self._pid = os.getpid()
        return self._exporter

    def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        return self.inner.export(batch, *args, **kwargs)

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.shutdown(*args, **kwargs)

    def force_flush(self, timeout_millis: int = 30_000) -> Any:
        flush = getattr(self.inner, "force_flush", None)
        return flush(timeout_millis) if flush else True

    def __getattr__(self, name: str) -> Any:
        # Metric readers read preferred temporality/aggregation off the exporter.
        return getattr(self.inner, name)


def build_exporters(config: TelemetryConfig) -> tuple[Any, Any, Any] | None:
    """Return (span, metric, log) exporters for ``config.exporter``, or ``None`` for ``none``."""
    if config.exporter == "none":
        return None
    if config.exporter == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(), ConsoleMetricExporter(), ConsoleLogRecordExporter()

    target = config.otlp
    headers = dict(config.otlp_headers) or None
    timeout = config.otlp_timeout_seconds
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetrics,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpans,
        )

        credentials = None
        if not target.insecure:
            import grpc

            ca = Path(config.otlp_certificate).read_bytes() if config.otlp_certificate else None
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        common: dict[str, Any] = dict(
            endpoint=target.endpoint,
            insecure=target.insecure,
            credentials=credentials,
            headers=headers,
            timeout=timeout,
        )
        return (
            ForkSafe(lambda: GrpcSpans(**common)),
            ForkSafe(lambda: GrpcMetrics(**common)),
            ForkSafe(lambda: GrpcLogs(**common)),
        )

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetrics,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    base = target.endpoint

    def http(cls: Any, signal: str) -> ForkSafe:
        return ForkSafe(
            lambda: cls(
                endpoint=f"{base}/v1/{signal}",
                headers=headers,
                timeout=timeout,
                certificate_file=config.otlp_certificate,
            )
        )

    return http(HttpSpans, "traces"), http(HttpMetrics, "metrics"), http(HttpLogs, "logs")
