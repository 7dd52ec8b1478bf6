"""Running otel-trader's collector distribution (``otelcol-trader``) from Python.

The one place that knows how: where the binary is (and how to build it in a source checkout),
which configuration it runs, which environment variables move its listeners (the
``${env:OTELCOL_*}`` of ``collector/otelcol-config.yaml``, see ``collector/README.md``), how to
tell it is ready (the ``health_check`` extension answers 200), and how to stop it (SIGTERM, then
SIGKILL after a bounded wait). ``otel-trader collector run``, the end-to-end tests and the demo
all go through here.

    from otel_trader.collector import CollectorProcess, CollectorPorts

    with CollectorProcess(ports=CollectorPorts.free(), storage_dir=tmp / "queue") as col:
        print(col.endpoints.otlp_grpc)        # 127.0.0.1:PORT, for OTLP_ENDPOINT

:class:`SinkProcess` runs ``collector/sink-config.yaml``, the stand-in for SigNoz's ingest that
writes every OTLP request it receives as one JSON line (source checkouts only; for tests and the
demo).

The modules: :mod:`~otel_trader.collector.binary` (finding and building),
:mod:`~otel_trader.collector.ports` (ports, endpoints, environment),
:mod:`~otel_trader.collector.process` (process supervision, shared with the demo and the tests),
:mod:`~otel_trader.collector.services` (the collector and sink processes),
:mod:`~otel_trader.collector.tier` (agents and gateways) and :mod:`~otel_trader.collector.cli`.
"""

from __future__ import annotations

from otel_trader.collector.binary import (
    COLLECTOR_DIR,
    ROLES,
    CollectorError,
    build_collector,
    default_storage_dir,
    find_binary,
    find_config,
    role_configs,
)
from otel_trader.collector.ports import (
    CollectorPorts,
    Endpoints,
    collector_env,
    describe_endpoints,
    free_ports,
    gateways_env,
)
from otel_trader.collector.process import ManagedProcess, http_get
from otel_trader.collector.services import CollectorProcess, SinkProcess
from otel_trader.collector.tier import ROUTING_DEFAULTS, Tier, describe_routing, start_tier

__all__ = [
    "COLLECTOR_DIR",
    "ROLES",
    "ROUTING_DEFAULTS",
    "CollectorError",
    "CollectorPorts",
    "CollectorProcess",
    "Endpoints",
    "ManagedProcess",
    "SinkProcess",
    "Tier",
    "build_collector",
    "collector_env",
    "default_storage_dir",
    "describe_endpoints",
    "describe_routing",
    "find_binary",
    "find_config",
    "free_ports",
    "gateways_env",
    "http_get",
    "role_configs",
    "start_tier",
]
