"""Process and Python runtime metrics as OTel observable instruments.

They carry prometheus_client's names (``process_resident_memory_bytes``,
``process_cpu_seconds_total``, ``python_gc_objects_collected_total``, ``python_info``…) and its
values (its collectors are the readers, called once per export), so dashboards written for
prometheus_client work unchanged, both on ``/metrics`` and on the collector's endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

__all__ = ["register_runtime_metrics"]


class _Snapshot:
    """One read of all runtime collectors, shared by every instrument's callback in an export."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

        # A private registry: the collectors insist on registering somewhere, and only we read them.
        private = CollectorRegistry(auto_describe=False)
        self._collectors = [
            ProcessCollector(registry=private),
            GCCollector(registry=private),
            PlatformCollector(registry=private),
        ]
        self._lock = threading.Lock()
        self._taken = 0.0
        self._families: dict[str, Any] = {}

    def families(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if now - self._taken > 0.5:
                self._families = {
                    family.name: family for collector in self._collectors for family in collector.collect()
                }
                self._taken = now
            return self._families


def register_runtime_metrics(meter_provider: MeterProvider) -> None:
    """Create the observable instruments on ``meter_provider``."""
    snapshot = _Snapshot()
    meter = meter_provider.get_meter("otel_trader.runtime")

    def reader(name: str) -> Any:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            family = snapshot.families().get(name)
            if family is None:
                return []
            return [
                Observation(sample.value, sample.labels)
                for sample in family.samples
                if sample.name in (name, name + "_total")
            ]

        return observe

    for name, family in snapshot.families().items():
        if family.type == "counter":
            # OTel counters get "_total" appended by both Prometheus exporters.
            meter.create_observable_counter(name, callbacks=[reader(name)], description=family.documentation)
        else:
            meter.create_observable_gauge(name, callbacks=[reader(name)], description=family.documentation)
