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
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..collector import CollectorError, CollectorPorts, Endpoints, collector_env, find_binary, find_config
from .processes import ChildProcess, ProcessGroup, free_port

__all__ = ["CollectorInfo", "find_collector", "start_collector"]


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


def start_collector(group: ProcessGroup, run_dir: Path) -> CollectorInfo | None:
    """Start otelcol-trader (and the SigNoz stand-in) on free loopback ports; None if not built."""
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
