"""``otel-trader collector run --role gateway|agent``: the tier started from the command line.

A gateway and an agent routed to it, each in its own ``otel-trader`` process on free loopback
ports: both print who routes what to whom, the agent's load balancer has the gateway in its
ring, a span sent to the agent comes out of the gateway, and SIGTERM stops both cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_trader.collector import CollectorPorts, free_ports

ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, name: str, ports: CollectorPorts, *extra: str, env: dict[str, str] | None = None):
    out = tmp_path / f"{name}.out"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "SIGNOZ_"))}
    clean.update(
        OTELCOL_ZPAGES_PORT=str(ports.zpages), OTELCOL_PPROF_PORT=str(ports.pprof), OTELCOL_LOG_LEVEL="warn",
        OTELCOL_BATCH_TIMEOUT="200ms", OTELCOL_TAIL_DECISION_WAIT="1s", OTELCOL_TAIL_SAMPLE_PERCENT="100",
        **(env or {}),
    )
    argv = [
        sys.executable, "-m", "otel_trader.cli", "collector", "run",
        "--grpc-port", str(ports.otlp_grpc), "--http-port", str(ports.otlp_http),
        "--health-port", str(ports.health), "--prometheus-port", str(ports.prometheus),
        "--telemetry-port", str(ports.telemetry), "--storage-dir", str(tmp_path / f"{name}-queue"), *extra,
    ]
    with out.open("wb") as f:
        proc = subprocess.Popen(argv, cwd=ROOT, env=clean, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, out


def _wait_for(out: Path, proc: subprocess.Popen, text: str, timeout: float = 60.0) -> str:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = out.read_text()
        if text in body:
            return body
        assert proc.poll() is None, body
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not printed:\n{out.read_text()}")


@pytest.mark.timeout(120)
def test_gateway_and_agent_roles_print_their_routes_and_carry_a_span(
    otelcol_binary: Path, fleet, otlp, tmp_path: Path
) -> None:
    sink = fleet.sink()
    gw_ports, agent_ports = CollectorPorts.free(), CollectorPorts.free()
    remote_write = f"http://127.0.0.1:{free_ports(1)[0]}/api/v1/write"
    gateway, gw_out = _cli(tmp_path, "gateway", gw_ports, "--role", "gateway", "--remote-write", remote_write,
                           env={"SIGNOZ_ENDPOINT": sink.otlp_grpc_endpoint})
    agent = None
    try:
        text = _wait_for(gw_out, gateway, "Ctrl-C to stop")
        assert f"127.0.0.1:{gw_ports.otlp_grpc}   (for the agents)" in text
        assert "tail sampling       after 1s: keeps errors, traces slower than 1000 ms, rejected/failed orders, 100 % of the rest" in text
        assert f"exports to SigNoz   {sink.otlp_grpc_endpoint}" in text
        assert f"metrics to Prom.    {remote_write} (remote write)" in text
        assert "Prometheus (app + span metrics)" not in text  # a gateway serves no :8889

        gw = f"127.0.0.1:{gw_ports.otlp_grpc}"
        agent, agent_out = _cli(tmp_path, "agent", agent_ports, "--role", "agent", "--gateway", gw)
        text = _wait_for(agent_out, agent, "Ctrl-C to stop")
        assert f"routes to gateways  {gw} (static list)" in text
        assert "traces              by trace id" in text and "metrics             by service.name" in text
        assert "gateways in the ring 1 (otelcol_loadbalancer_num_backends)" in text
        assert f"--config {ROOT / 'collector' / 'agent.yaml'}" in text

        otlp.send_spans(f"127.0.0.1:{agent_ports.otlp_grpc}", [{"name": "through-the-tier"}])
        (span,) = sink.wait_for_spans(lambda s: s["resource"].get("test.run_id") == otlp.run_id, 1, timeout=30)
        assert span["name"] == "through-the-tier"
        assert span["resource"]["deployment.environment"] == "unknown"  # the agent's resource processor ran
    finally:
        for proc in (agent, gateway):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in (agent, gateway) if p is not None]
    assert codes == [0, 0], (gw_out.read_text(), codes)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, message",
    [
        (["--role", "agent"], "--role agent needs --gateway HOST:PORT"),
        (["--role", "agent", "--gateway", "no-port"], "gateway 'no-port' is not host:port"),
        (["--role", "agent", "--gateway", "a:1", "--gateway-dns", "gw"], "not both"),
        (["--role", "agent", "--gateway", "a:1", "--remote-write", "http://p/api/v1/write"], "option of --role gateway"),
        (["--role", "gateway", "--gateway", "a:1"], "options of --role agent"),
    ],
)
def test_role_options_are_checked_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    proc, out = _cli(tmp_path, "bad", CollectorPorts.free(), *args)
    assert proc.wait(30) == 1, out.read_text()
    assert message in out.read_text()
