"""Spans dropped by a full batch queue are counted and visible on ``/metrics``."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import otel_trader

QUEUE = 8
SPANS = 100


class BlockingExporter(SpanExporter):
    """Takes one batch, then blocks in ``export`` until released: the collector is stuck."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.received: list[int] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.received.append(len(spans))
        self.entered.set()
        self.release.wait(10)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def sample_values(text: str, family: str, **labels: str) -> list[float]:
    return [
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
        if s.name.endswith(("_total", family)) and all(s.labels.get(k) == v for k, v in labels.items())
    ]


@pytest.mark.timeout(30)
def test_queue_full_drops_are_counted(
    reset_otel: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Only the queue size: otel-trader must cap the export batch (512 by default) at the queue
    # size itself, or the SDK's BatchSpanProcessor refuses to start.
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", str(QUEUE))
    exporter = BlockingExporter()
    manager = otel_trader.configure(
        enabled=True, exporter="none", service_name="drops", span_exporter=exporter
    )
    try:
        tracer = manager.tracer_provider.get_tracer("drops")  # type: ignore[union-attr]
        # Fill one batch; the worker takes it and blocks in export().
        for _ in range(QUEUE):
            tracer.start_span("s").end()
        assert exporter.entered.wait(5), "the batch worker never called export()"
        taken = sum(exporter.received)
        for _ in range(SPANS - QUEUE):
            tracer.start_span("s").end()

        text = generate_latest(REGISTRY).decode()
        (queued,) = sample_values(text, "otel_sdk_processor_span_queue_size")
        (dropped,) = sample_values(text, "otel_sdk_processor_span_processed", error_type="queue_full")
        # Every span is either with the exporter, still queued, or dropped, and the count is exact.
        assert taken == QUEUE and queued == QUEUE
        assert dropped == SPANS - taken - queued == 84
        # One warning (at the first drop, with its count), not one per dropped span on the request path.
        full = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage().lower()]
        assert len(full) == 1 and "span export queue full, 1 spans dropped" in full[0], full
    finally:
        exporter.release.set()
        manager.shutdown(timeout=5)


def test_queue_smaller_than_batch_for_logs_too(reset_otel: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same cap for the log batch processor (OTEL_BLRP_MAX_QUEUE_SIZE)."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "16")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "16")
    logs: Any = InMemoryLogRecordExporter()
    manager = otel_trader.configure(enabled=True, exporter="none", log_exporter=logs, span_exporter=BlockingExporter())
    try:
        assert manager.logger_provider is not None
    finally:
        manager.shutdown(timeout=5)
