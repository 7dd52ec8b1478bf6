"""Helpers shared across the tests: ports, stopping processes, bounded waits, reading the sink.

Imported as ``tests.support`` (the repository root is on ``sys.path`` under pytest: ``tests`` is
a package). Ports and processes go through :mod:`otel_trader.collector` — the code the demo and
``otel-trader collector run`` use — so the tests do not carry copies of it. Fixtures stay in the
conftest files (``otelcol_binary`` is in ``tests/conftest.py``).

The readers decode what the SigNoz stand-in (``collector/sink-config.yaml``) writes: one
OTLP/JSON request per line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from otel_trader.collector.ports import free_ports
from otel_trader.collector.process import stop_process

__all__ = ["CollectingSpanExporter", "SinkReader", "free_port", "otlp_attrs", "otlp_value", "stop_process", "wait_for"]


class CollectingSpanExporter:
    """A span exporter keeping every span it is given, and each batch as it came."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.batches: list[list[Any]] = []

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.batches.append(list(spans))
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here."""
        return True


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (nothing listens on it: also a dead endpoint)."""
    return free_ports(1)[0]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.25,
    *,
    retry_on: tuple[type[BaseException], ...] = (OSError, ValueError),
) -> Any:
    """Poll ``predicate()`` until it returns a truthy value, which is returned.

    An exception in ``retry_on`` (a server not up yet, a partly written file) counts as "not
    yet"; any other propagates at once (an assertion in the predicate fails the test). After
    ``timeout`` seconds: ``AssertionError`` naming ``what`` and the last value or exception.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except retry_on as exc:
            last = exc
        if last and not isinstance(last, BaseException):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# -- OTLP/JSON ---------------------------------------------------------------------------------


def otlp_value(v: dict[str, Any]) -> Any:
    """An OTLP/JSON AnyValue → its Python value (``intValue`` is a string in JSON)."""
    for key, cast in (("stringValue", str), ("intValue", int), ("doubleValue", float), ("boolValue", bool)):
        if key in v:
            return cast(v[key])
    if "arrayValue" in v:
        return [otlp_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return otlp_attrs(v["kvlistValue"].get("values"))
    return None


def otlp_attrs(kvs: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    """An OTLP/JSON KeyValue list → {key: value}."""
    return {kv["key"]: otlp_value(kv.get("value", {})) for kv in kvs or []}


class SinkReader:
    """What a SigNoz stand-in wrote to ``self.file``; mixed into a ``SinkProcess``.

    Records are flattened: each span, metric or log record with ``resource`` (and ``attrs``) as
    dicts.
    """

    file: Path

    def raw(self) -> str:
        """The whole file, for "this secret appears nowhere" checks."""
        return self.file.read_text(errors="replace") if self.file.exists() else ""

    def requests(self) -> list[dict[str, Any]]:
        """Every OTLP/JSON request written so far."""
        out = []
        for line in self.raw().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # only a line being written can be incomplete (or a blank one)
        return out

    def spans(self) -> list[dict[str, Any]]:
        """Every span, with ``resource`` and ``attrs`` as dicts."""
        return [
            {**span, "resource": _resource(rs), "attrs": otlp_attrs(span.get("attributes"))}
            for req in self.requests()
            for rs in req.get("resourceSpans", [])
            for ss in rs.get("scopeSpans", [])
            for span in ss.get("spans", [])
        ]

    def metrics(self) -> list[dict[str, Any]]:
        """Every metric, with ``resource`` as a dict."""
        return [
            {**metric, "resource": _resource(rm)}
            for req in self.requests()
            for rm in req.get("resourceMetrics", [])
            for sm in rm.get("scopeMetrics", [])
            for metric in sm.get("metrics", [])
        ]

    def logs(self) -> list[dict[str, Any]]:
        """Every log record, with ``resource``, ``attrs`` and ``body_value`` (the decoded body)."""
        return [
            {
                **rec,
                "resource": _resource(rl),
                "attrs": otlp_attrs(rec.get("attributes")),
                "body_value": otlp_value(rec.get("body", {})),
            }
            for req in self.requests()
            for rl in req.get("resourceLogs", [])
            for sl in rl.get("scopeLogs", [])
            for rec in sl.get("logRecords", [])
        ]


def _resource(entry: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a resourceSpans/resourceMetrics/resourceLogs entry's resource."""
    return otlp_attrs(entry.get("resource", {}).get("attributes"))
