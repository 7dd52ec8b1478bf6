"""Starting our collector distribution (``collector/bin/otelcol-trader``) for the demo.

The binary and its config are found next to the package (a source checkout: ``collector/``),
or through ``OTELCOL_BINARY`` / ``OTELCOL_CONFIG``. Every port is a free loopback port passed
through the config's ``OTELCOL_*`` variables (collector/README.md). Where the data goes:

* ``SIGNOZ_ENDPOINT`` set in the environment: to that SigNoz (``SIGNOZ_INSECURE`` /
  ``SIGNOZ_INGESTION_KEY`` pass through);
* otherwise to a local stand-in for SigNoz's ingest, ``collector/sink-config.yaml``, which
  writes every OTLP request it receives as a JSON line to ``<run dir>/signoz-sink.jsonl``.

Finding the binary and config, the ports, the environment and the endpoints come from
:mod:`otel_trader.collector` (shared with ``otel-trader collector run``); the processes stay in
the demo's :class:`ProcessGroup`, tied to the runner's life.

With ``gateways`` > 0 (``--gateways N``) the demo runs the two-tier deployment instead
(collector/README.md, "Two tiers"): N gateways (``gateway.yaml``) exporting to the destination
above, and one agent (``otelcol-config.yaml`` + ``agent.yaml``) the services send to. Two
things differ from a production tier, both for the demo's summary: the gateways keep every
trace (``OTELCOL_TAIL_SAMPLE_PERCENT=100``, so the counts reconcile) and have no Prometheus to
write to (their remote write is left out of the metrics pipeline); the agent also serves its
host-local Prometheus endpoint (one writer per series there too: only this host's processes).
The summary's collector figures come from a tier view (:class:`TierView`): what entered the
tier (the agent's receivers) and what left it (the gateways' exporters).
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from otel_trader.collector import (
    CollectorError,
    CollectorPorts,
    Endpoints,
    collector_env,
    describe_routing,
    find_binary,
    find_config,
    gateways_env,
    http_get,
    role_configs,
)
from otel_trader.demo.processes import ChildProcess, ProcessGroup, free_port

__all__ = ["CollectorInfo", "TierView", "find_collector", "start_collector"]


@dataclass
class CollectorInfo:
    """A running collector: where to send OTLP and where to look."""

    process: ChildProcess
    otlp_grpc_endpoint: str
    prometheus_url: str
    telemetry_url: str
    health_url: str
    zpages_url: str
    destination: str
    sink: ChildProcess | None = None
    sink_file: Path | None = None
    #: The tier (``--gateways N``): the gateways, and who routes what to whom (printable).
    gateways: list[ChildProcess] = field(default_factory=list)
    routing: str = ""
    tier_view: TierView | None = None


def find_collector() -> tuple[Path, Path] | None:
    """(binary, config) of otelcol-trader, or None when it is not built (the demo never builds it)."""
    try:
        return find_binary(build=False), find_config()
    except CollectorError:
        return None


def _clean_env() -> dict[str, str]:
    # Our configs read OTELCOL_*/SINK_* variables: start from an environment without them so a
    # developer's shell cannot move the demo's collector onto production ports.
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "SINK_"))}


def start_collector(group: ProcessGroup, run_dir: Path, gateways: int = 0) -> CollectorInfo | None:
    """Start otelcol-trader (and the SigNoz stand-in) on free loopback ports; None if not built.

    ``gateways`` > 0 starts the two-tier deployment: that many gateways and an agent in front.
    """
    found = find_collector()
    if found is None:
        return None
    binary, config = found
    sink: ChildProcess | None = None
    sink_file: Path | None = None
    signoz = os.environ.get("SIGNOZ_ENDPOINT")
    sink_config = config.parent / "sink-config.yaml"
    if signoz:
        destination = f"SigNoz at {signoz}"
    elif sink_config.is_file():
        sink_grpc, sink_http, sink_health = free_port(), free_port(), free_port()
        sink_file = run_dir / "signoz-sink.jsonl"
        env = _clean_env()
        env.update(
            SINK_BIND_HOST="127.0.0.1",
            SINK_OTLP_GRPC_PORT=str(sink_grpc),
            SINK_OTLP_HTTP_PORT=str(sink_http),
            SINK_HEALTH_PORT=str(sink_health),
            SINK_FILE=str(sink_file),
        )
        sink = group.start("signoz-sink", [str(binary), "--config", str(sink_config)], env)
        group.wait_http(sink, f"http://127.0.0.1:{sink_health}/", timeout=30)
        signoz = f"127.0.0.1:{sink_grpc}"
        destination = f"local SigNoz stand-in (collector/sink-config.yaml) writing {sink_file}"
    else:
        signoz = f"127.0.0.1:{free_port()}"  # nothing listens: exports queue and retry
        destination = "nowhere (no SIGNOZ_ENDPOINT and no collector/sink-config.yaml)"

    if gateways > 0:
        return _start_tier(group, run_dir, binary, config, signoz, destination, sink, sink_file, gateways)
    ports = CollectorPorts.free()
    env = collector_env(
        ports,
        storage_dir=run_dir / "collector-queue",
        signoz_endpoint=signoz,
        extra={
            "OTELCOL_BATCH_TIMEOUT": "200ms",
            "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "2s",
            "OTELCOL_DEPLOYMENT_ENVIRONMENT": "demo",
        },
    )
    endpoints = Endpoints.for_ports(ports)
    process = group.start("otelcol-trader", [str(binary), "--config", str(config)], env, ports=asdict(ports))
    group.wait_http(process, endpoints.health, timeout=30)
    return CollectorInfo(
        process=process,
        otlp_grpc_endpoint=endpoints.otlp_grpc,
        prometheus_url=endpoints.prometheus,
        telemetry_url=endpoints.telemetry,
        health_url=endpoints.health,
        zpages_url=endpoints.zpages,
        destination=destination,
        sink=sink,
        sink_file=sink_file,
    )


#: The demo's settings of every collector (short batches and flushes: the summary comes seconds
#: after the load).
_DEMO_ENV = {
    "OTELCOL_BATCH_TIMEOUT": "200ms",
    "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "2s",
    "OTELCOL_DEPLOYMENT_ENVIRONMENT": "demo",
}


def _start_tier(
    group: ProcessGroup,
    run_dir: Path,
    binary: Path,
    config: Path,
    signoz: str,
    destination: str,
    sink: ChildProcess | None,
    sink_file: Path | None,
    count: int,
) -> CollectorInfo:
    gateway_env = {
        **_DEMO_ENV,
        "OTELCOL_TAIL_DECISION_WAIT": "2s",
        "OTELCOL_TAIL_SAMPLE_PERCENT": "100",
    }
    # No Prometheus in the demo: the gateways' metrics go to SigNoz only.
    no_remote_write = "yaml:service::pipelines::metrics::exporters: [otlp_grpc/signoz]"
    started: list[tuple[ChildProcess, Endpoints]] = []
    for i in range(1, count + 1):
        ports = CollectorPorts.free()
        env = collector_env(
            ports, storage_dir=run_dir / f"gateway-{i}-queue", signoz_endpoint=signoz, extra=gateway_env
        )
        argv = (
            [str(binary)]
            + [f"--config={c}" for c in role_configs("gateway")]
            + [f"--config={no_remote_write}"]
        )
        process = group.start(f"otelcol-gateway-{i}", argv, env, ports=asdict(ports))
        started.append((process, Endpoints.for_ports(ports)))
    for process, endpoints in started:
        group.wait_http(process, endpoints.health, timeout=30)

    ports = CollectorPorts.free()
    routes = gateways_env(e.otlp_grpc for _, e in started)
    env = collector_env(
        ports,
        storage_dir=run_dir / "agent-queue",
        extra={**_DEMO_ENV, **routes, "OTELCOL_AGENT_ID": "demo-agent"},
    )
    # The agent's host-local Prometheus endpoint, for the summary's "collector Prometheus" line.
    local_prometheus = [
        "yaml:service::pipelines::metrics::exporters: [loadbalancing/metrics, prometheus]",
        "yaml:service::pipelines::metrics/spanmetrics::exporters: [loadbalancing/metrics, prometheus]",
    ]
    configs = [*role_configs("agent", base=config), *local_prometheus]
    agent = group.start(
        "otelcol-agent", [str(binary)] + [f"--config={c}" for c in configs], env, ports=asdict(ports)
    )
    endpoints = Endpoints.for_ports(ports)
    group.wait_http(agent, endpoints.health, timeout=30)

    view = TierView(endpoints.telemetry, [e.telemetry for _, e in started])
    lines = [f"agent pid {agent.pid} at {endpoints.otlp_grpc}"]
    lines += [f"gateway-{i} pid {p.pid} at {e.otlp_grpc}" for i, (p, e) in enumerate(started, 1)]
    gateway_routes = [
        line
        for line in describe_routing("gateway", {**gateway_env, "SIGNOZ_ENDPOINT": signoz}).splitlines()
        if "remote write" not in line
    ]
    routing = "\n".join(
        ["  " + line for line in lines]
        + [
            describe_routing("agent", env),
            *gateway_routes,
            "  metrics to Prom.    none in the demo (remote write off)",
        ]
    )
    return CollectorInfo(
        process=agent,
        otlp_grpc_endpoint=endpoints.otlp_grpc,
        prometheus_url=endpoints.prometheus,
        telemetry_url=view.url,
        health_url=endpoints.health,
        zpages_url=endpoints.zpages,
        destination=f"agent → {count} gateways (tail sampling) → {destination}",
        sink=sink,
        sink_file=sink_file,
        gateways=[p for p, _ in started],
        routing=routing,
        tier_view=view,
    )


class TierView:
    """The tier's self-metrics as one endpoint: the agent's, plus the gateways' exporter samples.

    What entered the tier is the agent's ``otelcol_receiver_*``; what left it (to SigNoz) is the
    gateways' ``otelcol_exporter_*{exporter="otlp_grpc/signoz"}``, summed over gateways by whoever
    reads this. Served on a free loopback port from a daemon thread until :meth:`close`.
    """

    def __init__(self, agent_url: str, gateway_urls: list[str]) -> None:
        self.agent_url = agent_url
        self.gateway_urls = gateway_urls
        view = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                try:
                    body = view.render().encode()
                    self.send_response(200)
                except OSError as exc:
                    body = f"tier view: {exc}\n".encode()
                    self.send_response(502)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence access logs
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, name="tier-view", daemon=True).start()

    def render(self) -> str:
        """The agent's exposition, then the gateways' ``otelcol_exporter_*`` sample lines."""
        parts = [http_get(self.agent_url, timeout=5.0)[1]]
        for url in self.gateway_urls:
            text = http_get(url, timeout=5.0)[1]
            parts.append(
                "\n".join(line for line in text.splitlines() if line.startswith("otelcol_exporter_"))
            )
        return "\n".join(parts) + "\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
