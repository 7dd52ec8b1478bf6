"""Which traces the demo's summary draws, and that closing section of the summary.

The demo's traces reach the SigNoz stand-in's file (OTLP/JSON lines). Of them the summary draws
the slowest trace among those that touch the most kinds of dependency (an order: the request,
the exchange call and its server span, SQL, Redis), and one error trace chosen the same way,
then says how to follow traces live.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from otel_trader.traces.model import KIND_CLIENT, KIND_SERVER, Trace, TraceStore, read_file

__all__ = ["coverage", "demo_section", "pick_error", "pick_slowest", "wait_for_spans"]


def coverage(trace: Trace) -> int:
    """How many kinds of hop the trace shows: services, SQL, Redis, outgoing HTTP."""
    kinds = set()
    for s in trace.spans:
        system = s.attributes.get("db.system.name") or s.attributes.get("db.system")
        if system == "redis":
            kinds.add("redis")
        elif system:
            kinds.add("sql")
        if s.kind == KIND_CLIENT and ("http.request.method" in s.attributes or "http.method" in s.attributes):
            kinds.add("http")
    return len(kinds) + len(trace.services)


def _requests(traces: Iterable[Trace]) -> list[Trace]:
    """Traces started by a request (a SERVER root): not the start-up's lone SQL spans."""
    return [
        t for t in traces if (root := t.root) is not None and not root.parent_id and root.kind == KIND_SERVER
    ]


def pick_slowest(traces: Iterable[Trace]) -> Trace | None:
    """The slowest of the requests with the widest :func:`coverage`."""
    candidates = _requests(traces)
    if not candidates:
        return None
    best = max(coverage(t) for t in candidates)
    return max((t for t in candidates if coverage(t) == best), key=lambda t: t.duration_ns)


def pick_error(traces: Iterable[Trace], besides: Trace | None = None) -> Trace | None:
    """A request with an error span, the widest :func:`coverage` first, then the slowest."""
    candidates = [t for t in _requests(traces) if t.error_count and t is not besides]
    if not candidates:
        return None
    return max(candidates, key=lambda t: (coverage(t), t.duration_ns))


def wait_for_spans(path: Path, expected: float, timeout: float = 5.0) -> TraceStore:
    """The traces in ``path`` once it holds ``expected`` spans (the sink writes every 100 ms), or at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        store = TraceStore(max_traces=1_000_000)
        try:
            count = store.add(read_file(path))
        except (OSError, ValueError):
            count = 0
        if count >= expected or time.monotonic() >= deadline:
            return store
        time.sleep(0.2)


def demo_section(
    sink_file: Path | None, expected_spans: float, *, width: int | None = None, signoz_url: str | None = None
) -> list[str]:
    """The summary's closing lines: the slowest trace and an error trace drawn, how to follow live.

    ``width``: the terminal's (or ``$COLUMNS``) when None, within 80…160, else 120.
    """
    if width is None:
        width = max(80, min(160, shutil.get_terminal_size((120, 24)).columns))
    lines: list[str] = []
    add = lines.append
    if sink_file is None:
        add("traces: sent to SigNoz (SIGNOZ_ENDPOINT); to see an app's traces in the terminal instead:")
        add("  otel-trader traces --grpc 4317   with the app's OTLP_ENDPOINT=127.0.0.1:4317")
        return lines
    store = wait_for_spans(sink_file, expected_spans)
    traces = store.traces()
    try:
        from otel_trader.traces.render import RenderOptions, to_plain
    except ModuleNotFoundError:
        add(f"traces: {len(traces):,} in {sink_file}; pip install 'otel-trader[traces]' to draw them here")
        return lines
    options = RenderOptions(width=width, signoz_url=signoz_url)
    slowest = pick_slowest(traces)
    error = pick_error(traces, besides=slowest)
    add(f"traces: {len(traces):,} in {sink_file}")
    if slowest is not None:
        crossing = " of those reaching the exchange" if len(slowest.services) > 1 else ""
        add("")
        add(f"slowest trace{crossing}:")
        add(to_plain([slowest], options).rstrip("\n"))
    if error is not None:
        add("")
        add("a trace with an error:")
        add(to_plain([error], options).rstrip("\n"))
    elif slowest is not None:
        add("")
        add("no request failed with an error span in this run")
    add("")
    add("follow traces live while the demo runs (--keep-running), e.g. the failed and the slow ones:")
    add(f"  otel-trader traces --follow --errors {sink_file}")
    add(f"  otel-trader traces --follow --min-duration 100ms --route '/orders*' {sink_file}")
    add("  (--keep-logs keeps the file after the run; a bare `otel-trader traces` then reads the newest)")
    add(
        "your own app, without a collector: otel-trader traces --grpc 4317, with OTLP_ENDPOINT=127.0.0.1:4317"
    )
    return lines
