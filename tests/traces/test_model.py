"""Decoding OTLP into spans and traces: the collector's file output, protobuf, OTLP/JSON's variants."""

from __future__ import annotations

import json

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_trader.traces.model import (
    KIND_CLIENT,
    KIND_SERVER,
    FileTail,
    TraceFilter,
    TraceStore,
    read_file,
    spans_from_json,
    spans_from_json_line,
    spans_from_proto,
    spans_to_json,
)

from .helpers import DEMO_FILE, demo_store, demo_trace, span, trace_of


def test_demo_file_decodes_every_span_and_skips_metrics_and_logs():
    lines = DEMO_FILE.read_text().splitlines()
    expected = sum(
        len(ss["spans"])
        for line in lines
        for rs in json.loads(line).get("resourceSpans", [])
        for ss in rs["scopeSpans"]
    )
    assert any('"resourceMetrics"' in line for line in lines) and any('"resourceLogs"' in line for line in lines)
    spans = list(read_file(DEMO_FILE))
    assert len(spans) == expected > 20
    assert all(len(s.trace_id) == 32 and len(s.span_id) == 16 for s in spans)
    assert {s.service for s in spans} == {"trader-api", "mock-exchange"}


def test_an_order_trace_links_across_both_services():
    trace = demo_trace("POST /orders", error=False)
    root = trace.root
    assert root is not None and root.kind == KIND_SERVER and not root.parent_id
    assert trace.services == ["trader-api", "mock-exchange"]
    children = trace.children()
    exchange_server = next(s for s in trace.spans if s.service == "mock-exchange")
    client = trace.span(exchange_server.parent_id)
    assert client is not None and client.kind == KIND_CLIENT and client.service == "trader-api"
    assert exchange_server in children[client.span_id]
    # Every span but the root hangs under a received parent: the trace is complete.
    assert trace.roots() == [root]
    assert trace.duration_ns == root.duration_ns


def test_errors_are_decoded_from_status_and_exception_events():
    failed = demo_trace("GET /test-error")
    (only,) = failed.spans
    assert only.is_error and only.exception == "RuntimeError: test error from /test-error"
    rejected = demo_trace("POST /orders", error=True)
    (client,) = [s for s in rejected.spans if s.is_error]
    assert client.kind == KIND_CLIENT and client.attributes["http.response.status_code"] == 400
    assert isinstance(client.attributes["http.response.status_code"], int)  # "400" in JSON


def _sdk_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    attributes = {"n": 3, "f": 1.5, "ok": True, "l": ["a", "b"]}
    with (
        tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER, attributes={"http.route": "/x"}),
        tracer.start_as_current_span("child", attributes=attributes) as c,
    ):
        c.record_exception(ValueError("bad value"))
        c.set_status(Status(StatusCode.ERROR, "it broke"))
    provider.shutdown()
    return exporter.get_finished_spans()


def test_protobuf_and_both_json_mappings_decode_alike():
    request = encode_spans(_sdk_spans())
    from_proto = spans_from_proto(request)
    # protobuf's own JSON mapping: base64 ids, enum names, camelCase; OTLP/JSON's is hex ids, numbers.
    from_pb_json = spans_from_json(MessageToDict(request))
    from_ours = spans_from_json(json.loads(json.dumps(spans_to_json(from_proto))))
    assert from_proto == from_pb_json == from_ours
    server, child = sorted(from_proto, key=lambda s: s.start_ns)
    assert child.parent_id == server.span_id and server.kind == KIND_SERVER and server.service == "sdk-svc"
    assert child.attributes == {"n": 3, "f": 1.5, "ok": True, "l": ["a", "b"]}
    assert child.is_error and child.status_message == "it broke" and child.exception == "ValueError: bad value"


def test_broken_and_foreign_lines_are_skipped():
    good = DEMO_FILE.read_text().splitlines()[0]
    assert spans_from_json_line(good)
    assert spans_from_json_line(good[: len(good) // 2]) == []  # being written
    assert spans_from_json_line('{"resourceMetrics": []}') == []
    assert spans_from_json_line('["resourceSpans"]') == []


def test_protobuf_files_are_refused_with_a_reason(tmp_path):
    path = tmp_path / "traces.pb"
    path.write_bytes(b"\x00\x00\x01\x00" + encode_spans(_sdk_spans()).SerializeToString())
    with pytest.raises(ValueError, match="not OTLP/JSON lines"):
        list(read_file(path))


def test_file_tail_returns_completed_lines_only_and_restarts_after_truncation(tmp_path):
    lines = DEMO_FILE.read_text().splitlines(keepends=True)
    path = tmp_path / "sink.jsonl"
    tail = FileTail(path)
    assert tail.read_new() == []  # no file yet
    path.write_text(lines[0][:100])
    assert tail.read_new() == []
    with path.open("a") as f:
        f.write(lines[0][100:])
    first = tail.read_new()
    assert first == spans_from_json_line(lines[0]) and first
    with path.open("a") as f:
        f.write(lines[3])
    assert tail.read_new() == spans_from_json_line(lines[3])
    path.write_text(lines[0])  # rotated: shorter than what was read
    assert tail.read_new() == first


def test_store_ignores_duplicates_and_bounds_the_traces_held():
    store = TraceStore(max_traces=2)
    a = span("a", 0, 1, trace_id="a" * 32)
    assert store.add([a, a]) == 1
    store.add([span("b", 0, 1, trace_id="b" * 32), span("c", 0, 1, trace_id="c" * 32)])
    assert len(store) == 2 and store.get("a" * 32) is None and store.dropped_traces == 1
    assert store.get("ccc") is not None  # a unique prefix


def test_settled_waits_for_quiet_and_reprints_a_trace_that_grew():
    store = TraceStore()
    root = span("root", 0, 10)
    store.add([root], now=100.0)
    assert store.settled(1.0, now=100.5) == []
    (due,) = store.settled(1.0, now=101.0)
    trace = due[0]
    assert due == (trace, 0)  # new: nothing of it printed before
    assert store.settled(1.0, now=105.0) == []  # printed once
    store.add([span("late", 2, 3, root)], now=106.0)
    assert store.settled(1.0, now=106.5) == []
    assert store.settled(1.0, now=107.0) == [(trace, 1)] and len(trace.spans) == 2


def test_a_trace_missing_a_parent_waits_longer_for_it():
    store = TraceStore()
    root = span("root", 0, 10)
    child = span("exchange", 2, 8, root, service="other")
    store.add([child], now=100.0)  # the other service exported first
    assert store.settled(1.0, now=101.0, orphan_grace=5.0) == []
    store.add([root], now=102.0)
    (due,) = store.settled(1.0, now=103.0, orphan_grace=5.0)  # complete: no grace needed
    assert len(due[0].spans) == 2
    lonely = span("lonely", 0, 1, trace_id="c" * 32)
    lonely.parent_id = "e" * 16
    store.add([lonely], now=200.0)
    assert store.settled(1.0, now=205.9, orphan_grace=5.0) == []
    assert [t.trace_id for t, _ in store.settled(1.0, now=206.0, orphan_grace=5.0)] == ["c" * 32]


def test_filters():
    store = demo_store()
    traces = store.traces()

    def ids(f: TraceFilter) -> set[str]:
        return {t.trace_id for t in traces if f.matches(t)}

    everything = ids(TraceFilter())
    assert len(everything) == len(traces) == 7
    errors = ids(TraceFilter(errors_only=True))
    assert errors == {t.trace_id for t in traces if any(s.is_error for s in t.spans)} and len(errors) == 2
    exchange = ids(TraceFilter(service="mock-exchange"))
    assert exchange == {t.trace_id for t in traces if "mock-exchange" in t.services} and len(exchange) == 2
    assert ids(TraceFilter(service="mock-*")) == exchange
    orders = ids(TraceFilter(route="/orders"))
    assert orders == exchange  # exactly the route, not /orders/{order_id}
    assert len(ids(TraceFilter(route="/orders*"))) == 3
    assert ids(TraceFilter(route="POST /orders")) == orders  # the root span's name works too
    slow = ids(TraceFilter(min_duration_ns=100_000_000))
    assert slow == {t.trace_id for t in traces if t.duration_ns >= 100_000_000} and 0 < len(slow) < 7
    some = traces[3].trace_id
    assert ids(TraceFilter(trace_id=some[:10].upper())) == {some}
    assert ids(TraceFilter(errors_only=True, route="/orders")) == errors & orders


def test_orphans_count_as_roots_after_the_true_root():
    root = span("root", 0, 10)
    orphan = span("orphan", 1, 2)
    orphan.parent_id = "f" * 16  # its parent was never received
    trace = trace_of(orphan, root)
    assert trace.roots() == [root, orphan] and trace.root is root
