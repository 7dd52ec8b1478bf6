"""How fast ``otel-trader traces`` reads and draws large traces (a benchmark, not a test).

Shapes, each at several sizes:

* ``n+1``: a request whose handler runs one SQL query per item, each with a child span (the
  trace the collapsing is for: 2 × N spans under one parent);
* ``distinct``: N sibling spans with N different names (nothing repeats, so nothing folds
  by name: the sibling cut applies);
* ``deep``: a chain N levels deep (the line budget applies).

For each: decoding one OTLP/JSON line of the trace (as the collector's file exporter writes
it), adding it to a :class:`TraceStore`, and drawing the waterfall as plain text through rich,
best of ``--repeat`` runs; plus the number of lines drawn.

    python benchmarks/traces_render.py [--sizes 1000 5000 20000 100000] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from otel_trader.traces.model import Span, TraceStore, spans_from_json_line, spans_to_json  # noqa: E402
from otel_trader.traces.render import RenderOptions, to_plain  # noqa: E402

BASE = 1_700_000_000_000_000_000
TRACE = "ab" * 16


def _span(i: int, name: str, start_us: float, end_us: float, parent: str = "", **attrs: object) -> Span:
    return Span(
        trace_id=TRACE, span_id=f"{i + 1:016x}", parent_id=parent, name=name, kind=3 if attrs else 1,
        start_ns=BASE + int(start_us * 1000), end_ns=BASE + int(end_us * 1000), service="bench-api",
        attributes=dict(attrs),
    )


def n_plus_one(n: int) -> list[Span]:
    """A request with n/2 SQL queries, each with one child span."""
    root = _span(0, "GET /report", 0, n * 100 + 10, **{"http.route": "/report", "http.response.status_code": 200})
    root.kind = 2
    spans = [root]
    for q in range(n // 2):
        start = 5 + q * 100
        query = _span(
            len(spans), "SELECT shop.db", start, start + 60, root.span_id,
            **{"db.system": "sqlite", "db.statement": "SELECT * FROM orders WHERE id = ?"},
        )
        spans.append(query)
        spans.append(_span(len(spans), "fetch rows", start + 10, start + 50, query.span_id))
    return spans


def distinct(n: int) -> list[Span]:
    """n siblings, every name different."""
    root = _span(0, "batch", 0, n * 10 + 10)
    return [root, *(_span(i, f"job-{i}", i * 10, i * 10 + 8, root.span_id) for i in range(1, n))]


def deep(n: int) -> list[Span]:
    """A chain n levels deep."""
    spans = [_span(0, "level-0", 0, n * 2)]
    for i in range(1, n):
        spans.append(_span(i, f"level-{i}", i, n * 2 - i, spans[-1].span_id))
    return spans


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    options = RenderOptions(width=120)
    rows = []
    print(f"{'shape':9} {'spans':>8} {'decode ms':>10} {'store ms':>9} {'draw ms':>9} {'lines':>6} {'µs/span':>8}")
    for shape in (n_plus_one, distinct, deep):
        for n in args.sizes:
            spans = shape(n)
            line = json.dumps(spans_to_json(spans))
            decode_s, decoded = _best(lambda line=line: spans_from_json_line(line), args.repeat)

            def build(decoded=decoded) -> TraceStore:
                store = TraceStore()
                store.add(decoded)  # type: ignore[arg-type]
                return store

            store_s, store = _best(build, args.repeat)
            (trace,) = store.traces()  # type: ignore[attr-defined]
            draw_s, text = _best(lambda trace=trace: to_plain([trace], options), args.repeat)
            lines = str(text).count("\n")
            total = decode_s + store_s + draw_s
            row = {
                "shape": shape.__name__, "spans": len(spans), "decode_ms": decode_s * 1e3,
                "store_ms": store_s * 1e3, "draw_ms": draw_s * 1e3, "lines": lines,
                "us_per_span": total * 1e6 / len(spans),
            }
            rows.append(row)
            print(
                f"{row['shape']:9} {row['spans']:8,} {row['decode_ms']:10.1f} {row['store_ms']:9.1f} "
                f"{row['draw_ms']:9.1f} {lines:6} {row['us_per_span']:8.1f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
