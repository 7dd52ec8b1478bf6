"""Starting our collector distribution (``collector/bin/otelcol-trader``) for the demo.

The binary and its config are found next to the package (a source checkout: ``collector/``),
or through ``OTELCOL_BINARY`` / ``OTELCOL_CONFIG``. Every port is a free loopback port passed
through the config's ``OTELCOL_*`` variables (collector/README.md). Where the data goes:

* ``SIGNOZ_ENDPOINT`` set in the environment: to that SigNoz (``SIGNOZ_INSECURE`` /
  ``SIGNOZ_INGESTION_KEY`` pass through);
* otherwise to a local stand-in for SigNoz's ingest, ``collector/sink-config.yaml``, which
  writes every OTLP request it receives as a JSON line to ``<run dir>/signoz-sink.jsonl``.

When the ``otel-trader collector`` command exists, this is the place to call it instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .processes import ChildProcess, ProcessGroup, free_port

__all__ = ["CollectorInfo", "find_collector", "start_collector"]

_COLLECTOR_DIR = Path(__file__).resolve().parents[2] / "collector"


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
    """(binary, config) of otelcol-trader, or None when it is not built."""
    binary = Path(os.environ.get("OTELCOL_BINARY") or _COLLECTOR_DIR / "bin" / "otelcol-trader")
    if not binary.is_file() and os.environ.get("OTELCOL_BINARY") is None:
        found = shutil.which("otelcol-trader")
        binary = Path(found) if found else binary
    config = Path(os.environ.get("OTELCOL_CONFIG") or _COLLECTOR_DIR / "otelcol-config.yaml")
    if binary.is_file() and os.access(binary, os.X_OK) and config.is_file():
        return binary, config
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

    names = ("otlp_grpc", "otlp_http", "health", "prometheus", "telemetry", "pprof", "zpages")
    ports = {name: free_port() for name in names}
    env = _clean_env()
    env.update(
        OTELCOL_BIND_HOST="127.0.0.1",
        OTELCOL_DEBUG_BIND_HOST="127.0.0.1",
        OTELCOL_OTLP_GRPC_PORT=str(ports["otlp_grpc"]),
        OTELCOL_OTLP_HTTP_PORT=str(ports["otlp_http"]),
        OTELCOL_HEALTH_PORT=str(ports["health"]),
        OTELCOL_PROMETHEUS_PORT=str(ports["prometheus"]),
        OTELCOL_TELEMETRY_PORT=str(ports["telemetry"]),
        OTELCOL_PPROF_PORT=str(ports["pprof"]),
        OTELCOL_ZPAGES_PORT=str(ports["zpages"]),
        OTELCOL_STORAGE_DIR=str(run_dir / "collector-queue"),
        OTELCOL_BATCH_TIMEOUT="200ms",
        OTELCOL_SPANMETRICS_FLUSH_INTERVAL="2s",
        OTELCOL_DEPLOYMENT_ENVIRONMENT="demo",
        SIGNOZ_ENDPOINT=signoz,
    )
    env.setdefault("SIGNOZ_INSECURE", "true")
    process = group.start("otelcol-trader", [str(binary), "--config", str(config)], env, ports=ports)
    health_url = f"http://127.0.0.1:{ports['health']}/"
    group.wait_http(process, health_url, timeout=30)
    return CollectorInfo(
        process=process,
        otlp_grpc_endpoint=f"127.0.0.1:{ports['otlp_grpc']}",
        prometheus_url=f"http://127.0.0.1:{ports['prometheus']}/metrics",
        telemetry_url=f"http://127.0.0.1:{ports['telemetry']}/metrics",
        health_url=health_url,
        zpages_url=f"http://127.0.0.1:{ports['zpages']}/debug/tracez",
        destination=destination,
        sink=sink,
        sink_file=sink_file,
    )
