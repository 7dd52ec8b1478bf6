"""Bytecodes executed per request, per function: where the server span's cost is, exactly.

Timings on a shared 2-core machine move by more than the few µs a change to the request path
saves; the number of bytecodes the interpreter executes does not move at all. Each variant
(``full`` and ``metrics_only`` as in ``loopback.py``, over ``benchmarks/loopback_app.py``) runs in
its own process: after a warm-up, ``sys.settrace`` with opcode events counts the bytecodes of
``--requests`` raw-ASGI requests on the calling thread (the export threads are not counted:
``make bench-instructions`` counts those). The table lists the functions whose count differs most
between the variants, that is the server span's share of the request path.

    python benchmarks/bytecodes.py [--requests 100] [--top 25] [--tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/orders/1",
    "raw_path": b"/orders/1",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
    "client": ("127.0.0.1", 5555),
    "server": ("127.0.0.1", 8000),
}


def count(variant: str, requests: int, tree: str) -> dict[str, float]:
    """Bytecodes per request by ``file:function`` for ``variant`` (in this process), paths relative to ``tree``."""
    os.environ.update(
        BENCH_VARIANT="full", TELEMETRY_ENABLED="true", OTLP_ENDPOINT="127.0.0.1:1", SERVICE_NAME="bench",
        # Nothing is exported during the count: the export thread stays idle.
        OTEL_BSP_SCHEDULE_DELAY="600000", OTEL_BSP_MAX_QUEUE_SIZE="1000000", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="500000",
    )  # fmt: skip
    if variant == "metrics_only":
        os.environ["TELEMETRY_DISABLED_INSTRUMENTATIONS"] = "fastapi"
    import loopback_app

    app = loopback_app.app

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def serve(n: int) -> None:
        for _ in range(n):
            await app(dict(SCOPE), receive, send)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(serve(300))
    counts: collections.Counter[str] = collections.Counter()

    def opcodes(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            code = frame.f_code
            name = code.co_filename.split("site-packages/")[-1].replace(tree, "").replace(str(ROOT) + "/", "")
            counts[f"{name}:{code.co_name}"] += 1
        return opcodes

    def calls(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return opcodes

    sys.settrace(calls)
    try:
        loop.run_until_complete(serve(requests))
    finally:
        sys.settrace(None)
    return {name: n / requests for name, n in counts.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose otel_trader is counted")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.variant:
        sys.path[:0] = [str(ROOT / "benchmarks"), str(args.tree)]
        print(json.dumps(count(args.variant, args.requests, f"{args.tree.resolve()}/")))
        os._exit(0)  # the idle export threads are not waited for
    found = {}
    for variant in ("metrics_only", "full"):
        out = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--requests", str(args.requests), "--tree", str(args.tree)],
            check=True, capture_output=True, text=True, cwd=args.tree,
        ).stdout  # fmt: skip
        found[variant] = json.loads(out.strip().splitlines()[-1])
    metrics, full = found["metrics_only"], found["full"]
    print(f"\nbytecodes per request (raw ASGI, {args.requests} requests, event-loop thread), otel_trader from {args.tree}\n")
    print(f"metrics-only {sum(metrics.values()):,.0f}, full {sum(full.values()):,.0f}: "
          f"the server span {sum(full.values()) - sum(metrics.values()):,.0f}\n")  # fmt: skip
    print("| function | full − metrics-only |")
    print("|---|---:|")
    diff = {k: full.get(k, 0.0) - metrics.get(k, 0.0) for k in set(full) | set(metrics)}
    for name, n in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[: args.top]:
        print(f"| `{name}` | {n:+,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
