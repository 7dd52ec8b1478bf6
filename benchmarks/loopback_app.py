"""The FastAPI app that ``benchmarks/loopback.py`` serves with uvicorn, one variant per process.

``BENCH_VARIANT`` picks the instrumentation (see ``loopback.VARIANTS``); the OTLP endpoint and
everything else come from the environment the driver sets, the way a deployment configures them.
``GET /_bench/gc`` returns the cyclic GC's collections and pause times since the previous call
(recorded with ``gc.callbacks``), so each measured window reports its own full collections.

    BENCH_VARIANT=full TELEMETRY_ENABLED=true uvicorn --app-dir benchmarks loopback_app:app
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from fastapi import FastAPI


class GcRecorder:
    """Counts collections per generation and their pause times (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.counts = [0, 0, 0]
        self.pauses: list[list[float]] = [[], [], []]
        self.collected = [0, 0, 0]
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        generation = info["generation"]
        self.counts[generation] += 1
        self.collected[generation] += info["collected"]
        self.pauses[generation].append(time.perf_counter() - self.started)

    def take(self) -> dict[str, Any]:
        """What happened since the previous call, then start over."""
        out = {
            "collections": list(self.counts),
            "collected": list(self.collected),
            "pause_max_ms": [max(p, default=0.0) * 1e3 for p in self.pauses],
            "pause_sum_ms": [sum(p) * 1e3 for p in self.pauses],
            "tracked_objects": len(gc.get_objects()),
            "frozen_objects": gc.get_freeze_count(),
        }
        self.counts = [0, 0, 0]
        self.collected = [0, 0, 0]
        self.pauses = [[], [], []]
        return out


recorder = GcRecorder()
variant = os.environ.get("BENCH_VARIANT", "bare")
app = FastAPI()


@app.get("/orders/{oid}")
async def order(oid: str) -> dict[str, Any]:
    return {"oid": oid, "qty": 1, "side": "buy"}


@app.get("/_bench/gc")
async def gc_stats() -> dict[str, Any]:
    return recorder.take()


def _contrib(app: FastAPI) -> None:
    """The contrib stack as its docs set it up: SDK providers, OTLP/gRPC batch export, Prometheus."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_client import make_asgi_app

    endpoint = os.environ["OTLP_ENDPOINT"]
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    trace.set_tracer_provider(provider)
    readers = [
        PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True)),
        PrometheusMetricReader(),
    ]
    metrics.set_meter_provider(MeterProvider(metric_readers=readers))
    FastAPIInstrumentor.instrument_app(app, excluded_urls="/metrics,/_bench/gc")
    app.mount("/metrics", make_asgi_app())


if variant == "pfi":
    from prometheus_fastapi_instrumentator import Instrumentator

    Instrumentator(excluded_handlers=["/metrics", "/_bench/gc"]).instrument(app).expose(app)
elif variant == "contrib":
    _contrib(app)
elif variant != "bare":
    import otel_trader

    otel_trader.instrument_app(app)
