"""Span attributes written into the SDK span directly, where the SDK would store exactly the same.

Passing attributes to ``start_span`` or ``set_attribute`` makes the SDK validate every value
(type checks, recursion, a lock per call): ≈ 6 µs of the ≈ 16 µs an SDK server span costs with
the middleware's eight attributes, measured. The middleware's values are built by itself: strings
and ints, under non-empty string keys; ``trace_operation``'s are the caller's, and are written
directly only when each is a plain ``str``/``bool``/``int``/``float`` under a non-empty string
key. :class:`DirectAttributes` writes them into the span's attribute store (``BoundedAttributes``)
when that gives exactly what the SDK would have stored, and otherwise leaves the SDK path
untouched:

* the provider is the SDK's ``TracerProvider``, and its sampler ignores attributes (the SDK's
  own samplers, which are all otel-trader configures): the sampler was given none;
* every span processor is one of the SDK's batch/simple processors or ours, whose ``on_start``
  ignores attributes (they are written right after the span started);
* every value fits the span limits: a string longer than the value length limit, a count past
  the attribute count limit, or a key already set goes through the SDK, which truncates, drops
  and warns as it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes

__all__ = ["SCALAR_TYPES", "DirectAttributes", "attribute_blind_sampler"]

#: Values the SDK stores as they are (it checks, and copies or converts, anything else).
SCALAR_TYPES = frozenset({str, bool, int, float})


def attribute_blind_sampler(sampler: Any) -> bool:
    """Whether ``sampler`` decides without looking at attributes (the SDK's own samplers)."""
    from opentelemetry.sdk.trace import sampling

    if type(sampler) is sampling.ParentBased:
        delegates = (
            "_root",
            "_remote_parent_sampled",
            "_remote_parent_not_sampled",
            "_local_parent_sampled",
            "_local_parent_not_sampled",
        )
        return all(attribute_blind_sampler(getattr(sampler, name, None)) for name in delegates)
    return type(sampler) in (sampling.StaticSampler, sampling.TraceIdRatioBased)


def _start_blind(processor: Any) -> bool:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from otel_trader.sdk.span_queue import CompactBatchSpanProcessor

    return type(processor) in (CompactBatchSpanProcessor, BatchSpanProcessor, SimpleSpanProcessor)


class DirectAttributes:
    """Whether, and how, the middleware may write its span attributes itself for ``provider``."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self._seen: tuple[Any, Any] | None = None
        self._ok = False

    def ready(self) -> bool:
        """Whether the provider's sampler and processors allow it now (re-checked when they change)."""
        provider = self._provider
        active = getattr(provider, "_active_span_processor", None)
        processors = getattr(active, "_span_processors", None)
        sampler = getattr(provider, "sampler", None)
        if self._seen is None or self._seen[0] is not processors or self._seen[1] is not sampler:
            self._ok = (
                processors is not None
                and sampler is not None
                and attribute_blind_sampler(sampler)
                and all(_start_blind(p) for p in processors)
            )
            self._seen = (processors, sampler)
        return self._ok

    @staticmethod
    def write(span: Any, attributes: Mapping[str, Any], trusted: bool = True) -> bool:
        """Add ``attributes`` to ``span``; False (nothing written) where only the SDK may.

        ``trusted``: the caller built them (non-empty str keys, str or int values); otherwise
        each key and value is checked to be one the SDK stores unchanged.
        """
        store = getattr(span, "_attributes", None)
        if type(store) is not BoundedAttributes or store._immutable:
            return False
        items = store._dict
        if store.maxlen is not None and len(items) + len(attributes) > store.maxlen:
            return False
        limit = store.max_value_len
        for key, value in attributes.items():
            kind = type(value)
            if key in items or (limit is not None and kind is str and len(value) > limit):
                return False
            if not trusted and (type(key) is not str or not key or kind not in SCALAR_TYPES):
                return False
        items.update(attributes)
        return True
