"""Configure otel-trader against a dead collector, produce spans, metrics and logs, then exit.

``python dead_collector.py <grpc|http> <shutdown|exit> <port>``: with ``shutdown`` it calls
``manager.shutdown()`` and reports how long that took; with ``exit`` it just returns and lets
interpreter exit (atexit) do the work. One JSON line on stdout, written before exit starts.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import otel_trader


def main() -> None:
    protocol, mode, port = sys.argv[1], sys.argv[2], sys.argv[3]
    endpoint = f"127.0.0.1:{port}" if protocol == "grpc" else f"http://127.0.0.1:{port}"
    manager = otel_trader.configure(
        enabled=True,
        service_name="dead-collector",
        otlp_endpoint=endpoint,
        otlp_protocol="grpc" if protocol == "grpc" else "http/protobuf",
    )
    for i in range(50):
        with otel_trader.trace_operation("work", {"i": i}):
            otel_trader.record_counter("work_total")
            otel_trader.record_histogram("work_seconds", 0.01)
            logging.getLogger("app").warning("working %d", i)
    report: dict[str, object] = {"mode": mode}
    if mode == "shutdown":
        start = time.monotonic()
        report["result"] = manager.shutdown()
        report["shutdown_seconds"] = time.monotonic() - start
    report["exit_starts_at"] = time.time()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
