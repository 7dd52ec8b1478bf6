"""Throughput and latency over real HTTP: uvicorn (1 worker) on loopback, driven by wrk.

Every variant is its own uvicorn process serving ``benchmarks/loopback_app.py`` (``GET
/orders/{oid}``); the instrumented ones export over OTLP/gRPC to our collector
(``collector/otelcol-config.yaml`` as shipped, forwarding to the sink that stands in for SigNoz),
as a deployment does. All servers are started first and stay up; each round then drives every
variant in turn with ``wrk -t1 -c32`` (the order rotates per round), so slow phases of a shared
machine hit all variants alike. Ratios to bare are taken within a round, then summarised over
rounds as median (min–max), or median [interquartile range] from 8 rounds on. This machine's
speed drifts by a third within a minute, so many short windows (``--rounds 30 --seconds 2``)
pair the variants closer in time than a few long ones. Each window also reports the server's cyclic-GC collections and
pauses (``gc.callbacks`` in the app), the CPU of the server's threads other than the event loop's
(export, metric reader, gRPC) and the collector's CPU per request.

Variants: ``bare``, ``full`` (otel_trader defaults: server span, RED metrics, OTLP + /metrics),
``metrics_only`` (server span off), ``contrib`` (FastAPIInstrumentor + SDK: batch spans, OTLP
and Prometheus metric readers), ``pfi`` (prometheus-fastapi-instrumentator), ``full_down``
(``full`` with nothing listening at the OTLP endpoint) and ``full_restart`` (``full`` while the
collector is SIGKILLed and restarted every few seconds).

``--baseline TREE`` also runs ``full`` and ``metrics_only`` with otel_trader imported from another
checkout (``git archive HEAD | tar -x -C /tmp/base``), interleaved with the rest: before and
after in the same run.

    python benchmarks/loopback.py [--rounds 30] [--seconds 2] [--variants bare,full] [--baseline DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from otel_trader.collector import CollectorPorts, CollectorProcess, SinkProcess, free_ports  # noqa: E402

VARIANTS = {
    "bare": "bare FastAPI",
    "full": "otel_trader full (defaults)",
    "metrics_only": "otel_trader metrics-only (server span off)",
    "contrib": "contrib FastAPIInstrumentor + SDK metrics",
    "pfi": "prometheus-fastapi-instrumentator",
    "full_down": "otel_trader full, collector down",
    "full_restart": "otel_trader full, collector restarting",
    "full_nofreeze": "otel_trader full, TELEMETRY_GC_FREEZE=false",
}

#: wrk reports its percentiles through this script (the built-in --latency output has no p99.9).
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "p999_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max))
end
"""

#: Seconds between collector kills in ``full_restart`` (it is back within ≈ 0.5 s each time); at
#: most half a window, so that every window sees one.
RESTART_EVERY = 3.0


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def proc_cpu_seconds(stat: str | Path) -> float:
    """User + system CPU seconds from a ``/proc/<pid>/stat`` or ``/proc/<pid>/task/<tid>/stat`` file."""
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except OSError:  # a thread that ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    variant: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.variant} exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/orders/1", timeout=1) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.variant} not ready after {timeout:.0f}s: {self.log.read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        """CPU time of the server process so far, every thread included (Linux ``/proc``)."""
        return proc_cpu_seconds(f"/proc/{self.process.pid}/stat")

    def thread_cpu_seconds(self) -> float:
        """CPU time of the server's threads other than the event loop's (export, metric reader, gRPC)."""
        tasks = Path(f"/proc/{self.process.pid}/task")
        return sum(proc_cpu_seconds(t / "stat") for t in tasks.iterdir() if t.name != str(self.process.pid))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


#: ``--baseline TREE`` runs these variants a second time with otel_trader imported from TREE (another
#: checkout, e.g. ``git archive HEAD``), as ``<variant>@baseline``: before and after in one run.
BASELINE_VARIANTS = ("full", "metrics_only")


def label(variant: str, baseline: Path | None) -> str:
    base, _, tag = variant.partition("@")
    return f"{VARIANTS[base]}, before ({baseline})" if tag else VARIANTS[base]


def server_env(variant: str, otlp_endpoint: str, dead_endpoint: str, tree: Path = ROOT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_", "OTLP_", "FASTAPI_"))}
    env.update(BENCH_VARIANT=variant, PYTHONPATH=str(tree), SERVICE_NAME=f"bench-{variant}", ENVIRONMENT="bench")
    if variant in ("bare", "pfi"):
        return env
    env["OTLP_ENDPOINT"] = dead_endpoint if variant == "full_down" else otlp_endpoint
    if variant == "contrib":
        return env
    env["TELEMETRY_ENABLED"] = "true"
    if variant == "full_nofreeze":
        env["TELEMETRY_GC_FREEZE"] = "false"
    if variant == "metrics_only":
        env["TELEMETRY_DISABLED_INSTRUMENTATIONS"] = "fastapi"
    return env


def start_server(variant: str, workdir: Path, otlp_endpoint: str, dead_endpoint: str, baseline: Path | None) -> Server:
    (port,) = free_ports(1)
    log = workdir / f"{variant}.log"
    base, _, tag = variant.partition("@")
    tree = baseline if tag and baseline is not None else ROOT
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "benchmarks"), "loopback_app:app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning",
         "--no-access-log"],
        env=server_env(base, otlp_endpoint, dead_endpoint, tree),
        # The working directory comes first on sys.path: it decides which otel_trader is imported.
        stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=tree,
    )
    return Server(variant, port, process, log)


def run_wrk(wrk: str, script: Path, url: str, seconds: float, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", "-s", str(script), url],
        check=True, capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


class Restarter:
    """Kills the collector (SIGKILL) and starts it again, every ``every`` seconds, while running."""

    def __init__(self, collector: CollectorProcess, every: float) -> None:
        self.collector = collector
        self.every = every
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Restarter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if not self.collector.running:
            self.collector.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.collector.kill()
            self.collector.start()
            self.restarts += 1


@dataclass
class Window:
    round: int
    wrk: dict[str, Any]
    gc: dict[str, Any]
    cpu_us_per_request: float
    restarts: int = 0
    #: Of that, the threads other than the event loop's; and the collector's CPU (None when it restarted).
    threads_us_per_request: float = 0.0
    collector_us_per_request: float | None = None
    #: The sink's (SigNoz's stand-in, which a deployment runs elsewhere) on the same cores.
    sink_us_per_request: float | None = None


@dataclass
class Result:
    variant: str
    windows: list[Window] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [w.wrk[key] for w in self.windows]


#: From this many windows on, the spread shown is the interquartile range: min–max of many
#: windows is the machine's worst and best moment, not the variant's.
QUARTILES_FROM = 8


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    """Median (min–max), or median [25th–75th percentile] of :data:`QUARTILES_FROM` values or more."""
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    if len(values) >= QUARTILES_FROM:
        low, _, high = statistics.quantiles(values, n=4)
        return f"{fmt.format(med)} [{fmt.format(low)}–{fmt.format(high)}]"
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def ratios(results: dict[str, Result], variant: str, key: str) -> list[float]:
    """``key`` of ``variant`` ÷ bare's, per round."""
    bare = {w.round: w.wrk[key] for w in results["bare"].windows}
    return [w.wrk[key] / bare[w.round] for w in results[variant].windows if bare.get(w.round)]


def print_tables(results: dict[str, Result], meta: str, baseline: Path | None = None) -> None:
    print(f"\n{meta}\n")
    print(
        "| variant | req/s | × bare | p50 ms | p99 ms | p99 ÷ bare | p99 ÷ p50 | p99.9 ms | server CPU µs/req "
        "| of it, other threads | collector CPU µs/req | sink CPU µs/req | gen-2 GCs per 10k req "
        "| longest gen-2 pause |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ms = "{:.1f}"
    for variant, result in results.items():
        if not result.windows:
            continue
        requests = sum(w.wrk["requests"] for w in result.windows)
        full_gcs = sum(w.gc["collections"][2] for w in result.windows)
        longest = max(w.gc["pause_max_ms"][2] for w in result.windows)
        is_bare = variant == "bare"
        print(
            f"| {label(variant, baseline)} | {spread(result.values('rps'))} | "
            f"{'—' if is_bare else spread(ratios(results, variant, 'rps'), '{:.2f}')} | "
            f"{spread([v / 1e3 for v in result.values('p50_us')], ms)} | "
            f"{spread([v / 1e3 for v in result.values('p99_us')], ms)} | "
            f"{'—' if is_bare else spread(ratios(results, variant, 'p99_us'), '{:.2f}')} | "
            f"{statistics.median(w.wrk['p99_us'] / max(1, w.wrk['p50_us']) for w in result.windows):.2f} | "
            f"{spread([v / 1e3 for v in result.values('p999_us')], ms)} | "
            f"{spread([w.cpu_us_per_request for w in result.windows])} | "
            f"{spread([w.threads_us_per_request for w in result.windows])} | "
            f"{spread([w.collector_us_per_request for w in result.windows if w.collector_us_per_request is not None])} | "
            f"{spread([w.sink_us_per_request for w in result.windows if w.sink_us_per_request is not None])} | "
            f"{full_gcs / requests * 1e4:.1f} | {longest:.0f} ms |"
        )
    errors = {v: sum(w.wrk["errors"] + w.wrk["non_2xx"] for w in r.windows) for v, r in results.items()}
    if any(errors.values()):
        print(f"\nerrors / non-2xx responses: {errors}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=2.0, help="wrk duration per window")
    parser.add_argument("--warmup", type=float, default=3.0, help="wrk warm-up per server, seconds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list; bare is always included")
    parser.add_argument("--json", type=Path, help="also write every window here")
    parser.add_argument("--baseline", type=Path, help="another checkout: also run full and metrics-only with its otel_trader")
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk not found: run `make system-deps` (Debian package wrk)", file=sys.stderr)
        return 2
    variants = ["bare", *[v for v in args.variants.split(",") if v and v != "bare"]]
    if args.baseline is not None:
        variants += [f"{v}@baseline" for v in BASELINE_VARIANTS if v in variants]
    unknown = [v for v in variants if v.partition("@")[0] not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")

    results = {v: Result(v) for v in variants}
    with tempfile.TemporaryDirectory(prefix="otel-trader-loopback-") as tmp:
        workdir = Path(tmp)
        script = workdir / "report.lua"
        script.write_text(WRK_SCRIPT)
        (dead_port,) = free_ports(1)
        sink = SinkProcess(Path(os.devnull), log_path=workdir / "sink.log").start()
        collector = CollectorProcess(
            ports=CollectorPorts.free(), storage_dir=workdir / "queue", signoz_endpoint=sink.otlp_grpc_endpoint,
            env={"OTELCOL_LOG_LEVEL": "warn"}, log_path=workdir / "collector.log",
        ).start()
        servers: dict[str, Server] = {}
        try:
            for variant in variants:
                servers[variant] = start_server(
                    variant, workdir, collector.endpoints.otlp_grpc, f"127.0.0.1:{dead_port}", args.baseline
                )
            for server in servers.values():
                server.wait_ready()
                run_wrk(wrk, script, f"{server.url}/orders/1", args.warmup, args.connections)
            print(f"{len(servers)} servers up; {args.rounds} rounds × {args.seconds:g} s × {len(servers)} variants",
                  file=sys.stderr, flush=True)
            for round_ in range(args.rounds):
                shift = round_ % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    server = servers[variant]
                    http_json(f"{server.url}/_bench/gc")
                    cpu0, threads0 = server.cpu_seconds(), server.thread_cpu_seconds()
                    collector0 = collector.process.pid, proc_cpu_seconds(f"/proc/{collector.process.pid}/stat")
                    sink0 = proc_cpu_seconds(f"/proc/{sink.process.pid}/stat")
                    restarts = 0
                    if variant == "full_restart":
                        with Restarter(collector, min(RESTART_EVERY, args.seconds / 2)) as restarter:
                            out = run_wrk(wrk, script, f"{server.url}/orders/1", args.seconds, args.connections)
                        restarts = restarter.restarts
                    else:
                        out = run_wrk(wrk, script, f"{server.url}/orders/1", args.seconds, args.connections)
                    per_request = 1e6 / max(1, out["requests"])
                    cpu = (server.cpu_seconds() - cpu0) * per_request
                    threads = (server.thread_cpu_seconds() - threads0) * per_request
                    collector_cpu = None
                    if collector.process.pid == collector0[0]:
                        collector_cpu = (proc_cpu_seconds(f"/proc/{collector0[0]}/stat") - collector0[1]) * per_request
                    sink_cpu = (proc_cpu_seconds(f"/proc/{sink.process.pid}/stat") - sink0) * per_request
                    gc_stats = http_json(f"{server.url}/_bench/gc")
                    results[variant].windows.append(
                        Window(round_, out, gc_stats, cpu, restarts, threads, collector_cpu, sink_cpu)
                    )
                    print(f"  round {round_ + 1} {variant:<21} {out['rps']:8,.0f} req/s  p50 {out['p50_us'] / 1e3:5.1f} "
                          f"p99 {out['p99_us'] / 1e3:6.1f} p99.9 {out['p999_us'] / 1e3:6.1f} ms  "
                          f"CPU {cpu:4.0f} µs/req  gen-2 GCs {gc_stats['collections'][2]} "
                          f"(max {gc_stats['pause_max_ms'][2]:.0f} ms)"
                          + (f"  collector restarts {restarts}" if variant == "full_restart" else ""),
                          file=sys.stderr, flush=True)
        finally:
            for server in servers.values():
                server.stop()
            collector.stop()
            sink.stop()

    import fastapi

    meta = (f"uvicorn 1 worker on loopback, `wrk -t1 -c{args.connections} -d{args.seconds:g}s`, {args.rounds} rounds "
            f"(median (min–max), or [interquartile range] from {QUARTILES_FROM}), {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, FastAPI {fastapi.__version__}")
    print_tables(results, meta, args.baseline)
    if args.json:
        args.json.write_text(json.dumps({v: [w.__dict__ for w in r.windows] for v, r in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
