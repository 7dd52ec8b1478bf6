"""Metric helpers with instruments cached by name: counters, histograms, gauges.

Names follow what users chart in Prometheus: ``record_counter("orders_total", ...)`` is
``orders_total`` at ``/metrics``; a dotted OTel name like ``orders.processed`` becomes
``orders_processed_total``. Without configured telemetry every call is a cheap no-op.

Every instrument made here has a cardinality limit (``TELEMETRY_METRIC_CARDINALITY_LIMIT``,
default :data:`DEFAULT_CARDINALITY_LIMIT`, the OpenTelemetry specification's default): it keeps
at most ``limit - 1`` distinct attribute sets, and measurements with any further new set are
recorded in one overflow series whose only attribute is ``otel.metric.overflow=true``, so totals
stay right (``sum(orders_total)``) while the overflowed part has no labels. Attribute sets seen
before the limit was reached keep their series. The first overflow of an instrument logs one
warning naming it; every overflowed measurement adds one to
``otel_trader_metric_overflow_total{metric}``. The SDK (1.45.1) has no limit of its own: without
one, a label fed from data (a user id, an order id) grows memory, ``/metrics`` and scrape time
without bound. (SDK 1.45.2 adds a limit of 2000 per metric stream, applied after this one: a
setting above 2000 then has no effect beyond it.)

Attribute values under sensitive keys (:func:`otel_trader.redaction.is_sensitive_key`:
``api_key``, ``token``, ``signature``, …) are recorded as ``REDACTED``. Both decisions are made
once per distinct attribute set and cached (at most ``limit`` sets per instrument), so a
repeated measurement costs a tuple of its items and one dict lookup (≈ 0.3 µs). Keys added
with ``add_redact_keys`` apply to attribute sets not recorded before; add them at start-up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from otel_trader import redaction

__all__ = [
    "DEFAULT_CARDINALITY_LIMIT",
    "OVERFLOW_ATTRIBUTES",
    "get_meter",
    "observe_gauge",
    "record_counter",
    "record_histogram",
    "record_up_down",
    "set_gauge",
]

logger = logging.getLogger("otel_trader")

_METER_NAME = "otel_trader"
#: Attribute sets per instrument, the overflow series included (OpenTelemetry's default).
DEFAULT_CARDINALITY_LIMIT = 2000
#: The only attribute of the overflow series (``otel_metric_overflow="true"`` in Prometheus).
OVERFLOW_ATTRIBUTES: Mapping[str, Any] = {"otel.metric.overflow": True}

_instruments: dict[tuple[str, str], _Bounded] = {}
_lock = threading.Lock()
_limit = DEFAULT_CARDINALITY_LIMIT
_overflow_counter_provider: object = None

#: Cache entry meaning "record the caller's attributes unchanged".
_AS_GIVEN: Mapping[str, Any] = {}
_NO_ATTRIBUTES: frozenset[Any] = frozenset()
_SEQUENCE = object()  # tags list values in cache keys, so ["a"] and "['a']" never share a key


def get_meter() -> metrics.Meter:
    """The otel-trader meter of the current global MeterProvider."""
    return metrics.get_meter(_METER_NAME)


def refresh(cardinality_limit: int | None = None) -> None:
    """Forget cached instruments so the next call binds to the newly installed provider.

    ``cardinality_limit`` sets the attribute sets kept per instrument from now on (default
    :data:`DEFAULT_CARDINALITY_LIMIT`).
    """
    global _limit
    if cardinality_limit is not None and cardinality_limit < 1:
        raise ValueError(f"cardinality_limit must be at least 1, got {cardinality_limit}")
    with _lock:
        _instruments.clear()
        _limit = cardinality_limit or DEFAULT_CARDINALITY_LIMIT


def reset_series() -> None:
    """Forget the attribute sets each instrument has seen and its overflow count, keeping the instruments.

    For a forked child, whose SDK aggregations are emptied too (``fork_state``): it must not
    believe the parent's attribute sets still take up its limit.
    """
    global _lock
    _lock = threading.Lock()
    for bounded in list(_instruments.values()):
        bounded.reset()


def _redacted(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """A copy with sensitive keys' values replaced by ``REDACTED``, or None when none is sensitive.

    Runs once per new attribute set (see ``_Bounded``), not per measurement.
    """
    sensitive = redaction.is_sensitive_key
    if not any(sensitive(k) for k in attributes):
        return None
    return {k: redaction.REDACTED if sensitive(k) else v for k, v in attributes.items()}


def _series_key(attributes: Mapping[str, Any] | None) -> frozenset[Any]:
    """The identity of an attribute set, independent of key order."""
    if not attributes:
        return _NO_ATTRIBUTES
    try:
        return frozenset(attributes.items())
    except TypeError:  # a list value is not hashable; its repr is, and the tag keeps it apart from a str
        return frozenset((k, (_SEQUENCE, repr(v))) for k, v in attributes.items())


def _hashable_items(attributes: Mapping[str, Any]) -> tuple[Any, ...]:
    """A cache key for attributes with a list value (slow path only)."""
    return tuple((k, (_SEQUENCE, repr(v))) for k, v in attributes.items())


class _Bounded:
    """One instrument and its cardinality limit: which attribute set each measurement is recorded under.

    Keys compare like Python values, so ``1``, ``1.0`` and ``True`` under the same key share a
    cache entry (the SDK keeps them apart); the limit then admits at most a few more series.
    """

    __slots__ = (
        "name",
        "instrument",
        "_record",
        "_max_series",
        "_series",
        "_cache",
        "_lock",
        "_warned",
        "overflowed",
    )

    def __init__(self, name: str, instrument: Any, method: str, limit: int) -> None:
        self.name = name
        self.instrument = instrument
        self._record: Callable[[float, Any], None] = getattr(instrument, method, None) or (lambda v, a: None)
        # One of the limit's attribute sets is the overflow series itself, as in the specification.
        self._max_series = limit - 1
        self._series: set[frozenset[Any]] = set()  # attribute sets admitted (after redaction)
        # Items as given (in the caller's key order: cheaper to hash than a frozenset; another
        # order of the same set only takes another cache entry) -> what to record.
        self._cache: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        self._warned = False
        #: Measurements recorded in the overflow series.
        self.overflowed = 0

    def reset(self) -> None:
        """Forget admitted attribute sets and the overflow count."""
        self._lock = threading.Lock()
        self._series = set()
        self._cache = {}
        self._warned = False
        self.overflowed = 0

    def record(self, value: float, attributes: Mapping[str, Any] | None) -> None:
        """Record ``value`` under ``attributes``, their redacted copy, or the overflow series."""
        key = tuple(attributes.items()) if attributes else ()
        try:
            chosen = self._cache.get(key)
        except TypeError:  # a list value
            key = _hashable_items(attributes)  # type: ignore[arg-type]
            chosen = self._cache.get(key)
        if chosen is None:
            chosen = self._admit(key, attributes)
        if chosen is _AS_GIVEN:
            self._record(value, attributes)
            return
        if chosen is OVERFLOW_ATTRIBUTES:
            self._count_overflow()
        self._record(value, chosen)

    def attributes(self, attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The attributes to record for ``attributes`` (for observations made at export time)."""
        key = tuple(attributes.items()) if attributes else ()
        try:
            chosen = self._cache.get(key)
        except TypeError:  # a list value
            key = _hashable_items(attributes)  # type: ignore[arg-type]
            chosen = self._cache.get(key)
        if chosen is None:
            chosen = self._admit(key, attributes)
        if chosen is OVERFLOW_ATTRIBUTES:
            self._count_overflow()
        return attributes if chosen is _AS_GIVEN else chosen

    def _admit(self, key: tuple[Any, ...], attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
        redacted = _redacted(attributes) if attributes else None
        series = _series_key(attributes if redacted is None else redacted)
        first_overflow = False
        with self._lock:
            if series in self._series or len(self._series) < self._max_series:
                self._series.add(series)
                chosen: Mapping[str, Any] = _AS_GIVEN if redacted is None else redacted
            else:
                chosen = OVERFLOW_ATTRIBUTES
                first_overflow, self._warned = not self._warned, True
            # Bounded like the series: beyond it, measurements take this slower path but stay right.
            if len(self._cache) <= self._max_series:
                self._cache[key] = chosen
        if first_overflow:
            logger.warning(
                "otel-trader: metric %r reached its cardinality limit of %d attribute sets; "
                "measurements with new attribute sets are recorded under otel.metric.overflow=true "
                "(TELEMETRY_METRIC_CARDINALITY_LIMIT)",
                self.name,
                self._max_series + 1,
            )
        return chosen

    def _count_overflow(self) -> None:
        with self._lock:
            self.overflowed += 1


def _observe_overflow(_options: CallbackOptions) -> Iterable[Observation]:
    # No _lock: creating an instrument holds it while the SDK takes its collection lock, which is
    # held here. Copying the values is one C call, safe against a concurrent insert.
    bounded = list(_instruments.values())
    return [Observation(b.overflowed, {"metric": b.name}) for b in bounded if b.overflowed]


def _ensure_overflow_counter(meter: metrics.Meter) -> None:
    """Create ``otel_trader_metric_overflow_total`` once per installed provider (not on the API's proxy)."""
    global _overflow_counter_provider
    provider = metrics.get_meter_provider()
    if provider is _overflow_counter_provider or type(provider).__name__ == "_ProxyMeterProvider":
        return
    _overflow_counter_provider = provider
    meter.create_observable_counter(
        "otel_trader_metric_overflow_total",
        callbacks=[_observe_overflow],
        unit="{measurement}",
        description="Measurements of an otel-trader metric helper recorded in its otel.metric.overflow "
        "series (the metric had reached TELEMETRY_METRIC_CARDINALITY_LIMIT attribute sets).",
    )


def _instrument(kind: str, name: str, method: str, make: Callable[[metrics.Meter], Any]) -> _Bounded:
    key = (kind, name)
    bounded = _instruments.get(key)
    if bounded is None:
        with _lock:
            bounded = _instruments.get(key)
            if bounded is None:
                meter = get_meter()
                _ensure_overflow_counter(meter)
                bounded = _Bounded(name, make(meter), method, _limit)
                _instruments[key] = bounded
    return bounded


def record_counter(
    name: str,
    value: float = 1,
    attributes: dict[str, Any] | None = None,
    *,
    unit: str = "",
    description: str = "",
) -> None:
    """Add ``value`` (≥ 0) to the counter ``name``."""
    bounded = _instruments.get(("counter", name))
    if bounded is None:
        bounded = _instrument(
            "counter", name, "add", lambda m: m.create_counter(name, unit=unit, description=description)
        )
    bounded.record(value, attributes)


def record_up_down(
    name: str,
    value: float,
    attributes: dict[str, Any] | None = None,
    *,
    unit: str = "",
    description: str = "",
) -> None:
    """Add a signed ``value`` to the up-down counter ``name`` (a gauge in Prometheus)."""
    bounded = _instruments.get(("updown", name))
    if bounded is None:
        bounded = _instrument(
            "updown",
            name,
            "add",
            lambda m: m.create_up_down_counter(name, unit=unit, description=description),
        )
    bounded.record(value, attributes)


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
    bounded = _instruments.get(("histogram", name))
    if bounded is None:
        bounded = _instrument(
            "histogram",
            name,
            "record",
            lambda m: m.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=list(buckets) if buckets else None,
            ),
        )
    bounded.record(value, attributes)


def set_gauge(
    name: str,
    value: float,
    attributes: dict[str, Any] | None = None,
    *,
    unit: str = "",
    description: str = "",
) -> None:
    """Set the gauge ``name`` to ``value`` for ``attributes``."""
    bounded = _instruments.get(("gauge", name))
    if bounded is None:
        bounded = _instrument(
            "gauge", name, "set", lambda m: m.create_gauge(name, unit=unit, description=description)
        )
    bounded.record(value, attributes)


def observe_gauge(
    name: str,
    callback: Callable[[], Iterable[tuple[float, dict[str, Any] | None]] | float],
    *,
    unit: str = "",
    description: str = "",
) -> None:
    """Register an observable gauge read at export time.

    ``callback()`` returns a number, or an iterable of ``(value, attributes)`` pairs; the
    attribute sets are bounded like the other helpers' (the SDK keeps every set ever observed).
    """
    made: list[_Bounded] = []

    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        result = callback()
        if isinstance(result, (int, float)):
            return [Observation(result)]
        if not made:
            return [Observation(value, attrs) for value, attrs in result]
        bounded = made[0]
        return [Observation(value, bounded.attributes(attrs)) for value, attrs in result]

    made.append(
        _instrument(
            "observable_gauge",
            name,
            "",
            lambda m: m.create_observable_gauge(
                name, callbacks=[observe], unit=unit, description=description
            ),
        )
    )
