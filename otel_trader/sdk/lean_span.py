"""SDK spans started and ended without the SDK's per-span containers, for the compact span queue.

The SDK's ``Tracer.start_span`` and ``Span.end`` cost ≈ 26 µs per server span here, with the
middleware's attributes written the cheapest way the SDK allows; :class:`LeanTracer` ≈ 13 µs
(``benchmarks/span_start.py``, same provider, same run). Most of the SDK's cost is not the
span's content: a ``BoundedAttributes`` and
two ``BoundedList`` objects with their locks per span (most spans get no event or link), the
keyword-heavy constructor chain, the multi-processor's ``on_start`` loop, and at the end a
second ``ReadableSpan`` built only to be handed to the processors, which for
:class:`~otel_trader.sdk.span_queue.CompactBatchSpanProcessor` copy it into a tuple at once.

:class:`LeanTracer` starts the same span the SDK's tracer would, as a :class:`LeanSpan`, a
subclass of the SDK's ``Span`` (``isinstance`` checks, ``get_span_context``, events,
``record_exception``, ``set_status``, links and the context-manager protocol are the SDK's own
code). Only the start, the attribute store and the end differ:

* the sampler, id generator, trace flags, trace state, resource, scope, span limits, the
  tracer's enabled flag and the SDK's own span metrics are used exactly as
  ``Tracer.start_span`` uses them (an unsampled decision gives the SDK's ``NonRecordingSpan``);
* attributes live in a plain dict while every write is one the SDK stores unchanged (a
  ``str``/``bool``/``int``/``float`` under a non-empty string key, within the value length
  and count limits); the first write that is not moves them into the SDK's
  ``BoundedAttributes``, which then truncates, drops, evicts and warns as the SDK does;
* events and links get their ``BoundedList`` with the first one added;
* ``end`` hands the span itself to the compact processors, which pack it before returning.

It is used only where that is all the SDK would do: :meth:`LeanTracer.for_tracer` returns
None unless the tracer is the SDK's, its processor the SDK's synchronous multi-processor
holding nothing but ``CompactBatchSpanProcessor`` instances (whose ``on_start`` and
``_on_ending`` do nothing), and its sampler one that ignores attributes (the SDK's own);
:meth:`LeanTracer.ready` re-checks that when the provider's processors change. Output
identity with the SDK's spans is tested in ``tests/core/test_lean_span.py`` through the OTLP
encoder and ``to_json``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from otel_trader.sdk.current_context import SPAN_KEY, SPAN_KEY_KNOWN
from otel_trader.sdk.span_fastpath import SCALAR_TYPES, attribute_blind_sampler
from otel_trader.sdk.span_queue import UNSET_STATUS, CompactBatchSpanProcessor

__all__ = ["LeanSpan", "LeanTracer"]

_NO_ITEMS: tuple[Any, ...] = ()
#: The SDK's span methods log through this logger (their warnings stay the SDK's).
_sdk_logger = sdk_trace.logger
#: The SDK's "ended span" guard, so events and links added late warn exactly as the SDK's do.
_check_span_ended: Any = getattr(sdk_trace, "_check_span_ended", None)


def _storable(key: Any, value: Any, length_limit: int | None) -> bool:
    """Whether the SDK stores ``key: value`` as it is (no conversion, truncation or warning)."""
    if type(key) is not str or not key:
        return False
    kind = type(value)
    if kind is str:
        return length_limit is None or len(value) <= length_limit
    return kind in SCALAR_TYPES


class LeanSpan(sdk_trace.Span):
    """The SDK's ``Span``, built by :class:`LeanTracer` (see the module docstring); not for direct use."""

    # Fields every span starts with the same value of; an instance that changes one (an event
    # added, a status set, the end) gets its own. Together with what start_span sets, these
    # are the fields of the SDK's Span (the tests compare the two sets).
    _end_time: int | None = None
    _events: Any = _NO_ITEMS
    _links: Any = _NO_ITEMS
    _status: Any = UNSET_STATUS
    _trace_config = None
    #: The provider's compact processors, read once at the start (set by LeanTracer).
    _span_processors: tuple[Any, ...] = ()
    _record_exception = True
    _set_status_on_exception = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("LeanSpan is started by LeanTracer.start_span")

    def _bounded_attributes(self) -> BoundedAttributes:
        """The attributes, moved into the SDK's store if they are not there yet."""
        store = self._attributes
        if type(store) is not BoundedAttributes:
            limits = self._limits
            store = BoundedAttributes(
                limits.max_span_attributes,
                store,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
            self._attributes = store
        return store

    def _fits(self, items: dict[str, Any], key: Any, value: Any) -> bool:
        """Whether the SDK would store ``key: value`` into ``items`` unchanged, without dropping any."""
        limits = self._limits
        if not _storable(key, value, limits.max_span_attribute_length):
            return False
        maxlen = limits.max_span_attributes
        return maxlen is None or key in items or len(items) < maxlen

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (the SDK's semantics: see the module docstring)."""
        with self._lock:
            if self._end_time is not None:
                _sdk_logger.warning("Setting attribute on ended span.")
                return
            items = self._attributes
            if type(items) is dict and self._fits(items, key, value):
                if key in items:
                    del items[key]  # the SDK moves a re-set key to the end
                items[key] = value
                return
            self._bounded_attributes()[key] = value

    def set_attributes(self, attributes: Mapping[str, Any], longest: int | None = None) -> None:
        """Set several attributes (the SDK's semantics: see the module docstring).

        ``longest``: the caller built them, as for :meth:`LeanTracer.start_span`; only it and
        the count are then checked.
        """
        with self._lock:
            if self._end_time is not None:
                _sdk_logger.warning("Setting attribute on ended span.")
                return
            items = self._attributes
            if type(items) is dict:
                limits = self._limits
                length = limits.max_span_attribute_length
                if longest is not None:
                    fits = length is None or longest <= length
                    added = len(attributes)  # a re-set key counted too: at worst the SDK's store
                else:
                    fits, added = True, 0
                    for key, value in attributes.items():
                        if not _storable(key, value, length):
                            fits = False
                            break
                        if key not in items:
                            added += 1
                maxlen = limits.max_span_attributes
                if fits and (maxlen is None or len(items) + added <= maxlen):
                    for key, value in attributes.items():
                        if key in items:
                            del items[key]  # the SDK moves a re-set key to the end
                        items[key] = value
                    return
            self._bounded_attributes()._set_items(attributes)

    def update_name(self, name: str) -> None:
        """Rename the span (the SDK's ``update_name``: ignored with a warning once ended)."""
        with self._lock:
            if self._end_time is None:
                self._name = name
                return
        _sdk_logger.warning("Tried calling %s on an ended span.", "update_name")

    def _add_event(self, event: Any) -> None:
        if type(self._events) is tuple:
            self._events = BoundedList(self._limits.max_events)
        self._events.append(event)

    def _add_link(self, link: Any) -> None:
        if type(self._links) is tuple:
            self._links = BoundedList(self._limits.max_links)
        self._links.append(link)

    if _check_span_ended is not None:
        _add_event = _check_span_ended(_add_event)
        _add_link = _check_span_ended(_add_link)

    def end(self, end_time: int | None = None) -> None:
        """End the span and queue it on the compact processors (the SDK's checks and warnings)."""
        with self._lock:
            if self._start_time is None:
                raise RuntimeError("Calling end() on a not started span.")
            if self._end_time is not None:
                _sdk_logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
            store = self._attributes
            if type(store) is BoundedAttributes:
                store._immutable = True
            # A plain dict stays: every write checks the end time first, and readers get the
            # read-only view ReadableSpan.attributes gives.
        if self._record_end_metrics:
            self._record_end_metrics()
        for processor in self._span_processors:
            processor.on_end(self)


#: What LeanTracer reads from the SDK's tracer; a tracer lacking any is left to the SDK.
_TRACER_FIELDS = (
    "sampler",
    "id_generator",
    "resource",
    "span_processor",
    "instrumentation_info",
    "_instrumentation_scope",
    "_span_limits",
    "_tracer_metrics",
    "_is_enabled",
)
_new_span: Any = object.__new__
try:
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics as _NoOpTracerMetrics
except ImportError:  # an SDK without internal span metrics, or with them elsewhere: always called
    _NoOpTracerMetrics = None  # type: ignore[assignment, misc]
_RANDOM = TraceFlags.RANDOM_TRACE_ID
_FLAGS = {
    (sampled, random): TraceFlags(
        (TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT) | (_RANDOM if random else 0)
    )
    for sampled in (False, True)
    for random in (False, True)
}


def _root_sampling(sampler: Any) -> tuple[Any, Any, int] | None:
    """How ``sampler`` decides for a span without a valid parent, if it is one of the SDK's own.

    (decision when ``trace_id``'s low 64 bits are below the bound, decision otherwise, bound).
    The SDK's ``StaticSampler`` and ``TraceIdRatioBased``, alone or as the root of
    ``ParentBased``, decide from nothing else and return the attributes they were given (none
    here) and the parent's trace state (none without a parent).
    """
    if type(sampler) is sampling.ParentBased:
        sampler = getattr(sampler, "_root", None)
    if type(sampler) is sampling.StaticSampler:
        decision = getattr(sampler, "_decision", None)
        return None if decision is None else (decision, decision, 0)
    if type(sampler) is sampling.TraceIdRatioBased:
        return (sampling.Decision.RECORD_AND_SAMPLE, sampling.Decision.DROP, sampler.bound)
    return None


_LOW_64 = (1 << 64) - 1
_SAMPLE = sampling.Decision.RECORD_AND_SAMPLE
_DEFAULT_TRACE_STATE = trace.DEFAULT_TRACE_STATE
_MAX_TRACE_ID = (1 << 128) - 1
_MAX_SPAN_ID = (1 << 64) - 1
_new_context: Any = functools.partial(tuple.__new__, SpanContext)


def _context_fields_are_known() -> bool:
    """Whether ``SpanContext(...)`` is the tuple (ids, remote, flags, state, valid) built here."""
    flags = TraceFlags(1)
    for trace_id, span_id in ((3, 5), (0, 5), (3, 0), (_MAX_TRACE_ID + 1, 5), (3, _MAX_SPAN_ID + 1)):
        valid = 0 < trace_id <= _MAX_TRACE_ID and 0 < span_id <= _MAX_SPAN_ID
        sdk = SpanContext(trace_id, span_id, False, flags, None)
        ours = _new_context((trace_id, span_id, False, flags, _DEFAULT_TRACE_STATE, valid))
        if type(sdk) is not SpanContext or tuple(sdk) != tuple(ours) or sdk.is_valid is not ours.is_valid:
            return False
    return True


_CONTEXT_FIELDS = _context_fields_are_known()


class LeanTracer:
    """Starts :class:`LeanSpan` spans for an SDK tracer, where that is all the SDK would do."""

    def __init__(self, tracer: Any) -> None:
        #: The tracer given: the SDK's, or the API's proxy that resolves to it once configured.
        self._source = tracer
        self._tracer: Any = None
        #: What the last check saw: the tracer's multi-processor, its processors and sampler.
        self._multi: Any = None
        self._processors: Any = None
        self._sampler: Any = None
        self._ok = False
        self._root: tuple[Any, Any, int] | None = None

    def ready(self) -> bool:
        """Whether spans may be started here now (re-checked when the provider's set-up changes)."""
        tracer = self._tracer
        if (
            self._ok
            and tracer is self._source
            and tracer.sampler is self._sampler
            and self._multi._span_processors is self._processors
        ):
            return self._ok
        return self._check()

    def _check(self) -> bool:
        tracer = self._source
        if type(tracer) is trace.ProxyTracer:
            tracer = tracer._tracer
        multi = getattr(tracer, "span_processor", None)
        processors = getattr(multi, "_span_processors", None)
        sampler = getattr(tracer, "sampler", None)
        if tracer is not self._tracer or processors is not self._processors or sampler is not self._sampler:
            self._ok = (
                _check_span_ended is not None
                and type(tracer) is sdk_trace.Tracer
                and all(hasattr(tracer, name) for name in _TRACER_FIELDS)
                and type(multi) is sdk_trace.SynchronousMultiSpanProcessor
                and type(processors) is tuple
                and all(type(p) is CompactBatchSpanProcessor for p in processors)
                and attribute_blind_sampler(sampler)
            )
            self._root = _root_sampling(sampler) if self._ok else None
            self._tracer, self._multi, self._processors, self._sampler = tracer, multi, processors, sampler
        return self._ok

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: dict[str, Any] | None = None,
        longest: int | None = None,
    ) -> trace.Span:
        """What the SDK tracer's ``start_span`` returns, as a LeanSpan; call only when :meth:`ready`.

        ``attributes`` become the span's own dict when the SDK would store them unchanged (the
        caller must not reuse it); otherwise they are set through the SDK's store.
        ``longest``: the caller built them, with non-empty ``str`` keys and ``str``/``bool``/
        ``int``/``float`` values, none a string longer than this; only it and the count are
        then checked.
        """
        tracer = self._tracer
        # trace.get_current_span(context).get_span_context(), without its two calls for a
        # context holding no span (a server span without a propagated parent).
        current = otel_context.get_current() if context is None else context
        if SPAN_KEY_KNOWN and current.get(SPAN_KEY) is None:
            parent_context = trace.INVALID_SPAN_CONTEXT
        else:
            parent_context = trace.get_current_span(context).get_span_context()
        if not tracer._is_enabled():
            return trace.NonRecordingSpan(context=parent_context)
        parent: SpanContext | None = parent_context
        ids = tracer.id_generator
        sampler = tracer.sampler
        if parent is trace.INVALID_SPAN_CONTEXT or parent is None or not parent.is_valid:
            parent = None
            trace_id = ids.generate_trace_id()
            random = ids.is_trace_id_random()
            root = self._root
            decision = None if root is None else root[0] if trace_id & _LOW_64 < root[2] else root[1]
            trace_state = None
        else:
            trace_id = parent.trace_id
            random = parent.trace_flags.random_trace_id
            decision = None
        if decision is None:
            # ready() admits only the SDK's samplers: they ignore attributes, so they are given
            # none, and return the ones they were given (none) for the span.
            result = sampler.should_sample(context, trace_id, name, kind, None, ())
            decision = result.decision
            trace_state = result.trace_state
        span_id = ids.generate_span_id()
        flags = _FLAGS[decision is _SAMPLE, bool(random)]
        if _CONTEXT_FIELDS:
            # SpanContext.__new__'s own computation, without its call (checked at import).
            span_context = _new_context(
                (
                    trace_id,
                    span_id,
                    False,
                    flags,
                    _DEFAULT_TRACE_STATE if trace_state is None else trace_state,
                    0 < trace_id <= _MAX_TRACE_ID and 0 < span_id <= _MAX_SPAN_ID,
                )
            )
        else:
            span_context = trace.SpanContext(
                trace_id, span_id, is_remote=False, trace_flags=flags, trace_state=trace_state
            )
        span_metrics = tracer._tracer_metrics
        # The SDK's no-op span metrics (its internal metrics off) record nothing at either end.
        record_end_metrics = (
            None if type(span_metrics) is _NoOpTracerMetrics else span_metrics.start_span(parent, decision)
        )
        if decision is not _SAMPLE and not decision.is_recording():
            return trace.NonRecordingSpan(context=span_context)
        multi = tracer.span_processor
        limits = tracer._span_limits
        span = _new_span(LeanSpan)
        span.__dict__ = {
            "_name": name,
            "_context": span_context,
            "_kind": kind,
            "_instrumentation_info": tracer.instrumentation_info,
            "_instrumentation_scope": tracer._instrumentation_scope,
            "_parent": parent,
            "_start_time": None,
            "_attributes": {},
            "_resource": tracer.resource,
            "_sampler": sampler,
            "_span_processor": multi,
            "_span_processors": multi._span_processors,
            "_limits": limits,
            "_lock": threading.Lock(),
            "_record_end_metrics": record_end_metrics,
        }
        if attributes:
            length = limits.max_span_attribute_length
            count = limits.max_span_attributes
            if longest is not None:
                fits = length is None or longest <= length
            else:
                fits = all([_storable(key, value, length) for key, value in attributes.items()])
            if fits and type(attributes) is dict and (count is None or len(attributes) <= count):
                span._attributes = attributes
            else:
                span.set_attributes(attributes)
        # The compact processors' on_start does nothing (ready() checked): it is not called.
        span._start_time = time_ns()
        return span
