"""What sharing metrics between workers costs: a snapshot write, and a scrape merging N workers.

One process, otel-trader configured with the Prometheus reader only, a registry the size of a
real service (``--routes`` routes × 3 status codes of ``http_requests_total`` and
``http_request_duration_seconds`` with its 14 buckets, plus the runtime metrics). Measured:

* a scrape of one process, as ``/metrics`` serves it without sharing (``generate_latest``);
* one snapshot: collect the registry and write it (tmp + rename), what every worker does once a
  second and before answering a scrape;
* one scrape that merges ``--workers`` snapshots (the other workers' files are copies of this
  one under pids of processes that run, so they count as live workers).

    python benchmarks/multiprocess.py [--routes 50] [--workers 4] [--rounds 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def median_ms(action, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    from prometheus_client import generate_latest

    import otel_trader
    from otel_trader.web import multiprocess
    from otel_trader.web.middleware import DURATION_BUCKETS

    manager = otel_trader.configure(enabled=True, exporter="none", service_name="bench")
    for route in range(args.routes):
        for status in ("200", "404", "500"):
            labels = {"method": "GET", "path": f"/route/{route}/{{id}}", "status": status}
            otel_trader.record_counter("http_requests_total", attributes=labels)
            otel_trader.record_histogram(
                "http_request_duration_seconds", 0.01, attributes=labels, buckets=DURATION_BUCKETS
            )
    otel_trader.record_up_down("bench_open_positions", 1)

    directory = Path(tempfile.mkdtemp(prefix="otel-trader-bench-"))
    try:
        aggregator = multiprocess.Aggregator(manager, directory)
        single = median_ms(lambda: generate_latest(manager.prometheus_registry), args.rounds)
        write = median_ms(aggregator.write, args.rounds)
        size = aggregator.path.stat().st_size
        # Live pids other than this one: this process's ancestors, each with its start time.
        pids, pid = [], os.getppid()
        while pid > 1 and len(pids) < args.workers - 1:
            pids.append(pid)
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        while len(pids) < args.workers - 1:
            pids.append(1)
        for other in dict.fromkeys(pids):
            shutil.copy(aggregator.path, directory / f"w-{other}-{multiprocess.start_time(other)}.json")
        workers = 1 + len(dict.fromkeys(pids))
        served = multiprocess.ServedRegistry(manager)
        # The registry view decides once per process: force this process to share.
        multiprocess._aggregator, multiprocess._decided = aggregator, (os.getpid(), manager)
        merged = median_ms(lambda: generate_latest(served), args.rounds)  # type: ignore[arg-type]
        samples = sum(len(m.samples) for m in manager.prometheus_registry.collect())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        manager.shutdown(timeout=2)

    print(f"registry: {samples} samples; snapshot file {size / 1024:.0f} KiB")
    print(f"scrape of one process (no sharing):      {single:6.2f} ms")
    print(f"snapshot (collect + write), per second:  {write:6.2f} ms  ({write / 10:.2f} % of a core at 1/s)")
    print(f"scrape merging {workers} workers:             {merged:6.2f} ms")


if __name__ == "__main__":
    main()
