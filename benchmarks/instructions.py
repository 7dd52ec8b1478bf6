"""Instructions per request of a real uvicorn server, counted by callgrind (independent of load).

CPU time per request on a shared 2-core machine moves with whatever else runs; instruction
counts do not. Each variant's server (``benchmarks/loopback_app.py``, as in ``loopback.py``) runs
under ``valgrind --tool=callgrind`` with counting off; after a warm-up, counting is switched on
for ``--requests`` keep-alive requests from one client and a few seconds more (so the export
threads' batches are counted too), then off. Full telemetry exports to our collector, which
forwards to the sink, both outside valgrind.

    python benchmarks/instructions.py [--variants bare,full] [--requests 1000]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import loopback  # noqa: E402

from otel_trader.collector import CollectorPorts, CollectorProcess, SinkProcess  # noqa: E402
from otel_trader.collector.ports import free_ports  # noqa: E402


def _get(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", "/orders/1")
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def count(variant: str, requests: int, otlp: str, workdir: Path) -> float:
    """Instructions per request of ``variant``'s server."""
    (port,) = free_ports(1)
    out = workdir / f"{variant}.callgrind"
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "benchmarks"), "loopback_app:app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"],
        env=loopback.server_env(variant, otlp, "127.0.0.1:1"), cwd=ROOT,
        stdout=(workdir / f"{variant}.log").open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600  # start-up under valgrind takes a minute or two
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                _get(conn)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        for _ in range(300):
            _get(conn)
        _control("-i", "on", str(server.pid))
        for _ in range(requests):
            _get(conn)
        time.sleep(6)  # the span batches of these requests are exported inside the window
        _control("-i", "off", str(server.pid))
        _control("-d", str(server.pid))
    finally:
        server.terminate()
        server.wait(120)
    total = 0
    for dump in workdir.glob(f"{variant}.callgrind*"):
        for line in dump.read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variants", default="bare,metrics_only,full")
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("callgrind_control") is None:
        print("valgrind not found: run `make system-deps`", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="otel-trader-instructions-") as tmp:
        workdir = Path(tmp)
        sink = SinkProcess(Path(os.devnull), log_path=workdir / "sink.log").start()
        collector = CollectorProcess(
            ports=CollectorPorts.free(), storage_dir=workdir / "queue", signoz_endpoint=sink.otlp_grpc_endpoint,
            env={"OTELCOL_LOG_LEVEL": "warn"}, log_path=workdir / "collector.log",
        ).start()
        try:
            counts = {v: count(v, args.requests, collector.endpoints.otlp_grpc, workdir) for v in args.variants.split(",")}
        finally:
            collector.stop()
            sink.stop()
    print(f"\ncallgrind, {args.requests} keep-alive requests from one client, export included\n")
    print("| variant | instructions per request | ÷ bare |")
    print("|---|---:|---:|")
    bare = counts.get("bare")
    for variant, n in counts.items():
        print(f"| {loopback.VARIANTS[variant]} | {n:,.0f} | {f'{n / bare:.2f}' if bare else '—'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
