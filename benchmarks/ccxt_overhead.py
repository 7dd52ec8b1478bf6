"""Overhead per ccxt call of otel-trader's exchange integration, against uninstrumented ccxt.

The venue is the demo's mock Binance (``otel_trader.demo.exchange``) in its own uvicorn process
on 127.0.0.1, without telemetry, failures or rate limits. Each measurement is a fresh client
process running a fixed mix of real ccxt calls (``fetch_time``, ``fetch_balance``,
``create_order``, ``fetch_order``) with ``ccxt.binance`` (sync, requests) and
``ccxt.async_support.binance`` (async, aiohttp), in one of three variants:

* ``off`` — ccxt alone (``TELEMETRY_ENABLED=false``);
* ``ccxt`` — otel-trader on, only the ccxt integration (spans per call, exchange metrics,
  headroom and skew from every response); aiohttp/requests instrumentation off;
* ``full`` — otel-trader on with the ccxt integration and the aiohttp/requests client spans.

Variants alternate, round by round, in a shuffled order (fixed seed), so a slow phase of a
shared machine hits all of them. Reported per variant: the median over rounds of the median
wall time per call and of the client process's CPU time per call; the ratio to ``off`` is the
overhead. Spans go to a no-op exporter behind the usual batch processor and scrubbing wrapper,
metrics to the in-process Prometheus reader (the request-path cost, not network export).

    python benchmarks/ccxt_overhead.py [--rounds 7] [--calls 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

VARIANTS = {
    "off": "ccxt, no telemetry",
    "ccxt": "otel-trader: ccxt integration only",
    "full": "otel-trader: ccxt + aiohttp/requests spans",
}

_CLIENT = r"""
import asyncio, json, os, sys, time
variant, url, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
if variant != "off":
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    import otel_trader
    disabled = ["aiohttp", "requests"] if variant == "ccxt" else []
    otel_trader.configure(enabled=True, exporter="none", service_name="bench", span_exporter=Discard(),
                          disabled_instrumentations=disabled)
import ccxt, ccxt.async_support
from otel_trader.demo.binance import ccxt_exchange

def mix(call):
    order = call("create_order", "BTC/USDT", "market", "buy", 0.001)
    call("fetch_order", order["id"], "BTC/USDT")
    call("fetch_time")
    call("fetch_balance")

def measure(run_mix, per_mix=4):
    walls = []
    cpu0 = time.process_time()
    for _ in range(calls // per_mix):
        start = time.perf_counter()
        run_mix()
        walls.append((time.perf_counter() - start) / per_mix)
    cpu = (time.process_time() - cpu0) / (len(walls) * per_mix)
    walls.sort()
    return {"wall": walls[len(walls) // 2], "cpu": cpu}

sync = ccxt_exchange(ccxt.binance, url)
sync.load_markets()
call_sync = lambda m, *a: getattr(sync, m)(*a)
for _ in range(10):
    mix(call_sync)
out = {"sync": measure(lambda: mix(call_sync))}

async def main():
    ex = ccxt_exchange(ccxt.async_support.binance, url)
    await ex.load_markets()
    loop = asyncio.get_running_loop()
    async def amix():
        order = await ex.create_order("BTC/USDT", "market", "buy", 0.001)
        await ex.fetch_order(order["id"], "BTC/USDT")
        await ex.fetch_time()
        await ex.fetch_balance()
    for _ in range(10):
        await amix()
    walls = []
    cpu0 = time.process_time()
    for _ in range(calls // 4):
        start = time.perf_counter()
        await amix()
        walls.append((time.perf_counter() - start) / 4)
    cpu = (time.process_time() - cpu0) / (len(walls) * 4)
    await ex.close()
    walls.sort()
    return {"wall": walls[len(walls) // 2], "cpu": cpu}

out["async"] = asyncio.run(main())
print(json.dumps(out))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_", "OTLP_"))}
    env.update(PYTHONPATH=str(ROOT), TELEMETRY_ENV_FILE="none", **extra)
    return env


def _start_venue() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = _env(
        TELEMETRY_ENABLED="false",
        MOCK_EXCHANGE_ERROR_RATE="0",
        MOCK_EXCHANGE_RATE_LIMIT_RATE="0",
        MOCK_EXCHANGE_TIMESTAMP_ERROR_RATE="0",
        MOCK_EXCHANGE_WEIGHT_LIMIT="100000000",
        MOCK_EXCHANGE_ORDERS_PER_10S="100000000",
        MOCK_EXCHANGE_MAX_LATENCY="0.002",
    )
    argv = [sys.executable, "-m", "uvicorn", "--factory", "otel_trader.demo.exchange:create_app", "--host",
            "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log", "--no-date-header"]  # fmt: skip
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    from urllib.request import urlopen

    deadline = time.monotonic() + 30
    while True:
        try:
            with urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the mock venue did not start") from None
            time.sleep(0.1)


def _client(variant: str, url: str, calls: int) -> dict[str, Any]:
    env = _env(TELEMETRY_ENABLED="true" if variant != "off" else "false")
    done = subprocess.run(
        [sys.executable, "-c", _CLIENT, variant, url, str(calls)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} client failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (and the JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200, help="ccxt calls per flavour per client")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    venue, url = _start_venue()
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    rng = random.Random(args.seed)
    try:
        for round_no in range(args.rounds):
            order = list(VARIANTS)
            rng.shuffle(order)
            for variant in order:
                results[variant].append(_client(variant, url, args.calls))
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        venue.terminate()
        venue.wait(10)

    summary: dict[str, Any] = {}
    for flavour in ("sync", "async"):
        base_wall = statistics.median(r[flavour]["wall"] for r in results["off"])
        base_cpu = statistics.median(r[flavour]["cpu"] for r in results["off"])
        for variant in VARIANTS:
            wall = statistics.median(r[flavour]["wall"] for r in results[variant])
            cpu = statistics.median(r[flavour]["cpu"] for r in results[variant])
            summary[f"{flavour}/{variant}"] = {
                "wall_us": wall * 1e6,
                "cpu_us": cpu * 1e6,
                "wall_ratio": wall / base_wall,
                "cpu_ratio": cpu / base_cpu,
                "added_wall_us": (wall - base_wall) * 1e6,
                "added_cpu_us": (cpu - base_cpu) * 1e6,
            }
    print(f"ccxt call overhead, mock Binance on loopback, {args.rounds} rounds x {args.calls} calls per flavour")
    print(f"{'flavour/variant':22} {'wall µs/call':>13} {'ratio':>6} {'+µs':>7}   {'CPU µs/call':>12} {'ratio':>6} {'+µs':>7}")
    for key, row in summary.items():
        print(
            f"{key:22} {row['wall_us']:13.0f} {row['wall_ratio']:6.3f} {row['added_wall_us']:7.0f}   "
            f"{row['cpu_us']:12.0f} {row['cpu_ratio']:6.3f} {row['added_cpu_us']:7.0f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"rounds": args.rounds, "calls": args.calls, "results": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
