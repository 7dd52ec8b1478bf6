# Long because an in-place aggregation that must give exactly what the SDK's own instruments
# would (OTLP and /metrics, cumulative and delta readers, fork resets); the contract is one unit.
"""The middleware's RED metrics, aggregated in place and handed to the SDK's readers when they collect.

Recording ``http_requests_total`` and ``http_request_duration_seconds`` through the SDK costs
≈ 12 µs per instrument and request with two readers (OTLP and Prometheus): a measurement
object, the exemplar filter, then per reader a lookup of the instrument's views, a hash of the
attribute set, a lock and the exemplar reservoir. :class:`RedMetrics` keeps, per attribute set,
the per-reader cells those aggregations would hold and updates them directly (≈ 1 µs for both
instruments), and at each collection adds the resulting points to what the SDK collected for
that reader.

Contract: each reader receives exactly the metric streams the SDK's own Counter and Histogram
would have produced for the same measurements: names, descriptions, units, scope, attributes,
temporality (per reader: cumulative or delta, start and end times as the SDK sets them), bucket
boundaries and counts, sum, min, max, and exemplars (the SDK's default reservoirs: a uniformly
sampled one per counter series, the last one per histogram bucket, each per reader and reset at
its collection; kept under the provider's exemplar filter). ``tests/core/test_red_metrics.py``
records the same measurements both ways and compares what both readers export.

It only takes over when it can keep that contract: an SDK ``MeterProvider`` without views,
whose readers use the default aggregations and whose exemplar filter is one of the SDK's three.
Otherwise :func:`red_recorder` returns a recorder that calls the instruments as before.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Sequence
from random import random
from time import time_ns
from typing import Any

from opentelemetry.trace import INVALID_SPAN, TraceFlags

__all__ = ["RedMetrics", "red_recorder"]

logger = logging.getLogger("otel_trader")

#: Attribute-set cache entries per recorder: (method, route, status) is bounded in practice
#: (route templates, a fixed set of methods and status labels); this only guards the cache.
_ENTRY_LIMIT = 10_000
_SAMPLED = TraceFlags.SAMPLED

Labeler = Callable[[int], str]


class _InstrumentRecorder:
    """Records through the SDK instruments, with the attribute dicts cached per request kind."""

    def __init__(self, counter: Any, histogram: Any, status_label: Labeler) -> None:
        self._counter = counter
        self._histogram = histogram
        self._status_label = status_label
        self._labels: dict[tuple[str, str, int], tuple[dict[str, str], dict[str, str]]] = {}

    def record(self, method: str, route: str, status: int, duration: float, span: Any) -> None:
        key = (method, route, status)
        labels = self._labels.get(key)
        if labels is None:
            labels = (
                {"method": method, "path": route, "status": self._status_label(status)},
                {"method": method, "path": route},
            )
            if len(self._labels) < _ENTRY_LIMIT:
                self._labels[key] = labels
        self._counter.add(1, labels[0])
        self._histogram.record(duration, labels[1])


# -- per reader and attribute set: what the SDK's aggregation for that reader would hold ------


class _CounterCell:
    """A ``_SumAggregation`` of a synchronous counter, plus its SimpleFixedSize(1) reservoir."""

    __slots__ = ("previous", "previous_collection", "sample", "seen", "start", "value")

    def __init__(self, start: int) -> None:
        self.start = start
        self.previous_collection = start
        self.value = 0  # since the reader's last collection (the SDK's None is 0: adds are 1)
        self.previous = 0  # cumulative value last reported
        self.seen = 0
        self.sample: tuple[float, int, int | None, int | None] | None = None


class _HistogramCell:
    """An ``_ExplicitBucketHistogramAggregation``, plus its aligned-bucket reservoir."""

    __slots__ = (
        "counts",
        "exemplars",
        "max",
        "min",
        "previous_collection",
        "previous_counts",
        "previous_max",
        "previous_min",
        "previous_sum",
        "start",
        "sum",
    )

    def __init__(self, start: int) -> None:
        self.start = start
        self.previous_collection = start
        self.counts: list[int] | None = None
        self.sum: float = 0
        self.min = float("inf")
        self.max = float("-inf")
        self.previous_counts: list[int] | None = None
        self.previous_sum: float = 0
        self.previous_min = float("inf")
        self.previous_max = float("-inf")
        self.exemplars: dict[int, tuple[float, int, int | None, int | None]] = {}


class _Series:
    """One attribute set of one instrument: its cells, one per reader slot (None until recorded)."""

    __slots__ = ("attributes", "cells")

    def __init__(self, attributes: dict[str, str], readers: int) -> None:
        self.attributes = attributes
        self.cells: list[Any] = [None] * readers


class _Slot:
    """A reader as this recorder sees it."""

    __slots__ = ("counter_delta", "histogram_delta", "reader")

    def __init__(self, reader: Any, counter_delta: bool, histogram_delta: bool) -> None:
        self.reader = reader
        self.counter_delta = counter_delta
        self.histogram_delta = histogram_delta


class RedMetrics:
    """In-place aggregation of the two RED instruments of one ``MeterProvider`` (shared by its middlewares)."""

    def __init__(
        self, provider: Any, counter: Any, histogram: Any, status_label: Labeler, filter_kind: str
    ) -> None:
        self._provider = provider
        self._consumer = provider._measurement_consumer
        self._counter = counter
        self._histogram = histogram
        self._status_label = status_label
        # The readers' temporality and aggregation tables are keyed by the SDK's concrete classes.
        self._counter_class = type(counter)
        self._histogram_class = type(histogram)
        advisory = getattr(getattr(histogram, "_advisory", None), "explicit_bucket_boundaries", None)
        from otel_trader.web.middleware import DURATION_BUCKETS

        self._bounds = tuple(advisory if advisory is not None else DURATION_BUCKETS)
        self._buckets = len(self._bounds) + 1
        #: ``always_on``, ``always_off`` or ``trace_based``, as the provider's exemplar filter.
        self._filter = filter_kind
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, int], tuple[_Series, _Series]] = {}
        self._counters: dict[tuple[str, str, str], _Series] = {}
        self._histograms: dict[tuple[str, str], _Series] = {}
        self._slots: list[_Slot] = []
        self._storages: Any = None
        self._sync()
        os.register_at_fork(after_in_child=_forked(weakref.ref(self)))

    # -- readers -------------------------------------------------------------------------------

    def _sync(self) -> None:
        """Match the reader slots to the provider's readers (they can be added and removed)."""
        with self._lock:
            storages = self._consumer._reader_storages
            readers = list(storages)
            old = {id(slot.reader): index for index, slot in enumerate(self._slots)}
            keep = [old.get(id(reader)) for reader in readers]
            self._slots = [self._slot(reader) for reader in readers]
            for series in (*self._counters.values(), *self._histograms.values()):
                series.cells = [series.cells[k] if k is not None else None for k in keep]
            self._storages = storages
        for reader in readers:
            self._wrap(reader)

    def _slot(self, reader: Any) -> _Slot:
        from opentelemetry.sdk.metrics.export import AggregationTemporality

        temporality = reader._instrument_class_temporality
        return _Slot(
            reader,
            temporality[self._counter_class] is AggregationTemporality.DELTA,
            temporality[self._histogram_class] is AggregationTemporality.DELTA,
        )

    def _wrap(self, reader: Any) -> None:
        """Have ``reader``'s collections include this recorder's points."""
        original = reader._collect
        if original is None or getattr(original, "_otel_trader_red", None) is self:
            return
        ref = weakref.ref(self)

        def collect(metric_reader: Any, timeout_millis: float = 10_000) -> Any:
            data = original(metric_reader, timeout_millis=timeout_millis)
            red = ref()
            if red is None:
                return data
            try:
                return red._merge(metric_reader, data)
            except Exception:  # never lose the SDK's own collection over ours
                logger.warning("otel-trader: collecting the HTTP RED metrics failed", exc_info=True)
                return data

        collect._otel_trader_red = self  # type: ignore[attr-defined]
        reader._set_collect_callback(collect)

    def _after_fork(self) -> None:
        """A forked child starts with no measurements (the parent's are the parent's)."""
        self._lock = threading.Lock()
        self._entries = {}
        self._counters = {}
        self._histograms = {}

    # -- the request path ------------------------------------------------------------------------

    def _entry(self, method: str, route: str, status: int) -> tuple[_Series, _Series]:
        label = self._status_label(status)
        with self._lock:
            counter = self._counters.get((method, route, label))
            if counter is None:
                counter = _Series({"method": method, "path": route, "status": label}, len(self._slots))
                self._counters[(method, route, label)] = counter
            histogram = self._histograms.get((method, route))
            if histogram is None:
                histogram = _Series({"method": method, "path": route}, len(self._slots))
                self._histograms[(method, route)] = histogram
        entry = (counter, histogram)
        if len(self._entries) < _ENTRY_LIMIT:
            self._entries[(method, route, status)] = entry
        return entry

    def record(self, method: str, route: str, status: int, duration: float, span: Any) -> None:
        """One request: +1 on ``http_requests_total``, ``duration`` into ``http_request_duration_seconds``.

        ``span`` is the span current while the SDK instruments would have recorded (the
        measurement context's span, for the exemplar filter).
        """
        if self._storages is not self._consumer._reader_storages:
            self._sync()
        if not self._counter._is_enabled():
            return
        entry = self._entries.get((method, route, status))
        if entry is None:
            entry = self._entry(method, route, status)
        counter, histogram = entry
        exemplar: tuple[float, int, int | None, int | None] | None = None
        offer = self._filter
        if offer != "always_off":
            if span is INVALID_SPAN or span is None:
                if offer == "always_on":
                    exemplar = (duration, time_ns(), None, None)
            else:
                context = span.get_span_context()
                if offer == "always_on" or context.trace_flags & _SAMPLED:
                    exemplar = (duration, time_ns(), context.span_id, context.trace_id)
        index = bisect_left(self._bounds, duration)
        with self._lock:
            cells = counter.cells
            for k, cell in enumerate(cells):
                if cell is None:
                    cell = cells[k] = _CounterCell(time_ns())
                cell.value += 1
                if exemplar is not None:
                    seen = cell.seen + 1
                    cell.seen = seen
                    if seen == 1 or random() * seen < 1.0:
                        cell.sample = _offered(1, exemplar, cell.sample)
            cells = histogram.cells
            for k, cell in enumerate(cells):
                if cell is None:
                    cell = cells[k] = _HistogramCell(time_ns())
                counts = cell.counts
                if counts is None:
                    counts = cell.counts = [0] * self._buckets
                counts[index] += 1
                cell.sum += duration
                if duration < cell.min:
                    cell.min = duration
                if duration > cell.max:
                    cell.max = duration
                if exemplar is not None:
                    exemplars = cell.exemplars
                    if exemplar[2] is None and index in exemplars:
                        exemplars[index] = _offered(duration, exemplar, exemplars[index])
                    else:
                        exemplars[index] = exemplar  # what _offered returns for it: value is duration

    # -- collection ------------------------------------------------------------------------------

    def _merge(self, reader: Any, data: Any) -> Any:
        """``data`` (what the SDK collected for ``reader``, or None) with this recorder's metrics added."""
        from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics

        metrics = self._collect(reader)
        if not metrics:
            return data
        scope = self._counter.instrumentation_scope
        if data is None or not data.resource_metrics:
            resource = self._provider._sdk_config.resource
            return MetricsData(
                resource_metrics=[
                    ResourceMetrics(
                        resource=resource,
                        scope_metrics=[
                            ScopeMetrics(scope=scope, metrics=metrics, schema_url=scope.schema_url)
                        ],
                        schema_url=resource.schema_url,
                    )
                ]
            )
        first, *rest = data.resource_metrics
        scope_metrics = list(first.scope_metrics)
        for k, existing in enumerate(scope_metrics):
            if existing.scope == scope:  # other instruments of the same scope: one ScopeMetrics, as the SDK
                scope_metrics[k] = ScopeMetrics(
                    scope=existing.scope,
                    metrics=[*existing.metrics, *metrics],
                    schema_url=existing.schema_url,
                )
                break
        else:
            scope_metrics.append(ScopeMetrics(scope=scope, metrics=metrics, schema_url=scope.schema_url))
        merged = ResourceMetrics(
            resource=first.resource, scope_metrics=scope_metrics, schema_url=first.schema_url
        )
        return MetricsData(resource_metrics=[merged, *rest])

    def _collect(self, reader: Any) -> list[Any]:
        from opentelemetry.sdk.metrics.export import AggregationTemporality, Histogram, Metric, Sum

        if self._storages is not self._consumer._reader_storages:
            self._sync()
        with self._lock:
            index = next((k for k, slot in enumerate(self._slots) if slot.reader is reader), None)
            if index is None:
                return []
            slot = self._slots[index]
            now = time_ns()
            counter_points = [
                p
                for p in (_counter_point(s, index, now, slot.counter_delta) for s in self._counters.values())
                if p
            ]
            histogram_points = [
                p
                for p in (
                    _histogram_point(s, index, now, slot.histogram_delta, self._bounds)
                    for s in self._histograms.values()
                )
                if p
            ]
        metrics = []
        if counter_points:
            temporality = (
                AggregationTemporality.DELTA if slot.counter_delta else AggregationTemporality.CUMULATIVE
            )
            metrics.append(
                Metric(
                    name=self._counter.name,
                    description=self._counter.description,
                    unit=self._counter.unit,
                    data=Sum(
                        data_points=counter_points, aggregation_temporality=temporality, is_monotonic=True
                    ),
                )
            )
        if histogram_points:
            temporality = (
                AggregationTemporality.DELTA if slot.histogram_delta else AggregationTemporality.CUMULATIVE
            )
            metrics.append(
                Metric(
                    name=self._histogram.name,
                    description=self._histogram.description,
                    unit=self._histogram.unit,
                    data=Histogram(data_points=histogram_points, aggregation_temporality=temporality),
                )
            )
        return metrics


def _forked(ref: weakref.ref[RedMetrics]) -> Callable[[], None]:
    """An after-fork hook that does not keep the recorder alive."""

    def after_fork() -> None:
        red = ref()
        if red is not None:
            red._after_fork()

    return after_fork


def _offered(
    value: float,
    offer: tuple[float, int, int | None, int | None],
    previous: tuple[float, int, int | None, int | None] | None,
) -> tuple[float, int, int | None, int | None]:
    """What an SDK ``ExemplarBucket`` holds after ``offer``: an offer without a span keeps the ids held."""
    if offer[2] is None and previous is not None:
        return (value, offer[1], previous[2], previous[3])
    return (value, offer[1], offer[2], offer[3])


def _exemplar(sample: tuple[float, int, int | None, int | None]) -> Any:
    from opentelemetry.sdk.metrics import Exemplar

    value, time_unix_nano, span_id, trace_id = sample
    # The measurement's attributes minus the point's: the same set here, so none are left.
    return Exemplar({}, value, time_unix_nano, span_id, trace_id)


def _counter_point(series: _Series, index: int, now: int, delta: bool) -> Any:
    """The SDK's ``_SumAggregation.collect`` (synchronous instrument) for one reader's cell."""
    from opentelemetry.sdk.metrics.export import NumberDataPoint

    cell: _CounterCell | None = series.cells[index]
    if cell is None:
        return None
    value = cell.value
    cell.value = 0
    if delta:
        start = cell.previous_collection
        cell.previous_collection = now
        if not value:
            return None
    else:
        cell.previous += value
        start, value = cell.start, cell.previous
    exemplars = [_exemplar(cell.sample)] if cell.sample is not None else []
    cell.sample, cell.seen = None, 0
    return NumberDataPoint(
        attributes=series.attributes,
        exemplars=exemplars,
        start_time_unix_nano=start,
        time_unix_nano=now,
        value=value,
    )


def _histogram_point(series: _Series, index: int, now: int, delta: bool, bounds: Sequence[float]) -> Any:
    """The SDK's ``_ExplicitBucketHistogramAggregation.collect`` for one reader's cell."""
    from opentelemetry.sdk.metrics.export import HistogramDataPoint

    cell: _HistogramCell | None = series.cells[index]
    if cell is None:
        return None
    counts, sum_, min_, max_ = cell.counts, cell.sum, cell.min, cell.max
    cell.counts, cell.sum, cell.min, cell.max = None, 0, float("inf"), float("-inf")
    if delta:
        start = cell.previous_collection
        cell.previous_collection = now
        if counts is None:
            return None
        count = sum(counts)
    else:
        if counts is None:
            counts = [0] * (len(bounds) + 1)
        previous = cell.previous_counts or [0] * (len(bounds) + 1)
        counts = cell.previous_counts = [a + b for a, b in zip(counts, previous, strict=True)]
        cell.previous_min = min_ = min(min_, cell.previous_min)
        cell.previous_max = max_ = max(max_, cell.previous_max)
        cell.previous_sum = sum_ = sum_ + cell.previous_sum
        start, count = cell.start, sum(counts)
    exemplars = [_exemplar(cell.exemplars[k]) for k in sorted(cell.exemplars)]
    cell.exemplars = {}
    return HistogramDataPoint(
        attributes=series.attributes,
        exemplars=exemplars,
        start_time_unix_nano=start,
        time_unix_nano=now,
        count=count,
        sum=sum_,
        bucket_counts=tuple(counts),
        explicit_bounds=tuple(bounds),
        min=min_,
        max=max_,
    )


def _filter_kind(provider: Any) -> str | None:
    from opentelemetry.sdk.metrics import (
        AlwaysOffExemplarFilter,
        AlwaysOnExemplarFilter,
        TraceBasedExemplarFilter,
    )

    exemplar_filter = provider._sdk_config.exemplar_filter
    for cls, kind in (
        (TraceBasedExemplarFilter, "trace_based"),
        (AlwaysOnExemplarFilter, "always_on"),
        (AlwaysOffExemplarFilter, "always_off"),
    ):
        if type(exemplar_filter) is cls:
            return kind
    return None


def _eligible(provider: Any, counter: Any, histogram: Any) -> str | None:
    """The exemplar filter kind when :class:`RedMetrics` can stand in for the SDK here, else None."""
    try:
        from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
        from opentelemetry.sdk.metrics.view import (
            DefaultAggregation,
            ExplicitBucketHistogramAggregation,
            SumAggregation,
        )

        if not isinstance(provider, MeterProvider) or provider._sdk_config.views:
            return None
        if not isinstance(counter, Counter) or not isinstance(histogram, Histogram):
            return None
        for reader in provider._measurement_consumer._reader_storages:
            aggregation = reader._instrument_class_aggregation
            if not isinstance(aggregation[type(counter)], (DefaultAggregation, SumAggregation)):
                return None
            histogram_aggregation = aggregation[type(histogram)]
            # What the OTLP exporters prefer by default: the same as the default aggregation.
            same_as_default = (
                type(histogram_aggregation) is ExplicitBucketHistogramAggregation
                and histogram_aggregation._boundaries is None
                and histogram_aggregation._record_min_max
            )
            if type(histogram_aggregation) is not DefaultAggregation and not same_as_default:
                return None
            if reader._collect is None:
                return None
        return _filter_kind(provider)
    except Exception:  # an SDK without these internals: use the instruments
        logger.debug("otel-trader: in-place RED metrics unavailable", exc_info=True)
        return None


_shared: weakref.WeakKeyDictionary[Any, RedMetrics] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def red_recorder(provider: Any, counter: Any, histogram: Any, status_label: Labeler) -> Any:
    """A recorder with ``record(method, route, status, duration, span)`` for the two RED instruments.

    :class:`RedMetrics` when it can keep its contract for ``provider`` (one per provider, shared
    by every middleware using it), else one that records through ``counter`` and ``histogram``.
    """
    kind = _eligible(provider, counter, histogram)
    if kind is None:
        return _InstrumentRecorder(counter, histogram, status_label)
    with _shared_lock:
        red = _shared.get(provider)
        if red is None:
            red = _shared[provider] = RedMetrics(provider, counter, histogram, status_label, kind)
    return red
