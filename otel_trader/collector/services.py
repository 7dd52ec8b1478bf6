"""The collector and the sink (the stand-in for SigNoz's ingest) as supervised processes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from otel_trader.collector.binary import (
    COLLECTOR_DIR,
    CollectorError,
    find_binary,
    find_config,
)
from otel_trader.collector.ports import OWN_ENV_PREFIXES, CollectorPorts, Endpoints, collector_env, free_ports
from otel_trader.collector.process import ManagedProcess, http_get


class CollectorProcess(ManagedProcess):
    """``otelcol-trader`` running ``collector/otelcol-config.yaml`` (plus ``extra_configs``).

    ``binary``/``config`` default to :func:`find_binary` (which builds in a source checkout when
    missing) and :func:`find_config`; ``ports`` to the standard ones. ``env`` entries are
    applied last (e.g. ``OTELCOL_BATCH_TIMEOUT``); see :func:`collector_env` for the rest.
    """

    name = "otelcol-trader"

    def __init__(
        self,
        binary: Path | None = None,
        config: Path | None = None,
        ports: CollectorPorts | None = None,
        *,
        bind_host: str = "127.0.0.1",
        storage_dir: Path | None = None,
        signoz_endpoint: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_configs: Iterable[Path] = (),
        clean_env: bool = True,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.ports = ports or CollectorPorts()
        self.bind_host = bind_host
        self.endpoints = Endpoints.for_ports(self.ports, bind_host)
        full_env = collector_env(
            self.ports,
            bind_host=bind_host,
            storage_dir=storage_dir,
            signoz_endpoint=signoz_endpoint,
            extra=env,
            clean=clean_env,
        )
        self.storage_dir = Path(full_env["OTELCOL_STORAGE_DIR"])
        super().__init__(
            binary or find_binary(),
            [config or find_config(), *extra_configs],
            full_env,
            self.endpoints.health,
            log_path,
            cwd,
        )

    def start(self, timeout: float = 30.0) -> CollectorProcess:
        """Start and wait until healthy; see :meth:`ManagedProcess.start`."""
        # file_storage creates its own directory, but not missing parents of it.
        self.storage_dir.parent.mkdir(parents=True, exist_ok=True)
        super().start(timeout)
        return self

    def __enter__(self) -> CollectorProcess:
        if not self.running:
            self.start()
        return self

    def self_metric(self, sample_name: str, **labels: str) -> float:
        """Sum of the collector's own metric samples ``sample_name`` (``otelcol_*``) matching ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = http_get(self.endpoints.telemetry, timeout=5.0)
        if status != 200:
            raise CollectorError(f"{self.endpoints.telemetry}: HTTP {status}")
        total = 0.0
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


class SinkProcess(ManagedProcess):
    """``collector/sink-config.yaml``: OTLP in, one OTLP/JSON line per request into ``file``.

    The stand-in for SigNoz's ingest (SigNoz receives through its own OTel collector, so what
    this receives is what SigNoz would see). Only in a source checkout; for tests and the demo.
    """

    name = "otelcol-sink"

    def __init__(
        self,
        file: Path,
        binary: Path | None = None,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        health_port: int | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        config = COLLECTOR_DIR / "sink-config.yaml"
        if not config.is_file():
            raise CollectorError(f"{config} not found: the sink exists only in a source checkout")
        chosen = free_ports(3)
        self.grpc_port = grpc_port or chosen[0]
        self.http_port = http_port or chosen[1]
        self.health_port = health_port or chosen[2]
        self.file = Path(file)
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_ENV_PREFIXES)}
        env.update(
            SINK_BIND_HOST="127.0.0.1",
            SINK_OTLP_GRPC_PORT=str(self.grpc_port),
            SINK_OTLP_HTTP_PORT=str(self.http_port),
            SINK_HEALTH_PORT=str(self.health_port),
            SINK_FILE=str(self.file),
        )
        super().__init__(
            binary or find_binary(),
            [config],
            env,
            f"http://127.0.0.1:{self.health_port}/",
            log_path,
            cwd,
        )

    @property
    def otlp_grpc_endpoint(self) -> str:
        """``127.0.0.1:PORT``: what ``SIGNOZ_ENDPOINT`` of a main collector points at."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 30.0) -> SinkProcess:
        """Start and wait until healthy."""
        super().start(timeout)
        return self

    def __enter__(self) -> SinkProcess:
        if not self.running:
            self.start()
        return self
