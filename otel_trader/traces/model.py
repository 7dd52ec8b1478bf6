# Long because decoding OTLP JSON and protobuf into one span model, and assembling traces from
# spans that arrive in any order, are one contract tested as a whole.
"""Spans and traces as ``otel-trader traces`` sees them, decoded from OTLP (JSON or protobuf).

Sources: the collector's ``file`` exporter (one OTLP/JSON export request per line, ids in hex,
integers as strings: what the demo's SigNoz stand-in writes), OTLP/HTTP JSON bodies (the same
mapping), and protobuf ``ExportTraceServiceRequest`` messages (OTLP/gRPC and OTLP/HTTP
protobuf). Metric and log lines in the same file are skipped.

A :class:`TraceStore` gathers the spans of each trace as they arrive (one trace's spans come
from several services, in several export requests), bounded in traces held.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import gc
import json
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FileTail",
    "Span",
    "Trace",
    "TraceFilter",
    "TraceStore",
    "paused_gc",
    "read_file",
    "spans_from_json",
    "spans_from_json_line",
    "spans_from_proto",
    "spans_to_json",
]

#: OTLP span kinds (``Span.kind``), as the protobuf enum numbers them.
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 1, 2, 3, 4, 5
#: OTLP status codes.
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

_KIND_NAMES = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": KIND_INTERNAL,
    "SPAN_KIND_SERVER": KIND_SERVER,
    "SPAN_KIND_CLIENT": KIND_CLIENT,
    "SPAN_KIND_PRODUCER": KIND_PRODUCER,
    "SPAN_KIND_CONSUMER": KIND_CONSUMER,
}
_STATUS_NAMES = {
    "STATUS_CODE_UNSET": STATUS_UNSET,
    "STATUS_CODE_OK": STATUS_OK,
    "STATUS_CODE_ERROR": STATUS_ERROR,
}
_HEX = frozenset("0123456789abcdefABCDEF")
#: Extra wait before printing a trace with a span whose parent has not arrived: the SDK's batch
#: processor exports every 5 s by default, so another service's part of a trace can lag that long.
ORPHAN_GRACE_SECONDS = 5.0


@dataclass(slots=True)
class Span:
    """One finished span. Ids are lower-case hex; ``parent_id`` is ``""`` for a root span."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)
    status_code: int = STATUS_UNSET
    status_message: str = ""
    #: ``"Type: message"`` of the span's first ``exception`` event, ``""`` without one.
    exception: str = ""

    @property
    def duration_ns(self) -> int:
        """End minus start, never negative (clock steps can make it so)."""
        return max(0, self.end_ns - self.start_ns)

    @property
    def is_error(self) -> bool:
        """The span's status is ERROR."""
        return self.status_code == STATUS_ERROR


class Trace:
    """The spans received so far for one trace id."""

    __slots__ = ("_by_id", "_children", "_roots", "end_ns", "spans", "start_ns", "trace_id", "updated")

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id
        self.spans: list[Span] = []
        self._by_id: dict[str, Span] = {}
        # Derived views, computed on first use and dropped when a span is added.
        self._roots: list[Span] | None = None
        self._children: dict[str, list[Span]] | None = None
        self.start_ns = 0
        self.end_ns = 0
        #: ``time.monotonic()`` of the last span added (``--follow`` prints a trace once it is quiet).
        self.updated = 0.0

    def add(self, span: Span, now: float | None = None) -> bool:
        """Add ``span``; False (and nothing changes) if a span with its id is already here."""
        if span.span_id in self._by_id:
            return False  # an exporter retry delivered it twice
        self._by_id[span.span_id] = span
        self.spans.append(span)
        self._roots = self._children = None
        if not self.start_ns or span.start_ns < self.start_ns:
            self.start_ns = span.start_ns
        self.end_ns = max(self.end_ns, span.end_ns)
        self.updated = time.monotonic() if now is None else now
        return True

    def span(self, span_id: str) -> Span | None:
        """The span with ``span_id``, if received."""
        return self._by_id.get(span_id)

    @property
    def duration_ns(self) -> int:
        """From the earliest start to the latest end over every span received."""
        return max(0, self.end_ns - self.start_ns)

    def roots(self) -> list[Span]:
        """Spans without a parent in this trace (true roots first, then orphans), by start time."""
        if self._roots is None:
            self._roots = sorted(
                (s for s in self.spans if not s.parent_id or s.parent_id not in self._by_id),
                key=lambda s: (bool(s.parent_id), s.start_ns),
            )
        return list(self._roots)

    @property
    def root(self) -> Span | None:
        """The span that names the trace: its true root, else the earliest orphan."""
        roots = self.roots()
        return roots[0] if roots else None

    def children(self) -> dict[str, list[Span]]:
        """parent span id → its children received so far, each list by start time (do not modify)."""
        if self._children is None:
            out: dict[str, list[Span]] = {}
            for s in self.spans:
                if s.parent_id and s.parent_id in self._by_id:
                    out.setdefault(s.parent_id, []).append(s)
            for kids in out.values():
                kids.sort(key=lambda s: (s.start_ns, s.end_ns))
            self._children = out
        return self._children

    @property
    def services(self) -> list[str]:
        """Services with spans in this trace, in order of their first span's start."""
        seen: dict[str, int] = {}
        for s in self.spans:
            if s.service not in seen or s.start_ns < seen[s.service]:
                seen[s.service] = s.start_ns
        return sorted(seen, key=lambda name: seen[name])

    @property
    def error_count(self) -> int:
        """Spans with ERROR status."""
        return sum(1 for s in self.spans if s.is_error)

    @property
    def routes(self) -> list[str]:
        """``http.route`` of the trace's SERVER spans."""
        return [str(s.attributes["http.route"]) for s in self.spans if "http.route" in s.attributes]


@dataclass(frozen=True)
class TraceFilter:
    """Which traces to show. Every given condition must hold; patterns are shell globs."""

    service: str | None = None
    route: str | None = None
    min_duration_ns: int = 0
    errors_only: bool = False
    trace_id: str | None = None

    def matches(self, trace: Trace) -> bool:
        """Whether ``trace`` passes every condition set."""
        if self.trace_id and not trace.trace_id.startswith(self.trace_id.lower()):
            return False
        if self.min_duration_ns and trace.duration_ns < self.min_duration_ns:
            return False
        if self.errors_only and not any(s.is_error for s in trace.spans):
            return False
        if self.service and not any(_glob(s.service, self.service) for s in trace.spans):
            return False
        if self.route:
            root = trace.root
            names = [*trace.routes, *([root.name] if root is not None else [])]
            if not any(_glob(name, self.route) for name in names):
                return False
        return True


def _glob(value: str, pattern: str) -> bool:
    return value == pattern or fnmatch.fnmatchcase(value, pattern)


class TraceStore:
    """Traces by id, the ``max_traces`` most recently updated kept (older ones are dropped)."""

    def __init__(self, max_traces: int = 20_000) -> None:
        self.max_traces = max_traces
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        #: Trace ids already printed by ``--follow``, mapped to the span count printed then.
        self.printed: dict[str, int] = {}
        self.dropped_traces = 0

    def add(self, spans: Iterable[Span], now: float | None = None) -> int:
        """Add spans (duplicates ignored); returns how many were new."""
        added = 0
        for span in spans:
            trace = self._traces.get(span.trace_id)
            if trace is None:
                trace = self._traces[span.trace_id] = Trace(span.trace_id)
            if trace.add(span, now):
                added += 1
            self._traces.move_to_end(span.trace_id)
        while len(self._traces) > self.max_traces:
            old_id, _ = self._traces.popitem(last=False)
            self.printed.pop(old_id, None)
            self.dropped_traces += 1
        return added

    def __len__(self) -> int:
        return len(self._traces)

    def traces(self) -> list[Trace]:
        """Every trace held, by start time."""
        return sorted(self._traces.values(), key=lambda t: t.start_ns)

    def get(self, trace_id: str) -> Trace | None:
        """The trace with this id or unique id prefix."""
        trace_id = trace_id.lower()
        exact = self._traces.get(trace_id)
        if exact is not None:
            return exact
        found = [t for tid, t in self._traces.items() if tid.startswith(trace_id)]
        return found[0] if len(found) == 1 else None

    def settled(
        self, quiet_seconds: float, now: float | None = None, orphan_grace: float = ORPHAN_GRACE_SECONDS
    ) -> list[tuple[Trace, int]]:
        """Traces to print now, each with the number of its spans printed before (0: new); marked printed.

        A trace is due once no span of it arrived for ``quiet_seconds``, or ``orphan_grace``
        longer while some span's parent is missing (another service's part still on its way).
        A trace that gets more spans after being printed (a slower service exporting later)
        comes back once it is quiet again.
        """
        now = time.monotonic() if now is None else now
        out = []
        for trace in self._traces.values():
            before = self.printed.get(trace.trace_id, 0)
            if before == len(trace.spans):
                continue
            quiet = now - trace.updated
            if quiet < quiet_seconds:
                continue
            if quiet < quiet_seconds + orphan_grace and any(r.parent_id for r in trace.roots()):
                continue
            self.printed[trace.trace_id] = len(trace.spans)
            out.append((trace, before))
        return sorted(out, key=lambda item: item[0].start_ns)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off inside the block (back on after, if it was on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- OTLP/JSON ---------------------------------------------------------------------------------


def _id(value: Any) -> str:
    """A trace/span id as hex: OTLP/JSON writes hex, protobuf's JSON mapping base64."""
    if not value:
        return ""
    text = str(value)
    if len(text) in (16, 32) and _HEX.issuperset(text):
        return text.lower()
    try:
        return base64.b64decode(text, validate=True).hex()
    except (binascii.Error, ValueError):
        return text.lower()


def _json_value(v: Mapping[str, Any]) -> Any:
    if "stringValue" in v:
        return str(v["stringValue"])
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_json_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return _json_attrs(v["kvlistValue"].get("values"))
    if "bytesValue" in v:
        return str(v["bytesValue"])
    return None


def _json_attrs(kvs: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {str(kv.get("key", "")): _json_value(kv.get("value") or {}) for kv in kvs or ()}


def _enum(value: Any, names: Mapping[str, int]) -> int:
    if isinstance(value, str):
        return names.get(value, int(value) if value.isdigit() else 0)
    return int(value or 0)


def _exception_text(attrs: Mapping[str, Any]) -> str:
    kind = str(attrs.get("exception.type") or "")
    message = str(attrs.get("exception.message") or "")
    return f"{kind}: {message}" if kind and message else kind or message


def spans_from_json(doc: Mapping[str, Any]) -> list[Span]:
    """The spans of one OTLP/JSON ``ExportTraceServiceRequest`` (a dict); ``[]`` for other signals."""
    out: list[Span] = []
    for rs in doc.get("resourceSpans") or ():
        resource = _json_attrs((rs.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name") or "unknown_service")
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or ():
            for s in ss.get("spans") or ():
                status = s.get("status") or {}
                exception = ""
                for event in s.get("events") or ():
                    if event.get("name") == "exception":
                        exception = _exception_text(_json_attrs(event.get("attributes")))
                        break
                out.append(
                    Span(
                        trace_id=_id(s.get("traceId")),
                        span_id=_id(s.get("spanId")),
                        parent_id=_id(s.get("parentSpanId")),
                        name=str(s.get("name") or ""),
                        kind=_enum(s.get("kind"), _KIND_NAMES),
                        start_ns=int(s.get("startTimeUnixNano") or 0),
                        end_ns=int(s.get("endTimeUnixNano") or 0),
                        service=service,
                        attributes=_json_attrs(s.get("attributes")),
                        status_code=_enum(status.get("code"), _STATUS_NAMES),
                        status_message=str(status.get("message") or ""),
                        exception=exception,
                    )
                )
    return out


def spans_from_json_line(line: str | bytes) -> list[Span]:
    """Spans of one line of the collector's file output; ``[]`` for metrics, logs and broken lines."""
    if isinstance(line, bytes):
        if b'"resourceSpans"' not in line:
            return []  # metric and log lines are most of the file: skip them unparsed
    elif '"resourceSpans"' not in line:
        return []
    # A line can hold tens of thousands of spans, none in a reference cycle: without the cyclic
    # collector running over them again and again, decoding takes half the time.
    with paused_gc():
        try:
            doc = json.loads(line)
        except ValueError:
            return []  # only a line being written can be incomplete
        return spans_from_json(doc) if isinstance(doc, dict) else []


def read_file(path: str | os.PathLike[str]) -> Iterator[Span]:
    """Every span in a file of OTLP/JSON lines (the collector's ``file`` exporter, ``format: json``)."""
    with open(path, "rb") as f:
        head = f.read(1)
        if head and head not in b"{ \t\r\n":
            raise ValueError(
                f"{path} is not OTLP/JSON lines (the collector's file exporter with format: json); "
                "protobuf files are not supported"
            )
        f.seek(0)
        for line in f:
            yield from spans_from_json_line(line)


class FileTail:
    """Reads a growing file of OTLP/JSON lines: each call returns the spans of the lines completed since.

    A line without its newline yet is kept until the rest arrives; a file that shrank or was
    replaced (rotated, recreated) is read again from its start.
    """

    def __init__(self, path: str | os.PathLike[str], from_start: bool = True) -> None:
        self.path = Path(path)
        self.offset = 0
        self._partial = b""
        self._inode: int | None = None
        if not from_start and self.path.exists():
            self.offset = self.path.stat().st_size

    def read_new(self) -> list[Span]:
        """Spans of the lines completed since the last call (``[]`` while the file is missing)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        size = stat.st_size
        if size < self.offset or (self._inode is not None and stat.st_ino != self._inode):
            self.offset, self._partial = 0, b""
        self._inode = stat.st_ino
        if size == self.offset:
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial = data
            return []
        self._partial = data[cut + 1 :]
        out: list[Span] = []
        for line in data[:cut].split(b"\n"):
            out.extend(spans_from_json_line(line))
        return out


# -- protobuf ----------------------------------------------------------------------------------


def _pb_value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def spans_from_proto(request: Any) -> list[Span]:
    """The spans of a protobuf ``ExportTraceServiceRequest`` (OTLP/gRPC, OTLP/HTTP protobuf)."""
    out: list[Span] = []
    for rs in request.resource_spans:
        service = "unknown_service"
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                service = str(_pb_value(kv.value))
        for ss in rs.scope_spans:
            for s in ss.spans:
                exception = ""
                for event in s.events:
                    if event.name == "exception":
                        exception = _exception_text({kv.key: _pb_value(kv.value) for kv in event.attributes})
                        break
                out.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        name=s.name,
                        kind=int(s.kind),
                        start_ns=int(s.start_time_unix_nano),
                        end_ns=int(s.end_time_unix_nano),
                        service=service,
                        attributes={kv.key: _pb_value(kv.value) for kv in s.attributes},
                        status_code=int(s.status.code),
                        status_message=s.status.message,
                        exception=exception,
                    )
                )
    return out


# -- writing -----------------------------------------------------------------------------------


def _to_json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_to_json_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": _to_json_value(v)} for k, v in value.items()]}}
    return {"stringValue": "" if value is None else str(value)}


def spans_to_json(spans: Iterable[Span]) -> dict[str, Any]:
    """One OTLP/JSON ``ExportTraceServiceRequest`` holding ``spans`` (read back by :func:`spans_from_json`).

    Only what :class:`Span` keeps is written: the resource is reduced to ``service.name`` and
    an exception event to its type and message.
    """
    by_service: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        item: dict[str, Any] = {
            "traceId": s.trace_id,
            "spanId": s.span_id,
            "name": s.name,
            "kind": s.kind,
            "startTimeUnixNano": str(s.start_ns),
            "endTimeUnixNano": str(s.end_ns),
            "attributes": [{"key": k, "value": _to_json_value(v)} for k, v in s.attributes.items()],
            "status": {"code": s.status_code, **({"message": s.status_message} if s.status_message else {})},
        }
        if s.parent_id:
            item["parentSpanId"] = s.parent_id
        if s.exception:
            kind, _, message = s.exception.partition(": ")
            item["events"] = [
                {
                    "name": "exception",
                    "timeUnixNano": str(s.end_ns),
                    "attributes": [
                        {"key": "exception.type", "value": {"stringValue": kind}},
                        {"key": "exception.message", "value": {"stringValue": message}},
                    ],
                }
            ]
        by_service.setdefault(s.service, []).append(item)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "otel_trader.traces"}, "spans": items}],
            }
            for service, items in by_service.items()
        ]
    }
