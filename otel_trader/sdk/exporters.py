"""Builds the span, metric and log exporters for the configured destination.

Each exporter is wrapped in :class:`ForkSafe`, so a process forked after configuration
(gunicorn ``--preload``, multiprocessing) gets a fresh gRPC channel or HTTP session instead of
sharing the parent's, which gRPC does not allow.

While the collector is unreachable the OTLP exporters log every retry and every failed batch,
per signal, every few seconds. :class:`ExportHealth` replaces that with one warning when exports
start failing (carrying the exporter's last error) and one info line when they recover.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_trader.settings import TelemetryConfig

__all__ = ["ExportHealth", "ForkSafe", "build_exporters"]

logger = logging.getLogger("otel_trader")

#: The loggers the OTLP exporters report retries and failed batches on.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
)
_EXPORT_NOISE = ("Transient error", "Failed to export", "Shutdown in progress", "Dropping ")

#: (markers in the exporter's error text, what it means for the user). First match wins.
_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("larger than max", "exceeds max_request_size", "413"),
        "the collector rejected a batch as too large; that batch is dropped, later ones still go",
    ),
    (
        ("RESOURCE_EXHAUSTED", "429"),
        "the collector refused data (overloaded, e.g. its memory limiter); refused batches are dropped",
    ),
    (
        ("UNAUTHENTICATED", "PERMISSION_DENIED", "401", "403"),
        "the collector rejected the credentials; check OTLP_HEADERS",
    ),
    (
        ("UNIMPLEMENTED", "404"),
        "nothing serves OTLP for this protocol at that address; check OTLP_ENDPOINT and OTLP_PROTOCOL",
    ),
    (
        ("INVALID_ARGUMENT", "400"),
        "the collector rejected the data as invalid; those batches are dropped",
    ),
)
_UNREACHABLE = "the collector is unreachable; telemetry is dropped until it is reachable"


def failure_cause(error_text: str) -> str:
    """What an exporter's error text means for the user, in words (unreachable unless it says otherwise)."""
    for markers, meaning in _CAUSES:
        if any(marker in error_text for marker in markers):
            return meaning
    return _UNREACHABLE


class ExportHealth(logging.Filter):
    """Collector reachability as the exports see it: warn once when they fail, once when they recover.

    Installed as a filter on the OTLP exporter loggers, it swallows their per-attempt messages
    (kept as the detail of its own warning, and re-logged at DEBUG on ``otel_trader``). After a
    recovery, a new outage is warned about again only if the last warning is ``rewarn_after``
    seconds old, so a flapping collector cannot flood the application log either.
    """

    def __init__(self, endpoint: str, rewarn_after: float = 300.0) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.rewarn_after = rewarn_after
        self.failing = False
        self.last_error = ""
        self._warned_at: float | None = None
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Swallow the exporters' retry/failure lines (logging filter protocol)."""
        message = record.getMessage()
        if not message.startswith(_EXPORT_NOISE):
            return True
        self.last_error = message
        logger.debug("otel-trader: %s", message)
        return False

    def report(self, signal: str, ok: bool) -> None:
        """Record whether one export of ``signal`` succeeded."""
        with self._lock:
            if ok == (not self.failing):
                return
            self.failing = not ok
            now = time.monotonic()
            if ok:
                logger.info("otel-trader: OTLP collector at %s is reachable again", self.endpoint)
                return
            if self._warned_at is not None and now - self._warned_at < self.rewarn_after:
                return
            self._warned_at = now
        logger.warning(
            "otel-trader: cannot export %s to the OTLP collector at %s: %s (%s). The application "
            "is not affected. This is logged once; details per attempt at DEBUG on the "
            "'otel_trader' logger.",
            signal,
            self.endpoint,
            failure_cause(self.last_error),
            self.last_error or "export failed",
        )

    def install(self) -> ExportHealth:
        """Attach to the exporter loggers, replacing a previously installed instance."""
        global _installed_health
        for name in _EXPORTER_LOGGERS:
            target = logging.getLogger(name)
            if _installed_health is not None:
                target.removeFilter(_installed_health)
            target.addFilter(self)
        _installed_health = self
        return self


_installed_health: ExportHealth | None = None


class ForkSafe:
    """An exporter proxy that re-creates the real exporter in a forked child.

    The SDK's batch processors and periodic reader restart their own threads after fork;
    this handles the transport underneath them.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        health: ExportHealth | None = None,
        signal: str = "telemetry",
        size_of: Callable[[Any], int] | None = None,
    ) -> None:
        self._factory = factory
        self._health = health
        self._signal = signal
        #: Estimates one item's encoded size; batches are then cut under MAX_REQUEST_BYTES.
        self._size_of = size_of
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
        """Export through this process's exporter, reporting the outcome to the health tracker.

        A batch whose estimated encoded size passes MAX_REQUEST_BYTES goes out as several
        requests; the result is a failure when any of them failed.
        """
        chunks = split_by_size(batch, self._size_of, MAX_REQUEST_BYTES) if self._size_of else [batch]
        result: Any = None
        for chunk in chunks:
            outcome = self._reported(lambda: self.inner.export(chunk, *args, **kwargs))  # noqa: B023 - called at once
            if result is None or getattr(outcome, "name", None) != "SUCCESS":
                result = outcome
        return result

    def export_packed(self, items: Any, packer: Any, scrub: Any = None) -> Any:
        """Export packed spans (``span_queue.export_packed``) through this process's exporter."""
        if self._size_of is not None:
            return NotImplemented  # batches are cut here, by estimated size of the spans
        from otel_trader.sdk.span_queue import export_packed

        return self._reported(lambda: export_packed(self.inner, items, packer, scrub))

    def span_encoder(self, scrub: bool = False) -> Any:
        """This process's exporter's span encoder (``span_queue.span_encoder``)."""
        if self._size_of is not None:
            return None
        from otel_trader.sdk.span_queue import span_encoder

        return span_encoder(self.inner, scrub)

    def _reported(self, export: Callable[[], Any]) -> Any:
        """``export()``'s result, reported to the health tracker (NotImplemented: nothing was sent)."""
        try:
            result = export()
        except Exception:
            if self._health is not None:
                self._health.report(self._signal, False)
            raise
        if result is not NotImplemented and self._health is not None:
            # Span, metric and log export results are all enums with SUCCESS and FAILURE.
            self._health.report(self._signal, getattr(result, "name", None) == "SUCCESS")
        return result

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.shutdown(*args, **kwargs)

    def force_flush(self, timeout_millis: int = 30_000) -> Any:
        flush = getattr(self.inner, "force_flush", None)
        return flush(timeout_millis) if flush else True

    def __getattr__(self, name: str) -> Any:
        # Metric readers read preferred temporality/aggregation off the exporter.
        return getattr(self.inner, name)


#: Estimated bytes per span or log request. gRPC servers (the collector included) reject
#: messages over 4 MiB by default and the HTTP exporters drop batches over theirs; the estimate
#: counts strings exactly and the protobuf framing roughly, so half the limit leaves room.
MAX_REQUEST_BYTES = 2 * 1024 * 1024


def split_by_size(batch: Any, size_of: Callable[[Any], int], limit: int) -> list[Any]:
    """Cut ``batch`` into consecutive chunks of at most ``limit`` estimated bytes (an item alone may pass it)."""
    chunks: list[Any] = []
    start, total = 0, 0
    for index, item in enumerate(batch):
        size = size_of(item)
        if total + size > limit and index > start:
            chunks.append(batch[start:index])
            start, total = index, 0
        total += size
    chunks.append(batch[start:] if start else batch)
    return chunks


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, (tuple, list)):
        return sum(_value_size(v) for v in value) + 2 * len(value)
    return 10


def _attributes_size(attributes: Any) -> int:
    if not attributes:
        return 0
    # Runs per attribute of every exported span: string values (nearly all) inline, and the
    # plain dict inside the SDK's BoundedAttributes iterated directly.
    size = 0
    for key, value in getattr(attributes, "_dict", attributes).items():
        if type(value) is str:
            size += len(key) + 8 + (len(value) if value.isascii() else len(value.encode("utf-8", "replace")))
        else:
            size += len(key) + 8 + _value_size(value)
    return size


def span_size(span: Any) -> int:
    """Estimated OTLP-encoded size of a ReadableSpan in bytes (strings exact, framing approximate)."""
    # The private fields of SDK spans when present: the public properties copy on every access.
    attributes = getattr(span, "_attributes", None)
    size = 160 + len(span.name) + _attributes_size(span.attributes if attributes is None else attributes)
    events = getattr(span, "_events", None)
    for event in span.events if events is None else events:
        size += 24 + len(event.name) + _attributes_size(event.attributes)
    links = getattr(span, "_links", None)
    for link in span.links if links is None else links:
        size += 48 + _attributes_size(link.attributes)
    description = span.status.description
    return size + (len(description) if description else 0)


def log_size(record: Any) -> int:
    """Estimated OTLP-encoded size of a ReadableLogRecord in bytes."""
    log = getattr(record, "log_record", record)
    return 120 + _value_size(log.body) + _attributes_size(log.attributes)


#: Data points per OTLP/gRPC metric request. gRPC servers (the collector included) reject messages
#: over 4 MiB by default, which an unsplit export passes at ≈ 85,000 points; 20,000 is ≈ 1 MiB.
METRIC_POINTS_PER_REQUEST = 20_000


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
    if config.otlp_protocol == "http/json":
        logger.warning(
            "otel-trader: OTEL_EXPORTER_OTLP_PROTOCOL=http/json is not available in OpenTelemetry "
            "Python; sending http/protobuf to %s (collectors accept both on the same port)",
            target.endpoint,
        )
    headers = dict(config.otlp_headers) or None
    timeout = config.otlp_timeout_seconds
    health = ExportHealth(target.endpoint).install()
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetrics,
        )

        from otel_trader.sdk.span_encoding import fast_grpc_span_exporter

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
            # Cut under MAX_REQUEST_BYTES by the exporter itself, at the exact encoded size.
            ForkSafe(
                lambda: fast_grpc_span_exporter(**common, max_request_bytes=MAX_REQUEST_BYTES),
                health,
                "spans",
            ),
            ForkSafe(
                lambda: GrpcMetrics(**common, max_export_batch_size=METRIC_POINTS_PER_REQUEST),
                health,
                "metrics",
            ),
            ForkSafe(lambda: GrpcLogs(**common), health, "logs", log_size),
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
            ),
            health,
            {"traces": "spans"}.get(signal, signal),
            {"traces": span_size, "logs": log_size}.get(signal),
        )

    return http(HttpSpans, "traces"), http(HttpMetrics, "metrics"), http(HttpLogs, "logs")
