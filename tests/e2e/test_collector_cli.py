"""``otel-trader collector run``: start, health, endpoints printed, clean stop on Ctrl-C / SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_trader.collector import CollectorPorts, free_ports, http_get

from .conftest import ROOT, wait_until


def _run_cli(tmp_path: Path, ports: CollectorPorts, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "cli.out"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "SIGNOZ_"))}
    clean.update(env or {})
    # zpages/pprof have no option: their variables put them on free ports too.
    clean.update(OTELCOL_ZPAGES_PORT=str(ports.zpages), OTELCOL_PPROF_PORT=str(ports.pprof),
                 SIGNOZ_ENDPOINT=f"127.0.0.1:{free_ports(1)[0]}")  # nothing listens; nothing is sent anyway
    argv = [
        sys.executable, "-m", "otel_trader.cli", "collector", "run",
        "--grpc-port", str(ports.otlp_grpc), "--http-port", str(ports.otlp_http),
        "--health-port", str(ports.health), "--prometheus-port", str(ports.prometheus),
        "--telemetry-port", str(ports.telemetry), "--storage-dir", str(tmp_path / "queue"), *extra,
    ]
    with out.open("wb") as f:
        proc = subprocess.Popen(argv, cwd=ROOT, env=clean, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, out


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_collector_run_starts_prints_endpoints_and_stops(tmp_path: Path, sig: int) -> None:
    ports = CollectorPorts.free()
    proc, out = _run_cli(tmp_path, ports)
    try:
        wait_until(lambda: "collector healthy" in out.read_text() or proc.poll() is not None, 60, "'collector healthy'")
        text = out.read_text()
        assert proc.poll() is None, text
        assert http_get(f"http://127.0.0.1:{ports.health}/")[0] == 200
        for port in (ports.otlp_grpc, ports.otlp_http, ports.prometheus, ports.telemetry, ports.health):
            assert f"127.0.0.1:{port}" in text, text
        assert f"OTLP_ENDPOINT=127.0.0.1:{ports.otlp_grpc}" in text
        # The collector's own metrics answer on the printed :8888 equivalent.
        assert "otelcol_process_uptime" in http_get(f"http://127.0.0.1:{ports.telemetry}/metrics")[1]
        match = re.search(r"collector healthy, pid (\d+)", text)
        assert match, text
        child = int(match.group(1))

        started = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(30) == 0, out.read_text()
        assert time.monotonic() - started < 20
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "collector stopped (exit code 0)" in out.read_text()
    with pytest.raises(ProcessLookupError):  # the collector is gone, not orphaned
        os.kill(child, 0)
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{ports.health}/", timeout=1)


@pytest.mark.timeout(30)
def test_collector_run_reports_a_missing_binary(tmp_path: Path) -> None:
    proc, out = _run_cli(tmp_path, CollectorPorts.free(), env={"OTELCOL_BINARY": str(tmp_path / "nope")})
    assert proc.wait(20) == 1
    assert "OTELCOL_BINARY" in out.read_text() and "is not an executable file" in out.read_text()
