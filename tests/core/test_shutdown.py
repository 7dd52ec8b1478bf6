"""A dead or absent collector costs the application nothing: bounded shutdown and exit, normal
latency, one clear warning.

Dead collector = a free 127.0.0.1 port nothing listens on (connection refused at once).
"""

from __future__ import annotations

import http.server
import json
import re
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import otel_trader

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
from procs import AppProcess, Launcher, clean_env, free_port  # noqa: E402

DEADLINE = 2.0  # TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS default


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launch = Launcher(tmp_path)
    yield launch
    launch.stop_all()


def run_script(launcher: Launcher, protocol: str, mode: str) -> tuple[dict[str, Any], float, AppProcess]:
    """Run apps/dead_collector.py; return its report, the seconds from end of work to exit, the process."""
    proc = launcher.start(
        [sys.executable, "dead_collector.py", protocol, mode, str(free_port())], clean_env()
    )
    proc.process.wait(60)
    exited_at = time.time()
    lines = [line for line in proc.stdout().splitlines() if line.startswith("{")]
    assert proc.process.returncode == 0 and lines, proc.stderr()[-3000:]
    report = json.loads(lines[-1])
    return report, exited_at - report["exit_starts_at"], proc


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shutdown_abandons_at_the_deadline(launcher: Launcher, protocol: str) -> None:
    """shutdown() with spans, metrics and logs queued for a dead collector: ≤ 2.5 s, and False."""
    report, exit_seconds, proc = run_script(launcher, protocol, "shutdown")
    print(f"{protocol}: shutdown() {report['shutdown_seconds']:.2f} s -> {report['result']}, then exit {exit_seconds:.2f} s")
    # The exporters retry with backoff for up to OTLP_TIMEOUT_SECONDS (10 s): never done in 2 s.
    assert report["result"] is False
    assert DEADLINE - 0.1 <= report["shutdown_seconds"] <= DEADLINE + 0.5, report
    # Providers are already stopped: exit adds no second wait.
    assert exit_seconds <= 1.5, exit_seconds
    assert "did not finish within 2.0s" in proc.stderr()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_interpreter_exit_is_bounded(launcher: Launcher, protocol: str) -> None:
    """No explicit shutdown: atexit does it, within the deadline (SDK defaults: 14 s, see the report)."""
    _, exit_seconds, proc = run_script(launcher, protocol, "exit")
    print(f"{protocol}: interpreter exit {exit_seconds:.2f} s")
    assert exit_seconds <= 4.0, f"interpreter exit took {exit_seconds:.2f}s"
    stderr = proc.stderr()
    # The exporters' per-attempt retry lines are replaced by otel-trader's own messages.
    assert not re.findall(r"^(Transient error|Failed to export)", stderr, re.M), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]


class _Sink(http.server.BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP: 200 with an empty protobuf body."""

    received: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Sink.received.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.timeout(30)
def test_shutdown_returns_true_when_everything_was_sent(reset_otel: None) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Sink.received = []
    try:
        manager = otel_trader.configure(
            enabled=True,
            otlp_endpoint=f"http://127.0.0.1:{server.server_address[1]}",
            otlp_protocol="http/protobuf",
        )
        with otel_trader.trace_operation("sent"):
            otel_trader.record_counter("sent_total")
        start = time.monotonic()
        assert manager.shutdown() is True
        assert time.monotonic() - start < DEADLINE
        assert "/v1/traces" in _Sink.received and "/v1/metrics" in _Sink.received
    finally:
        server.shutdown()
        server.server_close()


# -- collector absent while the application runs ---------------------------------------------


def latencies(app: AppProcess, seconds: float) -> list[float]:
    """Sequential requests for ``seconds`` (at least 100), on one keep-alive connection."""
    result: list[float] = []
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for _ in range(20):  # warm-up
            client.get("/quote/BTC")
        end = time.monotonic() + seconds
        while time.monotonic() < end or len(result) < 100:
            start = time.perf_counter()
            assert client.get(f"/quote/S{len(result) % 5}").status_code == 200
            result.append(time.perf_counter() - start)
            time.sleep(0.005)
    return result


@pytest.mark.timeout(120)
def test_app_without_collector_serves_normally_warns_once_and_exits(launcher: Launcher) -> None:
    base = clean_env(TELEMETRY_ENABLED="true", SERVICE_NAME="quotes")
    baseline = launcher.uvicorn("dead_collector_app", {**base, "TELEMETRY_EXPORTER": "none"})
    p50_baseline = statistics.median(latencies(baseline, 1.0))
    baseline.stop()

    app = launcher.uvicorn(
        "dead_collector_app",
        {
            **base,
            "OTLP_ENDPOINT": f"127.0.0.1:{free_port()}",
            # Export attempts every 0.2 s (spans, logs) and 1 s (metrics), each failing within
            # 2 s, so this run sees many failed exports of every signal.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            "METRIC_EXPORT_INTERVAL_SECONDS": "1",
            "OTLP_TIMEOUT_SECONDS": "2",
        },
    )
    samples = latencies(app, 8.0)
    p50 = statistics.median(samples)
    assert p50 <= max(3 * p50_baseline, p50_baseline + 0.02), (p50, p50_baseline)

    stderr = app.stderr()
    warnings = re.findall(r"otel-trader: cannot export \w+ to the OTLP collector at 127\.0\.0\.1:\d+", stderr)
    assert 1 <= len(warnings) <= 3, stderr[-3000:]
    assert "StatusCode.UNAVAILABLE" in stderr  # the detail is in the one warning
    # The exporters' own lines (one per retry and per failed batch) are not printed.
    assert not re.findall(r"^(Transient error|Failed to export)", stderr, re.M), stderr[-3000:]

    exit_seconds = app.stop(signal.SIGTERM)
    print(f"p50 {p50 * 1000:.2f} ms (baseline {p50_baseline * 1000:.2f} ms), {len(samples)} requests, exit {exit_seconds:.2f} s")
    assert exit_seconds <= 4.0, f"exit took {exit_seconds:.2f}s"


@pytest.mark.timeout(60)
def test_ctrl_c_exit_spends_the_deadline_once(launcher: Launcher) -> None:
    """SIGINT: the lifespan flush waits out the deadline on the dead collector; atexit does not wait again."""
    app = launcher.uvicorn(
        "dead_collector_app",
        clean_env(TELEMETRY_ENABLED="true", OTLP_ENDPOINT=f"127.0.0.1:{free_port()}"),
    )
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for _ in range(50):
            assert client.get("/quote/BTC").status_code == 200
    exit_seconds = app.stop(signal.SIGINT)
    print(f"SIGINT exit {exit_seconds:.2f} s")
    assert app.process.returncode == 0
    assert exit_seconds <= DEADLINE + 1.0, f"exit took {exit_seconds:.2f}s"
    assert app.stderr().count("did not finish within 2.0s") == 1, app.stderr()[-2000:]


def test_export_health_warns_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    """Many failed exports: one warning (with the exporter's last error); recovery: one info line."""
    import logging

    from otel_trader.sdk.exporters import ExportHealth

    health = ExportHealth("collector:4317", rewarn_after=300)
    noise = logging.LogRecord("x", logging.WARNING, __file__, 1, "Transient error %s, retrying", ("UNAVAILABLE",), None)
    assert health.filter(noise) is False  # swallowed, kept as the detail
    with caplog.at_level(logging.INFO, logger="otel_trader"):
        for _ in range(20):
            health.report("spans", False)
            health.report("logs", False)
        health.report("spans", True)
        health.report("spans", False)  # a new outage within rewarn_after: not warned again
    messages = [r.getMessage() for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.INFO]
    assert len([m for m in messages if "cannot export spans" in m and "Transient error UNAVAILABLE" in m]) == 1
    assert messages.count("otel-trader: OTLP collector at collector:4317 is reachable again") == 1
    assert len(messages) == 2
    other = logging.LogRecord("x", logging.WARNING, __file__, 1, "Exporter already shutdown", None, None)
    assert health.filter(other) is True


def test_flush_keeps_telemetry_working_and_metrics_single(telemetry: Any) -> None:
    """flush() (run at lifespan end) exports push signals only: /metrics shows no duplicated series."""
    manager = telemetry.manager
    otel_trader.record_counter("flushed_total")
    assert manager.flush() is True
    with otel_trader.trace_operation("after-flush"):
        otel_trader.record_counter("flushed_total")
    lines = [line for line in telemetry.scrape().splitlines() if line.startswith("flushed_total{")]
    assert len(lines) == 1 and lines[0].endswith(" 2.0"), lines
    assert [s.name for s in telemetry.finished_spans()] == ["after-flush"]
