"""OTLP/protobuf encoding of spans written straight to the wire format, for the gRPC span exporter.

The SDK's encoder (``encode_spans``) builds a protobuf message object for every span, attribute
and value, and hashes the resource (a JSON dump) for every span: ≈ 26 µs per span with four
attributes, on the export thread, which shares the GIL with the request path. :class:`SpanEncoder`
writes the same message as bytes instead, keeping the encoded form of what repeats from span to
span (attribute pairs, names, resources, scopes). The contract: the bytes parse into exactly the
message ``encode_spans`` builds for the same spans (``tests/core/test_span_export.py``). Anything
it does not know how to encode the same way (a value the SDK would reject, a name that is not
valid UTF-8) makes it raise, and :class:`FastOTLPSpanExporter` then uses the SDK's encoder for
that batch, so what is logged and dropped stays the SDK's decision.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import DEFAULT_TRACE_STATE, SpanKind, StatusCode

from otel_trader.redaction import redact_attribute, redact_text, rules_version
from otel_trader.sdk import gil
from otel_trader.sdk.scrubbing import scrub_span
from otel_trader.sdk.span_queue import _CONTEXT_AS_TUPLE, _KIND_VALUES, UNSET_STATUS
from otel_trader.sdk.span_queue import _FIXED as _PACKED_FIXED

logger = logging.getLogger("otel_trader")

__all__ = ["SpanEncoder", "fast_grpc_span_exporter"]

_SMALL = [bytes((n,)) for n in range(128)]
_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_TIMES = struct.Struct("<BQBQ").pack  # start (field 7) and end (field 8) of a span, with their tags
_FLAGS = struct.Struct("<I").pack
#: SpanFlags: the context's is-remote bit is known (0x100), and set (0x200).
_FLAGS_LOCAL = b"\x85\x01" + _FLAGS(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _FLAGS(0x300)
_LINK_FLAGS_LOCAL = b"\x35" + _FLAGS(0x100)
_LINK_FLAGS_REMOTE = b"\x35" + _FLAGS(0x300)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: trace_id (as two 64-bit halves) and span_id with their tags (fields 1 and 2), and a parent id.
_IDS = struct.Struct(">BBQQBBQ").pack
_PARENT = struct.Struct(">BBQ").pack
_LOW64 = 2**64 - 1
#: By the enum member's id (``member.value`` is a slow descriptor): the span's kind field (6)
#: and the status code's number; the status field (15) without a message, by that number.
_KIND_FIELDS = {id(kind): b"\x30" + bytes((kind.value + 1,)) for kind in SpanKind}
_STATUS_FIELDS = {
    code.value: (b"\x7a\x02\x18" + bytes((code.value,))) if code.value else b"\x7a\x00" for code in StatusCode
}
_CODE_VALUES = {id(code): code.value for code in StatusCode}
_NO_ATTRIBUTES: dict[str, Any] = {}
#: The kind field by the enum value, as packed spans carry it (span_queue.SpanPacker.pack).
_KIND_FIELDS_BY_VALUE = {kind.value: _KIND_FIELDS[id(kind)] for kind in SpanKind}
#: Entries per cache; a cache that fills up is cleared (values with many distinct forms, such as
#: URL paths with ids, would otherwise grow it without bound).
_CACHE_LIMIT = 16_384
#: Longest encoded attribute pair kept in a cache: with values up to the attribute length limit
#: (4096 characters, or what OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT allows) a full cache could
#: otherwise hold hundreds of megabytes.
_CACHED_PAIR_BYTES = 512


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _prefixed(payload)


def _string(tag: bytes, text: str) -> bytes:
    """A proto3 string field (omitted when empty, as protobuf does)."""
    if not text:
        return b""
    return _field(tag, text.encode("utf-8"))


def _prefixed(payload: bytes) -> bytes:
    """``payload`` after its length: a message field's value, without the tag."""
    n = len(payload)
    if n < 0x80:
        return _SMALL[n] + payload
    if n < 0x4000:  # a span's message, mostly: two bytes
        return bytes((n & 0x7F | 0x80, n >> 7)) + payload
    return _varint(n) + payload


def _times(start: int | None, end: int | None) -> bytes:
    """A span's start (field 7) and end (field 8) time, each omitted when unset."""
    if start and end:
        return _TIMES(0x39, start, 0x41, end)
    return (b"\x39" + _FIXED64(start) if start else b"") + (b"\x41" + _FIXED64(end) if end else b"")


def _status(code: int, description: str | None) -> bytes:
    """A span's status (field 15) for the status code's number and its description."""
    if not description:
        return _STATUS_FIELDS[code]
    return _field(b"\x7a", _string(b"\x12", description) + (b"\x18" + _SMALL[code] if code else b""))


def _any_value(value: Any) -> bytes:
    """The payload of an ``AnyValue`` for ``value``, in the SDK's order of type checks."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"int value out of range: {value}")
        return b"\x18" + _varint(value if value >= 0 else value + 2**64)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join([_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]))
    raise TypeError(f"invalid attribute value type {type(value)}")


def _key_value(key: str, value: Any) -> bytes:
    """The payload of a ``KeyValue``."""
    return _string(b"\x0a", key) + _field(b"\x12", _any_value(value))


def _origin(span: Any) -> tuple[Any, Any]:
    """(resource, scope) of a ``ReadableSpan``, the pair its request groups it under."""
    return span.resource, span.instrumentation_scope or None


class SpanEncoder:
    """Encodes ``ReadableSpan`` batches as ``ExportTraceServiceRequest`` bytes.

    One instance per exporter; ``encode`` may be called from any thread (the caches are plain
    dicts: a lost race only costs a recomputation).
    """

    def __init__(self) -> None:
        #: (field tag, scrubbed?) → {(key, value, type of value) of a str/int/bool attribute →
        #: its whole field (tag, length, KeyValue)}: a span's attributes are then one join. The
        #: scrubbed ones hold what scrubbing leaves of the attribute (valid while the redaction
        #: rules are those of ``_rules``).
        self._fields: dict[tuple[bytes, bool], dict[tuple[str, Any, type], bytes]] = {}
        #: Span name → its field 5, plain and scrubbed.
        self._names: dict[str, bytes] = {}
        self._scrubbed_names: dict[str, bytes] = {}
        #: id(resource or scope) → (the object, its encoded message); the object is kept so the
        #: id cannot be reused by another one while the entry exists.
        self._messages: dict[int, tuple[Any, bytes]] = {}
        self._rules: Any = None

    # -- attributes --------------------------------------------------------------------------

    def _attributes(self, tag: bytes, attributes: Any) -> bytes:
        """Repeated KeyValue field ``tag`` for ``attributes`` (a mapping), in its order."""
        if not attributes:
            return b""
        items = getattr(attributes, "_dict", attributes)  # BoundedAttributes keeps a plain dict
        return self._pairs(tag, items.keys(), items.values(), False)

    def _pairs(self, tag: bytes, keys: Iterable[str], values: Any, scrub: bool) -> bytes:
        """Repeated KeyValue field ``tag`` for ``keys`` and ``values`` (iterated twice); with
        ``scrub``, of the values ``redact_attribute`` leaves.

        Each pair's whole field is cached, so when all are (the common case) the pairs are
        looked up in C and joined; only those not cached yet (an id in a URL path, say) are
        encoded one by one. Floats are not cached: 0.0 and -0.0 are equal keys with different
        encodings, NaN is no key at all, and measured values rarely repeat.
        """
        cache = self._fields.get((tag, scrub))
        if cache is None:
            cache = self._fields[(tag, scrub)] = {}
        try:
            fields: list[Any] = list(map(cache.get, zip(keys, values, map(type, values), strict=True)))
        except TypeError:  # an unhashable value (a list, a mapping): each pair looked at below
            keys, values = tuple(keys), tuple(values)
            fields = [None] * len(keys)
        else:
            try:
                return b"".join(fields)
            except TypeError:  # None where a pair is not cached yet
                keys, values = tuple(keys), tuple(values)
        for index, field in enumerate(fields):
            if field is not None:
                continue
            key, value = keys[index], values[index]
            kind = type(value)
            cacheable = kind is str or kind is int or kind is bool
            if cacheable:
                field = cache.get((key, value, kind))
            if field is None:
                field = tag + _prefixed(_key_value(key, redact_attribute(key, value) if scrub else value))
                if cacheable and len(field) <= _CACHED_PAIR_BYTES:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[(key, value, kind)] = field
            fields[index] = field
        return b"".join(fields)

    # -- resources and scopes ----------------------------------------------------------------

    def _message(self, obj: Any, build: Any) -> bytes:
        entry = self._messages.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        encoded = build(obj)
        if len(self._messages) >= 256:
            self._messages.clear()
        self._messages[id(obj)] = (obj, encoded)
        return encoded

    def _resource(self, resource: Any) -> bytes:
        """``resource`` (field 1 of ResourceSpans, always present) as the SDK encodes it."""
        return _field(b"\x0a", self._attributes(b"\x0a", resource.attributes))

    def _scope(self, scope: Any) -> bytes:
        """``scope`` (field 1 of ScopeSpans, always present) as the SDK encodes it."""
        if scope is None:
            return b"\x0a\x00"
        payload = (
            _string(b"\x0a", scope.name)
            + _string(b"\x12", scope.version or "")
            + self._attributes(b"\x1a", scope.attributes)
        )
        return _field(b"\x0a", payload)

    # -- spans -------------------------------------------------------------------------------

    def _span(self, span: Any) -> bytes:
        """One ``Span`` message, length-prefixed, without the field tag."""
        context = span._context
        if _CONTEXT_AS_TUPLE:
            trace_id, span_id, _, _, trace_state = context[:5]
        else:
            trace_id, span_id, trace_state = context.trace_id, context.span_id, context.trace_state
        parent = span._parent
        name = span._name
        encoded_name = self._names.get(name)
        if encoded_name is None:
            encoded_name = _string(b"\x2a", name)
            if len(self._names) >= _CACHE_LIMIT:
                self._names.clear()
            self._names[name] = encoded_name
        parts = [_IDS(0x0A, 0x10, trace_id >> 64, trace_id & _LOW64, 0x12, 0x08, span_id)]
        if trace_state is not DEFAULT_TRACE_STATE and trace_state:
            parts.append(_string(b"\x1a", ",".join([f"{k}={v}" for k, v in trace_state.items()])))
        remote = False
        if parent is not None:
            if _CONTEXT_AS_TUPLE:
                _, parent_span_id, remote = parent[:3]
            else:
                parent_span_id, remote = parent.span_id, parent.is_remote
            parts.append(_PARENT(0x22, 0x08, parent_span_id))
        parts.append(encoded_name)
        parts.append(_KIND_FIELDS[id(span._kind)])
        parts.append(_times(span._start_time, span._end_time))
        attributes = span._attributes
        if attributes:
            items = getattr(attributes, "_dict", attributes)  # BoundedAttributes keeps a plain dict
            parts.append(self._pairs(b"\x4a", items.keys(), items.values(), False))
            dropped = getattr(attributes, "dropped", 0)
            if dropped:
                parts.append(b"\x50" + _varint(dropped))
        events = span._events
        if events:
            for event in events:
                parts.append(_field(b"\x5a", self._event(event)))
            dropped = getattr(events, "dropped", 0)
            if dropped:
                parts.append(b"\x60" + _varint(dropped))
        links = span._links
        if links:
            for link in links:
                parts.append(_field(b"\x6a", self._link(link)))
            dropped = getattr(links, "dropped", 0)
            if dropped:
                parts.append(b"\x70" + _varint(dropped))
        status = span._status
        parts.append(_status(_CODE_VALUES[id(status.status_code)], status.description))
        parts.append(_FLAGS_REMOTE if remote else _FLAGS_LOCAL)
        return _prefixed(b"".join(parts))

    def _event(self, event: Any) -> bytes:
        timestamp = event.timestamp
        attributes = event.attributes
        payload = (
            (b"\x09" + _FIXED64(timestamp) if timestamp else b"")
            + _string(b"\x12", event.name)
            + self._attributes(b"\x1a", attributes)
        )
        dropped = getattr(attributes, "dropped", 0)
        return payload + (b"\x20" + _varint(dropped) if dropped else b"")

    def _link(self, link: Any) -> bytes:
        context = link.context
        attributes = link.attributes
        dropped = getattr(attributes, "dropped", 0)
        return (
            b"\x0a\x10"
            + context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + context.span_id.to_bytes(8, "big")
            + self._attributes(b"\x22", attributes)
            + (b"\x28" + _varint(dropped) if dropped else b"")
            + (_LINK_FLAGS_REMOTE if context.is_remote else _LINK_FLAGS_LOCAL)
        )

    def encode(self, spans: Sequence[Any]) -> bytes:
        """The ``ExportTraceServiceRequest`` for ``spans``: grouped by resource, then scope, as the SDK does."""
        return self._request([_origin(span) for span in spans], [self._span(span) for span in spans])

    def encode_requests(self, spans: Sequence[Any], limit: int) -> list[tuple[Sequence[Any], bytes]]:
        """``spans`` as consecutive chunks of at most ``limit`` encoded bytes (a span alone may pass it),
        each with its request."""
        encoded = []
        step = gil.pacer().step
        for span in spans:
            encoded.append(self._span(span))
            step()  # the export thread does not hold the GIL for a whole batch
        return self._chunks(spans, [_origin(span) for span in spans], encoded, limit)

    def _chunks(
        self, items: Sequence[Any], origins: list[tuple[Any, Any]], encoded: list[bytes], limit: int
    ) -> list[tuple[Sequence[Any], bytes]]:
        if sum(map(len, encoded)) + len(encoded) <= limit:  # the common case: one request
            return [(items, self._request(origins, encoded))]
        chunks: list[tuple[Sequence[Any], bytes]] = []
        start, total = 0, 0
        for index, item in enumerate(encoded):
            size = len(item) + 1  # and its field tag
            if total + size > limit and index > start:
                chunks.append((items[start:index], self._request(origins[start:index], encoded[start:index])))
                start, total = index, 0
            total += size
        rest = items[start:] if start else items
        chunks.append((rest, self._request(origins[start:], encoded[start:])))
        return chunks

    # -- packed spans ------------------------------------------------------------------------

    def encode_packed_requests(
        self, items: Sequence[Any], packer: Any, scrub: Any, limit: int
    ) -> list[tuple[Sequence[Any], bytes]]:
        """:meth:`encode_requests` of the spans ``packer`` (a ``SpanPacker``) packed as ``items``.

        Reads the tuples themselves instead of rebuilding ``ReadableSpan`` objects first. With
        ``scrub`` (the scrubbing exporter's resource cache) the request is that of the spans as
        ``scrub_span`` leaves them; scrubbed attribute pairs and names are cached in encoded form
        like the others, so a repeated value is scrubbed once. An item the queue holds encoded
        already, ``(origin, bytes)`` from :meth:`encode_ended_span` with the same ``scrub``,
        is joined as it is. A span with events or links, or an item that is not a packed
        tuple, goes through ``unpack``, ``scrub_span`` and :meth:`_span`. The contract is :meth:`encode_requests`'s bytes for the same spans
        (``tests/core/test_span_export.py``).
        """
        if scrub is not None:
            self._follow_rules()
        origins: list[tuple[Any, Any]] = []
        encoded: list[bytes] = []
        table = packer._origins
        step = gil.pacer().step
        #: packed origin → (resource as exported, scope): one object per origin in the batch.
        resolved: dict[Any, tuple[Any, Any]] = {}
        for item in items:
            if type(item) is tuple and len(item) == 2:  # encoded when it ended: (origin, bytes)
                origin, data = item
                pair = resolved.get(origin) if type(origin) is int else None
                if pair is None:
                    pair = resolved[origin] = self._resolve(origin, table, scrub)
                origins.append(pair)
                encoded.append(data)
                continue  # nothing to hand the GIL over for
            if type(item) is tuple and not item[17] and not item[19]:  # no events, no links
                origins.append(self._resolve(item[11], table, scrub))
                encoded.append(self._packed_span(item, scrub is not None))
            else:
                span = packer.unpack(item)
                if scrub is not None:
                    span = scrub_span(span, scrub)
                origins.append(_origin(span))
                encoded.append(self._span(span))
            step()  # the export thread does not hold the GIL for a whole batch
        return self._chunks(items, origins, encoded, limit)

    @staticmethod
    def _resolve(origin: Any, table: Sequence[Any], scrub: Any) -> tuple[Any, Any]:
        """(resource as exported, scope) of a packed span's origin (index or objects)."""
        resource, scope, _ = table[origin] if type(origin) is int else origin
        if scrub is not None:
            resource = scrub.get(resource)
        return resource, scope or None

    def _follow_rules(self) -> None:
        """Forget the scrubbed encodings made under redaction rules that have changed since."""
        if self._rules is not rules_version():
            for (_, scrubbed), cache in self._fields.items():
                if scrubbed:
                    cache.clear()
            self._scrubbed_names.clear()
            self._rules = rules_version()

    def encode_ended_span(self, span: Any, scrub: bool) -> bytes:
        """An ended span without events or links as its ``Span`` message (scrubbed if ``scrub``).

        ``span``: a ``ReadableSpan`` or the SDK's ``Span`` (what ``SpanPacker.pack`` reads).
        What the span adds to a request :meth:`encode_packed_requests` makes, so that the queue
        may hold it as ``(origin, bytes)`` (see ``span_queue.span_encoder``): the same bytes as
        :meth:`_packed_span` of its packed tuple. Raises where that cannot encode the span as
        the SDK would.
        """
        if scrub and self._rules is not rules_version():
            self._follow_rules()
        context = span._context
        if _CONTEXT_AS_TUPLE:
            trace_id, span_id, _, _, state = context[:5]
        else:
            trace_id, span_id, state = context.trace_id, context.span_id, context.trace_state
        parent = span._parent
        attributes = span._attributes
        items = getattr(attributes, "_dict", attributes) or _NO_ATTRIBUTES
        status = span._status
        if status is UNSET_STATUS:
            code, description = 0, None
        else:
            code, description = _CODE_VALUES[id(status.status_code)], status.description
        return self._span_message(
            span._name,
            trace_id,
            span_id,
            None if state is DEFAULT_TRACE_STATE or not state else state.to_header(),
            None if parent is None else parent.span_id,
            None if parent is None else parent.is_remote,
            _KIND_VALUES[id(span._kind)],
            span._start_time,
            span._end_time,
            items.keys(),
            items.values(),
            len(items),
            getattr(attributes, "dropped", 0),
            code,
            description,
            scrub,
        )

    def _packed_span(self, item: tuple[Any, ...], scrub: bool) -> bytes:
        """:meth:`_span` of the span ``item`` was packed from (no events or links), scrubbed if ``scrub``."""
        (name, trace_id, span_id, _, state, _, _, parent_span, _, _, parent_remote, _, kind, start, end,
         _, dropped, _, _, _, _, code, description, count) = item[:_PACKED_FIXED]  # fmt: skip
        values = _PACKED_FIXED + count
        return self._span_message(
            name, trace_id, span_id, state, parent_span, parent_remote, kind, start, end,
            item[_PACKED_FIXED:values], item[values:], count, dropped, code, description, scrub,
        )  # fmt: skip

    def _span_message(
        self,
        name: str,
        trace_id: int,
        span_id: int,
        state: str | None,
        parent_span: int | None,
        parent_remote: bool | None,
        kind: int,
        start: int | None,
        end: int | None,
        keys: Iterable[str],
        values: Any,
        count: int,
        dropped: int,
        code: int,
        description: str | None,
        scrub: bool,
    ) -> bytes:
        """A span without events or links from its fields (as packed: trace state as its header, enum values)."""
        names = self._scrubbed_names if scrub else self._names
        encoded_name = names.get(name)
        if encoded_name is None:
            encoded_name = _string(b"\x2a", redact_text(name) if scrub else name)
            if len(names) >= _CACHE_LIMIT:
                names.clear()
            names[name] = encoded_name
        parts = [_IDS(0x0A, 0x10, trace_id >> 64, trace_id & _LOW64, 0x12, 0x08, span_id)]
        if state:
            parts.append(_string(b"\x1a", state))
        remote = False
        if parent_remote is not None:
            remote = parent_remote
            parts.append(_PARENT(0x22, 0x08, parent_span))
        parts.append(encoded_name)
        parts.append(_KIND_FIELDS_BY_VALUE[kind])
        parts.append(_times(start, end))
        if count:
            parts.append(self._pairs(b"\x4a", keys, values, scrub))
            if dropped:
                parts.append(b"\x50" + _varint(dropped))
        if description and scrub:
            description = redact_text(description)
        parts.append(_status(code, description))
        parts.append(_FLAGS_REMOTE if remote else _FLAGS_LOCAL)
        return _prefixed(b"".join(parts))

    def _request(self, origins: Sequence[tuple[Any, Any]], encoded: list[bytes]) -> bytes:
        """The request of spans ``encoded`` (``_span`` each), of ``origins`` (resource, scope) each."""
        # One resource and scope for all (compared by identity first): the common case.
        if origins and origins.count(origins[0]) == len(origins):
            resource, scope = origins[0]
            groups: dict[Any, dict[Any, list[bytes]]] = {resource: {scope: encoded}}
            return self._grouped_request(groups)
        groups = {}
        # Consecutive spans nearly always share their resource and scope objects; equal but
        # distinct objects still land in one group, as in the SDK (it hashes every span's).
        by_identity: dict[tuple[int, int], list[bytes]] = {}
        for (resource, scope), item in zip(origins, encoded, strict=True):
            key = (id(resource), id(scope))
            target = by_identity.get(key)
            if target is None:
                target = groups.setdefault(resource, {}).setdefault(scope, [])
                by_identity[key] = target
            target.append(item)
        return self._grouped_request(groups)

    def _grouped_request(self, groups: dict[Any, dict[Any, list[bytes]]]) -> bytes:
        """The request of spans encoded and grouped by resource, then scope (in first-seen order)."""
        out = []
        for resource, scopes in groups.items():
            parts = [self._message(resource, self._resource)]
            for scope, encoded_spans in scopes.items():
                scope_parts = [self._message(scope, self._scope) if scope is not None else b"\x0a\x00"]
                if encoded_spans:  # each span is field 2 of ScopeSpans
                    scope_parts.append(b"\x12" + b"\x12".join(encoded_spans))
                schema_url = scope.schema_url if scope is not None else None
                if schema_url:
                    scope_parts.append(_string(b"\x1a", schema_url))
                parts.append(_field(b"\x12", b"".join(scope_parts)))
            if resource.schema_url:
                parts.append(_string(b"\x1a", resource.schema_url))
            out.append(_field(b"\x0a", b"".join(parts)))
        return b"".join(out)


class _Encoded(list):  # type: ignore[type-arg]
    """Spans whose request is already encoded (``payload``): one attempt's data for the SDK exporter."""

    payload = b""


def fast_grpc_span_exporter(*, max_request_bytes: int | None = None, **kwargs: Any) -> Any:
    """The SDK's OTLP/gRPC span exporter (same arguments, retries, logging) with :class:`SpanEncoder`.

    With ``max_request_bytes`` a batch goes out as several requests, cut by their exact encoded
    size; the result is a failure when any of them failed.
    """
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = _exporter_class(OTLPSpanExporter)(**kwargs)
    exporter._otel_trader_encoder = SpanEncoder()  # per exporter: a forked child builds its own
    exporter._otel_trader_limit = max_request_bytes
    return exporter


_classes: dict[type, type] = {}


def _exporter_class(base: type) -> type:
    cls = _classes.get(base)
    if cls is not None:
        return cls
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.sdk.trace.export import SpanExportResult

    service = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"]
    export_path = f"/{service.full_name}/{service.methods_by_name['Export'].name}"
    parse_response = trace_service_pb2.ExportTraceServiceResponse.FromString

    class EncodedRequestStub:
        """``TraceServiceStub`` whose ``Export`` sends a request already serialized (bytes).

        The SDK's stub serializes the message it is given; the request is built as bytes
        here, so parsing it into a message only for gRPC to serialize it again is skipped.
        """

        def __init__(self, channel: Any) -> None:
            self.Export = channel.unary_unary(
                export_path, request_serializer=None, response_deserializer=parse_response
            )

    class FastOTLPSpanExporter(base):  # type: ignore[valid-type, misc]
        """``_translate_data`` is where the SDK's gRPC exporter builds the request of one attempt.

        Its channel's stub is :class:`EncodedRequestStub`, set again whenever the SDK re-creates
        the channel (``_initialize_channel_and_stub`` uses ``self._stub``), so ``_translate_data``
        returns the serialized request.
        """

        _otel_trader_encoder = SpanEncoder()
        _otel_trader_limit: int | None = None

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._stub = EncodedRequestStub
            if self._channel is not None:
                self._client = EncodedRequestStub(self._channel)

        def export(self, spans: Sequence[Any]) -> Any:
            limit = self._otel_trader_limit
            if limit is None:
                return super().export(spans)
            requests: list[tuple[Sequence[Any], bytes | None]]
            try:
                requests = list(self._otel_trader_encoder.encode_requests(spans, limit))
            except Exception:
                # The SDK's encoder decides what it cannot encode; batches are still cut by size.
                from otel_trader.sdk.exporters import span_size, split_by_size

                requests = [(chunk, None) for chunk in split_by_size(spans, span_size, limit)]
            return self._send(requests)

        def export_packed(self, items: Sequence[Any], packer: Any, scrub: Any = None) -> Any:
            """Export packed spans (``span_queue.export_packed``) encoded from the tuples."""
            limit = self._otel_trader_limit
            if limit is None:
                return NotImplemented
            try:
                requests = self._otel_trader_encoder.encode_packed_requests(items, packer, scrub, limit)
            except Exception:
                logger.debug("otel-trader: packed spans encoded the SDK's way", exc_info=True)
                return NotImplemented  # nothing was sent: the caller unpacks them
            return self._send(requests)

        def span_encoder(self, scrub: bool = False) -> Any:
            """What encodes one ended span as :meth:`export_packed` would (``span_queue.span_encoder``)."""
            if self._otel_trader_limit is None:
                return None
            return functools.partial(self._otel_trader_encoder.encode_ended_span, scrub=scrub)

        def _send(self, requests: Sequence[tuple[Sequence[Any], bytes | None]]) -> Any:
            """One request per chunk (its payload when encoded, else the SDK encodes it); a failure if any failed."""
            result = SpanExportResult.SUCCESS
            for chunk, payload in requests:
                data: Any = chunk
                if payload is not None:
                    data = _Encoded(chunk)
                    data.payload = payload
                outcome = super().export(data)
                if outcome is not SpanExportResult.SUCCESS:
                    result = outcome
            return result

        def _translate_data(self, data: Sequence[Any]) -> Any:
            """The serialized ``ExportTraceServiceRequest`` of ``data`` (see the class docstring)."""
            if type(data) is _Encoded:
                return data.payload
            try:
                return self._otel_trader_encoder.encode(data)
            except Exception:
                return super()._translate_data(data).SerializeToString()

    _classes[base] = FastOTLPSpanExporter
    return FastOTLPSpanExporter
