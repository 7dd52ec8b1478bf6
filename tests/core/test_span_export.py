"""The span export path: the queue's packed spans and the direct OTLP encoder keep every span as it was.

``SpanPacker`` (what the batch queue holds) and ``SpanEncoder`` (what the gRPC exporter sends)
replace SDK code on the hot path; both are checked against the SDK's own output for spans
with every feature: remote parents and trace state, links, events, exceptions, dropped
attributes/events/links, every attribute value type, non-ASCII text, several resources and scopes.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from otel_trader.sdk.span_encoding import SpanEncoder, fast_grpc_span_exporter
from otel_trader.sdk.span_queue import CompactBatchSpanProcessor, SpanPacker
from tests.support import CollectingSpanExporter


def make_spans() -> list[ReadableSpan]:
    collect = CollectingSpanExporter()
    limits = SpanLimits(max_span_attributes=12, max_events=2, max_links=1, max_event_attributes=1)
    resources = [
        Resource({"service.name": "bot", "n": 3, "f": 1.5, "tags": ("a", "b")}, schema_url="https://r"),
        Resource({"service.name": "other"}),
    ]
    spans: list[ReadableSpan] = []
    for resource in resources:
        provider = TracerProvider(resource=resource, span_limits=limits)
        provider.add_span_processor(SimpleSpanProcessor(collect))
        scoped = provider.get_tracer("otel_trader.http", "1.2", schema_url="https://opentelemetry.io/schemas/1.44.0")
        plain = provider.get_tracer("plain")
        remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")]))
        parent = trace.set_span_in_context(NonRecordingSpan(remote))
        attributes = {
            "s": "v",
            "empty": "",
            "ü": "ßé ✓",
            "yes": True,
            "no": False,
            "neg": -5,
            "big": 2**62,
            "zero": 0,
            "f": 0.25,
            "ints": [1, 2],
            "strs": ["x", ""],
            "bools": [True],
        }
        with scoped.start_as_current_span("GET /orders/{oid}", context=parent, kind=SpanKind.SERVER, attributes=attributes) as span:
            span.add_event("ev", {"a": 1, "b": 2})
            span.add_event("", timestamp=5)
            span.add_event("third")
            for i in range(3):
                span.set_attribute(f"extra{i}", i)
            span.set_status(Status(StatusCode.ERROR, "bad"))
            with plain.start_as_current_span("child", links=[Link(remote, {"la": "x"}), Link(SpanContext(1, 2, False))]) as child:
                child.set_status(Status(StatusCode.OK))
            with pytest.raises(ValueError), plain.start_as_current_span("ünïcode", kind=SpanKind.CONSUMER):
                raise ValueError("boom ü")
        with plain.start_as_current_span("", kind=SpanKind.PRODUCER):
            pass
    spans.extend(collect.spans)
    return spans


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    made = make_spans()
    assert any(s.dropped_attributes for s in made) and any(s.dropped_events for s in made)
    assert any(s.dropped_links for s in made)
    return made


def test_the_encoder_writes_what_the_sdk_encoder_builds(spans):
    encoder = SpanEncoder()
    reference = encode_spans(spans)
    ours = encoder.encode(spans)
    assert ExportTraceServiceRequest.FromString(ours) == reference
    assert ours == reference.SerializeToString()
    assert encoder.encode(spans) == ours  # from its caches too
    for one in spans:
        assert encoder.encode([one]) == encode_spans([one]).SerializeToString()


def test_values_the_sdk_refuses_to_encode_make_the_exporter_use_the_sdk_encoder(spans, caplog):
    odd = ReadableSpan(
        name="odd",
        context=spans[0].context,
        resource=spans[0].resource,
        attributes={"huge": 2**70, "ok": "x"},
        start_time=1,
        end_time=2,
    )
    with pytest.raises(ValueError):
        SpanEncoder().encode([odd])
    exporter = fast_grpc_span_exporter(endpoint="127.0.0.1:9", insecure=True)
    try:
        request = ExportTraceServiceRequest.FromString(exporter._translate_data([odd]))
    finally:
        exporter.shutdown()
    assert request == encode_spans([odd])  # the SDK drops the key and logs it, as before
    assert [kv.key for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes] == ["ok"]
    assert "huge" in caplog.text


def test_packed_spans_come_back_unchanged(spans):
    packer = SpanPacker()
    for span in spans:
        back = packer.unpack(packer.pack(span))
        assert back.to_json() == span.to_json()
        assert encode_spans([back]) == encode_spans([span])
        assert (back.dropped_attributes, back.dropped_events, back.dropped_links) == (
            span.dropped_attributes,
            span.dropped_events,
            span.dropped_links,
        )
        assert back.instrumentation_scope == span.instrumentation_scope
        assert back.resource is span.resource


def test_queued_spans_are_not_tracked_by_the_gc_and_export_unchanged():
    """Nothing a queued span holds stays in the GC's young generation, so none of it is ever promoted."""
    collect = CollectingSpanExporter()
    processor = CompactBatchSpanProcessor(collect, schedule_delay_millis=60_000, max_export_batch_size=512)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(100):
        with tracer.start_as_current_span("op", attributes={"i": i, "symbol": "BTC-USDT", "side": "buy"}):
            pass
    queue = [item for lane in processor._lanes for item in lane._batch_processor._queue]
    assert len(queue) == 100
    gc.collect(0)
    tracked = [item for item in queue if gc.is_tracked(item) or any(gc.is_tracked(part) for part in item)]
    assert tracked == []
    processor.force_flush()
    exported = collect.spans
    assert [s.attributes["i"] for s in exported] == list(range(99, -1, -1)) or sorted(
        s.attributes["i"] for s in exported
    ) == list(range(100))
    assert all(isinstance(s, ReadableSpan) and s.name == "op" for s in exported)
    processor.shutdown()


def test_the_compact_processor_keeps_the_sdk_processors_behaviour():
    collect = CollectingSpanExporter()
    processor = CompactBatchSpanProcessor(collect, schedule_delay_millis=60_000, max_export_batch_size=10, max_queue_size=20)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(25):  # past the queue size: the oldest are dropped, as the SDK does
        with tracer.start_as_current_span("op", attributes={"i": i}):
            pass
    deadline = time.monotonic() + 10
    while len(collect.spans) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    processor.force_flush()
    assert all(len(batch) <= 10 for batch in collect.batches)
    assert 20 <= len(collect.spans) <= 25
    unsampled = TracerProvider(sampler=__import__("opentelemetry.sdk.trace.sampling", fromlist=["x"]).ALWAYS_OFF)
    unsampled.add_span_processor(processor)
    with unsampled.get_tracer("t").start_as_current_span("dropped"):
        pass
    processor.force_flush()
    assert "dropped" not in [s.name for s in collect.spans]
    processor.shutdown()


def test_spans_fill_one_lane_s_batch_then_the_other_s():
    collect = CollectingSpanExporter()
    processor = CompactBatchSpanProcessor(collect, schedule_delay_millis=60_000, max_export_batch_size=50, max_queue_size=200)
    assert len(processor._lanes) == 2
    assert [lane._batch_processor._max_queue_size for lane in processor._lanes] == [100, 100]
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(120):
        with tracer.start_as_current_span("op", attributes={"i": i}):
            pass
    assert processor.force_flush(10_000)
    assert sorted(s.attributes["i"] for s in collect.spans) == list(range(120))
    # Every export holds consecutive spans of one lane's share: 0-49, 50-99 and 100-119.
    groups = sorted(sorted(s.attributes["i"] for s in batch) for batch in collect.batches)
    assert [(g[0] // 50, g[-1] // 50) for g in groups] == [(0, 0), (1, 1), (2, 2)]
    small = CompactBatchSpanProcessor(collect, max_export_batch_size=512, max_queue_size=600)
    assert len(small._lanes) == 1  # a queue too small for two batches keeps one lane
    processor.shutdown()
    small.shutdown()


def test_the_grpc_exporter_cuts_batches_by_their_encoded_size(spans):
    from opentelemetry.sdk.trace.export import SpanExportResult

    base = spans[0]
    batch = [
        ReadableSpan(
            name=f"s{i}",
            context=base.context,
            resource=base.resource,
            attributes={"url.path": "x" * (100_000 if i % 4 == 0 else 20)},
            start_time=1,
            end_time=2,
        )
        for i in range(64)
    ]
    exporter = fast_grpc_span_exporter(endpoint="127.0.0.1:9", insecure=True, max_request_bytes=500_000)
    sent: list[Any] = []
    outcomes = iter([SpanExportResult.SUCCESS, SpanExportResult.FAILURE])

    def attempt(data: Any) -> Any:
        sent.append((list(data), ExportTraceServiceRequest.FromString(exporter._translate_data(data))))
        return next(outcomes, SpanExportResult.SUCCESS)

    exporter._export = attempt
    try:
        assert exporter.export(batch) is SpanExportResult.FAILURE  # the second request failed
    finally:
        exporter.shutdown()
    assert [s for chunk, _ in sent for s in chunk] == batch  # order kept, nothing lost
    assert len(sent) == 4
    for chunk, request in sent:
        assert request == encode_spans(chunk)
        assert request.ByteSize() <= 500_000 + 100


BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.c2ln"


def secret_spans() -> list[ReadableSpan]:
    """Spans carrying secrets where scrubbing looks: name, attributes, status, resource."""
    collect = CollectingSpanExporter()
    resource = Resource({"service.name": "bot", "bot.telegram_url": "https://api.telegram.org/bot123456:AAH" + "x" * 32})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(collect))
    tracer = provider.get_tracer("otel_trader.http")
    for i in range(3):
        attributes = {
            "url.query": f"symbol=BTCUSDT&api_key=AKsecret{i}&signature=deadbeef{i}",
            "exchange.api_key": "AKplain",
            "exchange.api_secret": 12345,  # a sensitive key's value is REDACTED whatever its type
            "http.request.header.authorization": (BEARER,),
            "order.qty": 2,
            "db.statement": "ALTER USER trader WITH PASSWORD 'pg-s3cr3t'",
        }
        with tracer.start_as_current_span(f"POST /bot123456:AAH{'y' * 32}/send", attributes=attributes) as span:
            span.set_status(Status(StatusCode.ERROR, f"failed with {BEARER}"))
    with tracer.start_as_current_span("clean", attributes={"s": "v"}):
        pass
    return collect.spans


@pytest.mark.parametrize("early", [False, True], ids=["packed", "encoded as they ended"])
@pytest.mark.parametrize("scrubbed", [False, True], ids=["as is", "scrubbed"])
@pytest.mark.parametrize("limit", [2 * 1024 * 1024, 700], ids=["one request", "cut by size"])
def test_packed_spans_encode_to_the_requests_of_the_spans_they_were_packed_from(spans, scrubbed, limit, early):
    from otel_trader.sdk.scrubbing import _ResourceCache, scrub_span

    batch = [*spans, *secret_spans()]
    packer = SpanPacker()
    items = [packer.pack(span) for span in batch]
    rebuilt = [packer.unpack(item) for item in items] + [batch[0]]
    encoder = SpanEncoder()
    if early:  # what the queue holds where the exporter encodes spans as they end
        items = [
            (packer.origin_of(span), encoder.encode_ended_span(span, scrubbed)) if not item[17] and not item[19] else item
            for span, item in zip(batch, items, strict=True)
        ]
        assert sum(len(item) == 2 for item in items) > 3 and sum(len(item) > 2 for item in items) > 3
    items.append(batch[0])  # an item the queue kept unpacked (another span implementation)
    reference_spans = [scrub_span(s, _ResourceCache()) for s in rebuilt] if scrubbed else rebuilt
    reference = SpanEncoder().encode_requests(reference_spans, limit)
    for _ in range(2):  # and again from its caches
        ours = encoder.encode_packed_requests(items, packer, _ResourceCache() if scrubbed else None, limit)
        assert [payload for _, payload in ours] == [payload for _, payload in reference]
        assert [list(chunk) for chunk, _ in ours] == [items[i : i + len(c)] for i, c in _starts(reference)]
    assert (len(ours) == 1) if limit > 10_000 else (len(ours) > 3)
    request = b"".join(payload for _, payload in ours)
    secrets = [b"AKsecret", b"AKplain", b"deadbeef", b"pg-s3cr3t", b"eyJhbGci", b"AAHyyy", b"AAHxxx"]
    leaked = [s for s in secrets if s in request]
    assert leaked == ([] if scrubbed else secrets)
    if scrubbed:  # the SDK's own encoder agrees on what the scrubbed spans are
        whole = encoder.encode_packed_requests(items, packer, _ResourceCache(), 2 * 1024 * 1024)
        assert ExportTraceServiceRequest.FromString(whole[0][1]) == encode_spans(reference_spans)


def _starts(chunks: list[tuple[Any, bytes]]) -> list[tuple[int, Any]]:
    out, start = [], 0
    for chunk, _ in chunks:
        out.append((start, chunk))
        start += len(chunk)
    return out


def test_packed_scrubbing_follows_keys_added_after_values_were_cached(monkeypatch):
    from otel_trader import redaction
    from otel_trader.sdk.scrubbing import _ResourceCache

    monkeypatch.setattr(redaction, "_user_phrases", frozenset())
    monkeypatch.setattr(redaction, "_stems", redaction._stems)
    monkeypatch.setattr(redaction, "_key_cache", {})
    collect = CollectingSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collect))
    with provider.get_tracer("t").start_as_current_span("op", attributes={"desk_pin": "4321"}):
        pass
    packer = SpanPacker()
    item = packer.pack(collect.spans[0])
    encoder = SpanEncoder()
    assert b"4321" in encoder.encode_packed_requests([item], packer, _ResourceCache(), 10**6)[0][1]
    redaction.add_redact_keys("desk-pin")
    try:
        assert b"4321" not in encoder.encode_packed_requests([item], packer, _ResourceCache(), 10**6)[0][1]
    finally:
        redaction._redact_short.cache_clear()


class Proxy(SpanExporter):
    """A wrapper of another exporter that does not know packed spans (it proxies everything else)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[Any] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.seen.extend(spans)
        return self.inner.export(spans)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("proxied", [False, True], ids=["product chain", "unknown wrapper inside"])
def test_the_export_chain_sends_packed_spans_scrubbed_or_unpacks_them_for_a_wrapper_that_does_not_know_them(proxied):
    from otel_trader.sdk.exporters import ForkSafe
    from otel_trader.sdk.scrubbing import ScrubbingSpanExporter, scrub_span

    grpc_exporter = fast_grpc_span_exporter(endpoint="127.0.0.1:9", insecure=True, max_request_bytes=2 * 1024 * 1024)
    sent: list[Any] = []

    def attempt(data: Any) -> Any:
        sent.append((data, ExportTraceServiceRequest.FromString(grpc_exporter._translate_data(data))))
        return SpanExportResult.SUCCESS

    grpc_exporter._export = attempt
    proxy = Proxy(grpc_exporter)
    chain = ScrubbingSpanExporter(ForkSafe(lambda: proxy if proxied else grpc_exporter, None, "spans"))
    processor = CompactBatchSpanProcessor(chain, schedule_delay_millis=60_000, max_export_batch_size=512)
    originals = secret_spans()
    for span in originals:
        processor.on_end(span)
    try:
        assert processor.force_flush(10_000)
    finally:
        processor.shutdown()
    ((data, request),) = sent
    assert request == encode_spans([scrub_span(s) for s in originals])
    assert "AKsecret" not in str(request) and "REDACTED" in str(request)
    if proxied:  # the wrapper saw the spans, rebuilt and scrubbed, as exporters always do
        assert [s.name for s in proxy.seen] == [scrub_span(s).name for s in originals]
        assert all(isinstance(s, ReadableSpan) for s in data)
    else:  # the spans were encoded as they ended, and the queue held (origin, bytes)
        assert all(type(item) is tuple and len(item) == 2 and type(item[1]) is bytes for item in data)


def test_a_span_the_fast_encoder_refuses_goes_the_sdk_s_way_beside_spans_encoded_as_they_ended(caplog):
    """Encoded spans cannot be rebuilt: when the batch falls back, they go in a request of their own."""
    from otel_trader.sdk.exporters import ForkSafe
    from otel_trader.sdk.scrubbing import ScrubbingSpanExporter

    grpc_exporter = fast_grpc_span_exporter(endpoint="127.0.0.1:9", insecure=True, max_request_bytes=2 * 1024 * 1024)
    sent: list[Any] = []

    def attempt(data: Any) -> Any:
        sent.append(ExportTraceServiceRequest.FromString(grpc_exporter._translate_data(data)))
        return SpanExportResult.SUCCESS

    grpc_exporter._export = attempt
    chain = ScrubbingSpanExporter(ForkSafe(lambda: grpc_exporter, None, "spans"))
    processor = CompactBatchSpanProcessor(chain, schedule_delay_millis=60_000, max_export_batch_size=512)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(3):
        with tracer.start_as_current_span("fine", attributes={"i": i}):
            pass
    with tracer.start_as_current_span("odd", attributes={"huge": 2**70, "ok": "x"}):
        pass
    queued = [item for batcher in processor._batchers for item in batcher._queue]
    assert sorted(len(item) for item in queued)[:3] == [2, 2, 2] and max(len(item) for item in queued) > 2
    try:
        assert processor.force_flush(10_000)
    finally:
        processor.shutdown()
    names = sorted(span.name for request in sent for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans)
    assert names == ["fine", "fine", "fine", "odd"]
    (odd,) = [span for r in sent for rs in r.resource_spans for ss in rs.scope_spans for span in ss.spans if span.name == "odd"]
    assert [kv.key for kv in odd.attributes] == ["ok"]  # the SDK's encoder dropped the key and logged it
    assert "huge" in caplog.text
    assert len(sent) == 2 and "could not be exported" not in caplog.text


def test_the_serialized_request_reaches_a_grpc_server_also_after_the_channel_is_re_created(spans):
    """The exporter's stub sends bytes; the SDK re-creates channel and stub on UNAVAILABLE."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    from tests.support import free_port

    received: list[Any] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    port = free_port()

    def serve() -> Any:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        return server

    exporter = fast_grpc_span_exporter(
        endpoint=f"127.0.0.1:{port}", insecure=True, timeout=10, max_request_bytes=2 * 1024 * 1024
    )
    packer = SpanPacker()
    items = [packer.pack(span) for span in spans]
    server = serve()
    try:
        assert exporter.export_packed(items, packer) is SpanExportResult.SUCCESS
        server.stop(0).wait()
        server = serve()  # a restarted collector: the first attempt fails UNAVAILABLE, the retry goes through
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter._initialize_channel_and_stub()  # what the SDK does after an UNAVAILABLE error
        assert type(exporter._client).__name__ == "EncodedRequestStub"
        assert exporter.export(spans[:3]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
        server.stop(0)
    assert received[0] == encode_spans(spans) == received[1]
    assert received[2] == encode_spans(spans[:3])


def test_long_attribute_values_are_encoded_but_not_kept_in_the_caches():
    from otel_trader.sdk.scrubbing import _ResourceCache

    collect = CollectingSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collect))
    with provider.get_tracer("t").start_as_current_span("op", attributes={"url.path": "/x/" + "y" * 2000, "side": "buy"}):
        pass
    (span,) = collect.spans
    packer = SpanPacker()
    encoder = SpanEncoder()
    for _ in range(2):
        (_, payload), = encoder.encode_packed_requests([packer.pack(span)], packer, _ResourceCache(), 10**6)
        assert ExportTraceServiceRequest.FromString(payload) == encode_spans([span])
        assert encoder.encode([span]) == payload
    kept = [value for cache in encoder._fields.values() for (_, value, _) in cache]
    assert kept.count("buy") == 2 and not [v for v in kept if v.startswith("/x/")]


def test_equal_values_of_other_types_or_signs_keep_their_own_encoding():
    """1, True and 1.0 are equal dict keys, and so are 0.0 and -0.0; the cached fields must not mix them."""
    collect = CollectingSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collect))
    tracer = provider.get_tracer("t")
    for value in (1, True, 1.0, 0.0, -0.0, float("nan"), float("nan"), [1, 2], 0, False):
        with tracer.start_as_current_span("op", attributes={"v": value, "side": "buy"}) as span:
            span.add_event("fill", {"v": value})  # event attributes go through the same caches
    spans = collect.spans
    packer = SpanPacker()
    encoder = SpanEncoder()
    for _ in range(2):  # the second time from the caches
        for span in spans:
            expected = encode_spans([span]).SerializeToString()
            assert encoder.encode([span]) == expected
            (_, payload), = encoder.encode_packed_requests([packer.pack(span)], packer, None, 10**6)
            assert payload == expected
