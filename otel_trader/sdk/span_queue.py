"""The span batch queue holds each ended span as a tuple of plain values, not as SDK objects.

The SDK's ``BatchSpanProcessor`` keeps every ended span in its queue until a batch is cut and
exported: at a few thousand requests per second that is a quarter of a second or more, long
enough for the span's ≈ 15 objects the cyclic GC tracks (the span, its context, trace flags
and state, status, attribute and event containers and their locks) to survive two young
collections and be moved into the oldest generation. Each span thus counted towards the next
full collection, which traverses the whole heap of the application (measured: one every few
seconds, tens of milliseconds each, on every request in flight).

:class:`CompactBatchSpanProcessor` is that processor with ``on_end`` queueing
:meth:`SpanPacker.pack` of the span instead: one flat tuple of strings and numbers (the
span's attribute keys and values among them) with an index into a table of the few
resource/scope objects in place of those objects. CPython stops tracking a tuple of such values
at its first young collection (a dict, even an untracked one, would keep the tuple holding it
tracked), so nothing of a queued span is ever promoted to the old generation. On the export thread :meth:`SpanPacker.unpack` rebuilds
``ReadableSpan`` objects before the exporter sees them; their content is the original's
(``tests/core/test_span_export.py`` compares both through the SDK's encoder and ``to_json``).
Batching, queue limits, drop counting, flush, shutdown and fork handling are the SDK's.

Where the exporter chain can (:func:`span_encoder`: our OTLP/gRPC exporter, scrubbing or not),
a span without events or links is encoded as it ends and queued as ``(origin, bytes)``: the
request is then a join on the export thread. Encoding whole batches there held the GIL for
milliseconds at a time, long enough to stall every request in flight: under ``make bench-http``
the server's p99 ÷ p50 was 2.6 with export against 2.1 with the export thread dropping its
batches, and 2.3 with spans encoded as they end (same CPU per request: the same work, spread
over the requests instead of in bursts).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import DEFAULT_TRACE_STATE, Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from otel_trader.sdk import gil

__all__ = ["CompactBatchSpanProcessor", "SpanPacker", "export_packed", "span_encoder"]

logger = logging.getLogger("otel_trader")

_KINDS = {kind.value: kind for kind in SpanKind}
_CODES = {code.value: code for code in StatusCode}
#: An enum member's value by the member's id: ``member.value`` costs ≈ 0.3 µs, on the request path.
_KIND_VALUES = {id(kind): kind.value for kind in SpanKind}
_CODE_VALUES = {id(code): code.value for code in StatusCode}


def _context_fields_are_the_tuple() -> bool:
    """Whether SpanContext (a tuple) holds (trace_id, span_id, is_remote, trace_flags, trace_state, ...)."""
    probe = SpanContext(3, 5, True, TraceFlags(1), TraceState([("k", "v")]))
    try:
        trace_id, span_id, is_remote, flags, state = probe[:5]
    except (TypeError, ValueError):
        return False
    return (trace_id, span_id, is_remote, flags, state) == (
        probe.trace_id,
        probe.span_id,
        probe.is_remote,
        probe.trace_flags,
        probe.trace_state,
    )


#: Reading a context by index skips five property calls per span; checked against the properties.
_CONTEXT_AS_TUPLE = _context_fields_are_the_tuple()
#: The unset status spans share (unpacked spans, and LeanSpan's default).
UNSET_STATUS = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags.SAMPLED
#: Distinct (resource, scope) pairs kept by index; past it spans carry the objects themselves.
_ORIGIN_LIMIT = 256


#: Fields before the attribute keys and values in a packed span (see SpanPacker.pack).
_FIXED = 24
#: What on_end reads of the SDK's batcher to queue a span as its emit() does.
_EMIT_FIELDS = ("_queue", "_max_queue_size", "_shutdown", "_pid", "_max_export_batch_size", "_worker_awaken")
#: This process's id, kept by an at-fork hook: ``os.getpid()`` is a system call, and the SDK's
#: ``emit()`` makes one per span to notice a fork.
_process = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _process.__setitem__(0, os.getpid()))

#: Seconds between warnings about spans dropped on a full queue.
QUEUE_FULL_WARNING_INTERVAL = 60.0


def _state(trace_state: Any) -> str | None:
    """A non-empty trace state as its W3C header value (a string: untracked by the GC)."""
    return trace_state.to_header() if trace_state else None


def _attributes(attributes: Any) -> tuple[Any, int]:
    """((keys, values), dropped count) of a mapping; the SDK's BoundedAttributes keeps a plain dict."""
    if attributes is None:
        return None, 0
    items = getattr(attributes, "_dict", attributes)
    return (tuple(items), tuple(items.values())), getattr(attributes, "dropped", 0)


def _bounded(packed: Any, dropped: int) -> Any:
    """The attribute mapping :func:`_attributes` packed, with its dropped count."""
    if packed is None:
        return None
    attributes = dict(zip(*packed, strict=True))
    if not dropped:
        return attributes
    bounded = BoundedAttributes(maxlen=None, attributes=attributes, immutable=True)
    bounded.dropped = dropped
    return bounded


def _bounded_list(items: list[Any], dropped: int) -> Any:
    if not dropped:
        return tuple(items)
    bounded: Any = BoundedList(None)
    bounded.extend(items)
    bounded.dropped = dropped
    return bounded


class SpanPacker:
    """Packs ``ReadableSpan`` objects into plain tuples and back, for one processor."""

    def __init__(self) -> None:
        self._origin_index: dict[tuple[int, int, int], int] = {}
        #: id(scope) → (resource, scope, info, what a packed span holds): the last seen per scope.
        self._by_scope: dict[int, tuple[Any, Any, Any, Any]] = {}
        self._origins: list[tuple[Any, Any, Any]] = []
        self._flags: dict[int, TraceFlags] = {}
        self._states: dict[tuple[tuple[str, str], ...], TraceState] = {}

    def _origin(self, resource: Any, scope: Any, info: Any) -> tuple[Any, Any, Any]:
        """(resource, scope, what a packed span holds for both: their index, or the objects)."""
        key = (id(resource), id(scope), id(info))
        index = self._origin_index.get(key)
        if index is None:
            if len(self._origins) >= _ORIGIN_LIMIT:
                return (resource, scope, (resource, scope, info))
            # The table keeps the objects alive, so their ids cannot be reused by others.
            self._origins.append((resource, scope, info))
            index = self._origin_index[key] = len(self._origins) - 1
        origin = (resource, scope, index)
        # The last triple seen per scope, found again without building a key. The scope (and
        # the SDK's deprecated InstrumentationInfo beside it) lives as long as its tracer.
        self._by_scope[id(scope)] = (resource, scope, info, index)
        return origin

    def origin_of(self, span: Any) -> Any:
        """What a packed span holds for ``span``'s resource and scope: their index, or the objects."""
        scope = span._instrumentation_scope
        last = self._by_scope.get(id(scope))
        info = span._instrumentation_info
        if last is not None and last[0] is span._resource and last[1] is scope and last[2] is info:
            return last[3]
        return self._origin(span._resource, scope, info)[2]

    def pack(self, span: Any) -> tuple[Any, ...]:
        """``span`` (a ``ReadableSpan``) as one flat tuple of plain values (see the module docstring).

        Layout: the :data:`_FIXED` fields, then the attribute keys, then their values. Flat on
        purpose: CPython untracks a tuple only once every tuple in it is untracked, and a young
        collection meets the inner tuples after the outer one, so nesting would keep the item
        tracked (and promoted) for several collections. Events and links, which most spans do
        not have, are nested.
        """
        context = span._context
        if _CONTEXT_AS_TUPLE:
            trace_id, span_id, is_remote, flags, state = context[:5]
        else:
            trace_id, span_id, is_remote = context.trace_id, context.span_id, context.is_remote
            flags, state = context.trace_flags, context.trace_state
        parent = span._parent
        attributes = span._attributes
        items = getattr(attributes, "_dict", attributes) or {}
        events = span._events
        links = span._links
        status = span._status
        packed_origin = self.origin_of(span)
        if parent is None:
            parent_fields: tuple[Any, ...] = (None, None, None, None, None)
        else:
            parent_state = parent.trace_state
            parent_fields = (
                parent.trace_id,
                parent.span_id,
                int(parent.trace_flags),
                None if parent_state is DEFAULT_TRACE_STATE or not parent_state else parent_state.to_header(),
                parent.is_remote,
            )
        return (
            span._name,
            trace_id,
            span_id,
            int(flags),
            None if state is DEFAULT_TRACE_STATE or not state else state.to_header(),
            is_remote,
            *parent_fields,
            packed_origin,
            _KIND_VALUES[id(span._kind)],
            span._start_time,
            span._end_time,
            attributes is None,
            getattr(attributes, "dropped", 0),
            tuple([(e.name, e.timestamp, *_attributes(e.attributes)) for e in events]) if events else (),
            getattr(events, "dropped", 0),
            tuple(
                [
                    (
                        link.context.trace_id,
                        link.context.span_id,
                        int(link.context.trace_flags),
                        _state(link.context.trace_state),
                        link.context.is_remote,
                        *_attributes(link.attributes),
                    )
                    for link in links
                ]
            )
            if links
            else (),
            getattr(links, "dropped", 0),
            0 if status is UNSET_STATUS else _CODE_VALUES[id(status.status_code)],
            None if status is UNSET_STATUS else status.description,
            len(items),
            *items,
            *items.values(),
        )

    def _context(self, trace_id: int, span_id: int, flags: int, state: Any, remote: bool) -> SpanContext:
        trace_flags = self._flags.get(flags)
        if trace_flags is None:
            trace_flags = self._flags[flags] = TraceFlags(flags)
        trace_state = DEFAULT_TRACE_STATE
        if state is not None:
            trace_state = self._states.get(state)  # type: ignore[assignment]
            if trace_state is None:
                trace_state = TraceState.from_header([state])
                if len(self._states) < 1024:
                    self._states[state] = trace_state
        return SpanContext(trace_id, span_id, remote, trace_flags, trace_state)

    def unpack(self, item: Any) -> Any:
        """The ``ReadableSpan`` :meth:`pack` made ``item`` from (anything else is returned as it is)."""
        if type(item) is not tuple:
            return item
        (
            name,
            trace_id,
            span_id,
            flags,
            state,
            remote,
            parent_trace,
            parent_span,
            parent_flags,
            parent_state,
            parent_remote,
            origin,
            kind,
            start,
            end,
            no_attributes,
            dropped_attributes,
            events,
            dropped_events,
            links,
            dropped_links,
            code,
            description,
            count,
        ) = item[:_FIXED]
        resource, scope, info = self._origins[origin] if type(origin) is int else origin
        attributes = None
        if not no_attributes:
            keys = item[_FIXED : _FIXED + count]
            attributes = _bounded((keys, item[_FIXED + count :]), dropped_attributes)
        return ReadableSpan(
            name=name,
            context=self._context(trace_id, span_id, flags, state, remote),
            parent=None
            if parent_remote is None
            else self._context(parent_trace, parent_span, parent_flags, parent_state, parent_remote),
            resource=resource,
            attributes=attributes,
            events=_bounded_list(
                [
                    Event(e_name, _bounded(e_attributes, e_dropped), ts)
                    for e_name, ts, e_attributes, e_dropped in events
                ],
                dropped_events,
            ),
            links=_bounded_list(
                [
                    Link(
                        self._context(l_trace, l_span, l_flags, l_state, l_remote),
                        _bounded(l_attributes, l_dropped),
                    )
                    for l_trace, l_span, l_flags, l_state, l_remote, l_attributes, l_dropped in links
                ],
                dropped_links,
            ),
            kind=_KINDS[kind],
            instrumentation_info=info,
            status=UNSET_STATUS if code == 0 and description is None else Status(_CODES[code], description),
            start_time=start,
            end_time=end,
            instrumentation_scope=scope,
        )


def export_packed(exporter: Any, items: Sequence[Any], packer: SpanPacker, scrub: Any = None) -> Any:
    """``exporter.export_packed(items, packer, scrub)`` where its class has one, else NotImplemented.

    The contract of ``export_packed``: export exactly what ``export`` of ``packer.unpack`` of
    each item would (scrubbed by ``scrub_span`` with the resource cache ``scrub``, when given),
    or send nothing and return NotImplemented. Looked up on the class, never through a proxy's
    ``__getattr__``: a wrapper that does not define it (a scrubbing step, say) is never skipped.
    """
    method = getattr(type(exporter), "export_packed", None)
    if method is None:
        return NotImplemented
    return method(exporter, items, packer, scrub)


def span_encoder(exporter: Any, scrub: bool = False) -> Any:
    """``exporter.span_encoder(scrub)`` where its class has one, else None.

    The contract of ``span_encoder``: None, or a function that takes an ended span without
    events or links (what :meth:`SpanPacker.pack` reads) and returns bytes (or raises), such
    that ``export_packed`` of a batch holding ``(packer.origin_of(span), those bytes)`` in
    place of ``packer.pack(span)`` exports exactly what it would for the packed span.
    Wrappers that define ``export_packed`` forward it as they forward ``export_packed``;
    ``scrub``: a scrubbing wrapper is above.
    """
    method = getattr(type(exporter), "span_encoder", None)
    return None if method is None else method(exporter, scrub)


def _is_encoded(item: Any) -> bool:
    return type(item) is tuple and len(item) == 2


class _Unpacking(SpanExporter):
    """Hands the wrapped exporter ``ReadableSpan`` objects rebuilt from the queued tuples."""

    def __init__(self, inner: Any, packer: SpanPacker) -> None:
        self.inner = inner
        self._packer = packer

    def export(self, spans: Sequence[Any]) -> Any:
        """Export the rebuilt spans through the wrapped exporter (span exporter protocol).

        An exporter chain that reads the tuples itself gets them as they are (see
        :func:`export_packed`).
        """
        result = export_packed(self.inner, spans, self._packer)
        if result is not NotImplemented:
            return result
        encoded = [item for item in spans if _is_encoded(item)]
        if encoded:
            # Spans encoded when they ended cannot be rebuilt: they go in a request of their own.
            spans = [item for item in spans if not _is_encoded(item)]
            result = export_packed(self.inner, encoded, self._packer)
            if result is NotImplemented:
                logger.warning(
                    "otel-trader: %d encoded spans could not be exported and were dropped", len(encoded)
                )
                result = SpanExportResult.FAILURE
            if not spans:
                return result
        unpack = self._packer.unpack
        step = gil.pacer().step
        spans_out = []
        for item in spans:
            spans_out.append(unpack(item))
            step()  # the export thread does not hold the GIL for a whole batch
        outcome = self.inner.export(spans_out)
        return outcome if result is None or result is SpanExportResult.SUCCESS else result

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        flush = getattr(self.inner, "force_flush", None)
        return bool(flush(timeout_millis)) if flush else True

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class CompactBatchSpanProcessor(SpanProcessor):
    """The SDK's ``BatchSpanProcessor``, queueing ended spans as tuples, in two export lanes.

    Each lane is an SDK ``BatchSpanProcessor`` (queue, worker thread, batching, drop counting,
    flush, shutdown, fork handling) exporting through the same exporter. Ended spans fill one
    lane's batch, then the other's: while one lane waits for the collector's answer to its
    request (≈ 24 µs per span on loopback, the GIL released), the other encodes its next batch,
    so one process is not limited to one request in flight. At low rates the lanes take turns
    and export one at a time. The configured queue size is shared out between them.
    """

    LANES = 2

    def __init__(
        self,
        span_exporter: Any,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
        **kwargs: Any,
    ) -> None:
        self._packer = SpanPacker()
        #: What the lanes export through (``span_exporter`` behind the unpacking).
        self.span_exporter = _Unpacking(span_exporter, self._packer)
        #: Encodes a span for the exporter as it ends, where the exporter chain can.
        self._encode = span_encoder(span_exporter)
        queue = BatchSpanProcessor._default_max_queue_size() if max_queue_size is None else max_queue_size
        batch = (
            BatchSpanProcessor._default_max_export_batch_size()
            if max_export_batch_size is None
            else max_export_batch_size
        )
        batch = min(batch, queue)
        lanes = self.LANES if queue >= self.LANES * batch else 1
        self._lanes = [
            BatchSpanProcessor(
                self.span_exporter,
                max_queue_size=queue // lanes,
                schedule_delay_millis=schedule_delay_millis,
                max_export_batch_size=batch,
                export_timeout_millis=export_timeout_millis,
                **kwargs,
            )
            for _ in range(lanes)
        ]
        # The SDK types emit() for spans; the queue holds whatever it is given (packed tuples).
        self._batchers: list[Any] = [lane._batch_processor for lane in self._lanes]
        #: Whether the batchers have every field on_end reads to do what their emit() does.
        self._inline_emit = all(
            all(hasattr(b, name) for name in _EMIT_FIELDS) and isinstance(b._queue, deque)
            for b in self._batchers
        )
        self._batch = batch
        self._ended = 0
        #: Spans dropped on a full queue since the last warning, and when the next may be logged.
        self._dropped = 0
        self._next_warning = 0.0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        context = span.context
        if not (context and context.trace_flags & _SAMPLED):
            return
        item: Any = None
        encode = self._encode
        if encode is not None:
            try:
                if not span._events and not span._links:
                    item = (self._packer.origin_of(span), encode(span))
            except Exception:  # what the exporter's encoder refuses is packed, and goes its fallback way
                logger.debug("otel-trader: span queued packed, not encoded", exc_info=True)
        if item is None:
            try:
                item = self._packer.pack(span)
            except Exception:  # a span of another implementation: queued as it is
                logger.debug("otel-trader: span kept unpacked in the batch queue", exc_info=True)
                item = span
        ended = self._ended
        self._ended = ended + 1
        batcher = self._batchers[(ended // self._batch) % len(self._batchers)]
        queue = batcher._queue
        if batcher._shutdown or batcher._pid != _process[0]:
            batcher.emit(item)  # the SDK's handling: dropped after shutdown, re-initialised after a fork
        elif len(queue) >= batcher._max_queue_size:
            self._drop_oldest(batcher, item)
        elif not self._inline_emit:
            batcher.emit(item)
        else:
            # What emit() does with an open queue of this process, without its os.getpid() call.
            queue.appendleft(item)
            if len(queue) >= batcher._max_export_batch_size and not batcher._worker_awaken.is_set():
                batcher._worker_awaken.set()

    def _drop_oldest(self, batcher: Any, item: Any) -> None:
        """What the SDK's ``emit`` does with a full queue, without its warning for every span.

        ``emit`` builds that warning's log record on the request path for every span (its
        duplicate filter drops the record only once it is built); the drops are counted by the
        SDK's metric all the same, and one warning a minute says how many there were.
        """
        batcher._metrics.drop_items(1)
        batcher._queue.appendleft(item)  # a deque with maxlen: the oldest span goes, as in emit()
        self._dropped += 1
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + QUEUE_FULL_WARNING_INTERVAL
            logger.warning(
                "otel-trader: span export queue full, %d spans dropped since the last warning "
                '(otel_sdk_processor_span_processed_total{error_type="queue_full"}); the exporter '
                "is not keeping up or the collector is unreachable",
                self._dropped,
            )
            self._dropped = 0

    def shutdown(self) -> None:
        for lane in self._lanes:
            lane.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        done = True
        for lane in self._lanes:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            done = lane.force_flush(left) and done
        return done
