"""Metric helpers with instruments cached by name: counters, histograms, gauges.

Names follow what users chart in Prometheus: ``record_counter("orders_total", ...)`` is
``orders_total`` at ``/metrics``; a dotted OTel name like ``orders.processed`` becomes
``orders_processed_total``. Without configured telemetry every call is a cheap no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

__all__ = [
    "get_meter",
    "observe_gauge",
    "record_counter",
    "record_histogram",
    "record_up_down",
    "set_gauge",
]

_METER_NAME = "otel_trader"
_instruments: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def get_meter() -> metrics.Meter:
    """The otel-trader meter of the current global MeterProvider."""
    return metrics.get_meter(_METER_NAME)


def refresh() -> None:
    """Forget cached instruments so the next call binds to the newly installed provider."""
    with _lock:
        _instruments.clear()


def _instrument(kind: str, name: str, make: Callable[[metrics.Meter], Any]) -> Any:
    key = (kind, name)
    instrument = _instruments.get(key)
    if instrument is None:
        with _lock:
            instrument = _instruments.get(key)
            if instrument is None:
                instrument = make(get_meter())
                _instruments[key] = instrument
    return instrument


def record_counter(
    name: str,
    value: float = 1,
    attributes: dict[str, Any] | None = None,
    *,
    unit: str = "",
    description: str = "",
) -> None:
    """Add ``value`` (≥ 0) to the counter ``name``."""
    _instrument(
        "counter", name, lambda m: m.create_counter(name, unit=unit, description=description)
    ).add(value, attributes)


def record_up_down(
    name: str,
    value: float,
    attributes: dict[str, Any] | None = None,
    *,
    unit: str = "",
    description: str = "",
) -> None:
    """Add a signed ``value`` to the up-down counter ``name`` (a gauge in Prometheus)."""
    _instrument(
        "updown",
        name,
        lambda m: m.create_up_down_counter(name, unit=unit, description=description),
    ).add(value, attributes)


def record_histogram(
    name: str,
    value: float,
    attributes: dict[str, Any] | None = None,
    *,
    unit: str = "",
    description: str = "",
    buckets: Sequence[float] | None = None,
) -> None:
    """Record ``value`` into the histogram ``name``.

    ``buckets`` sets explicit bucket boundaries the first time the histogram is used
    (e.g. ``(0.1, 0.5, 1, 2, 5, 10)`` for seconds); OTel's default boundaries suit milliseconds.
    """
    _instrument(
        "histogram",
        name,
        lambda m: m.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=list(buckets) if buckets else None,
        ),
    ).record(value, attributes)


def set_gauge(
    name: str,
    value: float,
    attributes: dict[str, Any] | None = None,
    *,
    unit: str = "",
    description: str = "",
) -> None:
    """Set the gauge ``name`` to ``value`` for ``attributes``."""
    _instrument(
        "gauge", name, lambda m: m.create_gauge(name, unit=unit, description=description)
    ).set(value, attributes)


def observe_gauge(
    name: str,
    callback: Callable[[], Iterable[tuple[float, dict[str, Any] | None]] | float],
    *,
    unit: str = "",
    description: str = "",
) -> None:
    """Register an observable gauge read at export time.

    ``callback()`` returns a number, or an iterable of ``(value, attributes)`` pairs.
    """

    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        result = callback()
        if isinstance(result, (int, float)):
            return [Observation(result)]
        return [Observation(value, attrs) for value, attrs in result]

    _instrument(
        "observable_gauge",
        name,
        lambda m: m.create_observable_gauge(
            name, callbacks=[observe], unit=unit, description=description
        ),
    )
