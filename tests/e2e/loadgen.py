"""A fixed-rate HTTP load in its own process: ``python -m tests.e2e.loadgen PORT PATH RATE SECONDS OUT``.

Open loop: request ``i`` is due at ``start + i / RATE`` whatever the previous ones took (several
connections share the schedule, so one slow response does not delay the others' requests).
Writes one JSON object per request to OUT: ``due`` (CLOCK_MONOTONIC seconds, the same clock as
the test process's ``time.monotonic()``), ``latency`` (seconds) and ``status`` (int, or the
error text). A separate process, so whatever the test does meanwhile (killing and restarting
the collector, polling health) cannot steal the GIL from the measurement.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time


def main(argv: list[str]) -> int:
    port, path, rate, seconds, out = int(argv[0]), argv[1], float(argv[2]), float(argv[3]), argv[4]
    connections = 4
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    results: list[dict[str, object]] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        conn: http.client.HTTPConnection | None = None
        for i in range(k, total, connections):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            began = time.perf_counter()
            status: object
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                status = response.status
            except Exception as exc:  # a failed request is a result, not a crash of the load
                status = repr(exc)
                if conn is not None:
                    conn.close()
                conn = None
            latency = time.perf_counter() - began
            with lock:
                results.append({"due": due, "latency": latency, "status": status})
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out, "w") as f:
        for r in sorted(results, key=lambda r: float(r["due"])):  # type: ignore[arg-type]
            f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
