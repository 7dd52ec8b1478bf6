"""Re-record ``tests/traces/data/demo-traces.jsonl`` from a real demo run (not a test).

``python tests/traces/record_fixture.py`` runs ``python -m otel_trader.demo --keep-logs`` (our
SDK → otelcol-trader → the SigNoz stand-in's ``file`` exporter), then keeps a few traces of its
``signoz-sink.jsonl`` with the lines' OTLP/JSON structure intact: the slowest filled order
(request → exchange call → SQL → Redis), a rejected order (the exchange call is an error),
``/test-error`` (an exception), ``/random_sleep``, a cache read, an unmatched path and one
start-up SQL span. One metrics line and one logs line are kept as well, so readers are tested
on a file holding every signal. Needs ``collector/bin/otelcol-trader`` and ``redis-server``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "data" / "demo-traces.jsonl"


def _spans(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (s["traceId"], s)
        for rs in doc.get("resourceSpans", [])
        for ss in rs.get("scopeSpans", [])
        for s in ss.get("spans", [])
    ]


def _trim(doc: dict[str, Any], keep: set[str]) -> dict[str, Any] | None:
    out = []
    for rs in doc.get("resourceSpans", []):
        scopes = []
        for ss in rs.get("scopeSpans", []):
            spans = [s for s in ss.get("spans", []) if s["traceId"] in keep]
            for s in spans:
                for event in s.get("events", []):  # long stack traces: the fixture stays small
                    for kv in event.get("attributes", []):
                        if kv["key"] == "exception.stacktrace":
                            kv["value"]["stringValue"] = kv["value"]["stringValue"][-400:]
            if spans:
                scopes.append({**ss, "spans": spans})
        if scopes:
            out.append({**rs, "scopeSpans": scopes})
    return {"resourceSpans": out} if out else None


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_", "OTLP_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "otel_trader.demo", "--requests", "200", "--keep-logs", "--seed", "7"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
        return 1
    run_dir = Path(re.search(r"^logs: (.+)$", proc.stderr, re.M).group(1))  # type: ignore[union-attr]
    lines = (run_dir / "signoz-sink.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        for trace_id, span in _spans(doc):
            by_trace.setdefault(trace_id, []).append(span)

    def root(trace_id: str) -> dict[str, Any]:
        spans = by_trace[trace_id]
        ids = {s["spanId"] for s in spans}
        return next(s for s in spans if s.get("parentSpanId") not in ids)

    def duration(trace_id: str) -> int:
        spans = by_trace[trace_id]
        return max(int(s["endTimeUnixNano"]) for s in spans) - min(int(s["startTimeUnixNano"]) for s in spans)

    def named(name: str) -> list[str]:
        return [t for t in by_trace if root(t)["name"] == name]

    def is_error(trace_id: str) -> bool:
        return any(s.get("status", {}).get("code") == 2 for s in by_trace[trace_id])

    orders = named("POST /orders")
    filled = [t for t in orders if len(by_trace[t]) >= 9 and not is_error(t)]
    rejected = [t for t in orders if is_error(t)]
    keep = {
        max(filled, key=duration),
        rejected[0],
        named("GET /test-error")[0],
        max(named("GET /random_sleep"), key=duration),
        [t for t in named("GET /orders/{order_id}") if len(by_trace[t]) >= 2][0],
        named("GET")[0],
        named("connect")[0],
    }
    out = []
    for doc in docs:
        trimmed = _trim(doc, keep)
        if trimmed is not None:
            out.append(json.dumps(trimmed, separators=(",", ":")))
    metrics = next(line for line in lines if '"resourceMetrics"' in line)
    logs = next(line for line in lines if '"resourceLogs"' in line)
    out.insert(1, metrics if len(metrics) < 4000 else _small(metrics, "resourceMetrics"))
    out.insert(2, logs if len(logs) < 4000 else _small(logs, "resourceLogs"))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(out) + "\n")
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes, {len(keep)} traces)")
    return 0


def _small(line: str, key: str) -> str:
    doc = json.loads(line)
    first = doc[key][0]
    scope_key = next(k for k in first if k.startswith("scope"))
    first[scope_key] = first[scope_key][:1]
    items_key = next(k for k in first[scope_key][0] if k in ("metrics", "logRecords"))
    first[scope_key][0][items_key] = first[scope_key][0][items_key][:1]
    return json.dumps({key: [first]}, separators=(",", ":"))


if __name__ == "__main__":
    raise SystemExit(main())
