"""The collector's listening ports, the endpoints they give and the environment that sets them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from otel_trader.collector.binary import CollectorError, default_storage_dir

#: Prefixes of the variables our configs read. A "clean" environment drops them, so a
#: developer's shell cannot move a test's or the demo's collector onto other ports or storage.
OWN_ENV_PREFIXES = ("OTELCOL_", "SINK_")


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free TCP ports on ``host`` (all held open until all are chosen)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True)
class CollectorPorts:
    """The listeners of ``otelcol-config.yaml``; the defaults are the collector's usual ports."""

    otlp_grpc: int = 4317
    otlp_http: int = 4318
    health: int = 13133
    prometheus: int = 8889
    telemetry: int = 8888
    pprof: int = 1777
    zpages: int = 55679

    #: field → the config's environment variable.
    ENV = {
        "otlp_grpc": "OTELCOL_OTLP_GRPC_PORT",
        "otlp_http": "OTELCOL_OTLP_HTTP_PORT",
        "health": "OTELCOL_HEALTH_PORT",
        "prometheus": "OTELCOL_PROMETHEUS_PORT",
        "telemetry": "OTELCOL_TELEMETRY_PORT",
        "pprof": "OTELCOL_PPROF_PORT",
        "zpages": "OTELCOL_ZPAGES_PORT",
    }

    @classmethod
    def free(cls, host: str = "127.0.0.1") -> CollectorPorts:
        """Distinct free ports for every listener, so several collectors can run side by side."""
        names = [f.name for f in fields(cls)]
        return cls(**dict(zip(names, free_ports(len(names), host), strict=True)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: int | None) -> CollectorPorts:
        """Defaults, replaced by the ``OTELCOL_*_PORT`` variables set, replaced by non-None ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name, var in cls.ENV.items():
            raw = environ.get(var, "").strip()
            if raw:
                try:
                    values[name] = int(raw)
                except ValueError as exc:
                    raise CollectorError(f"{var}={raw!r} is not a port number") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def env(self) -> dict[str, str]:
        """The ``OTELCOL_*_PORT`` variables that put the collector on these ports."""
        return {var: str(getattr(self, name)) for name, var in self.ENV.items()}


@dataclass(frozen=True)
class Endpoints:
    """Where a running collector listens, as clients address it."""

    otlp_grpc: str
    otlp_http: str
    prometheus: str
    telemetry: str
    health: str
    zpages: str
    pprof: str

    @classmethod
    def for_ports(cls, ports: CollectorPorts, bind_host: str = "127.0.0.1") -> Endpoints:
        """Endpoints of a collector bound to ``bind_host`` (a wildcard address is reached via loopback)."""
        host = _client_host(bind_host)
        debug = "127.0.0.1"  # pprof/zpages stay on loopback (OTELCOL_DEBUG_BIND_HOST)
        return cls(
            otlp_grpc=f"{host}:{ports.otlp_grpc}",
            otlp_http=f"http://{host}:{ports.otlp_http}",
            prometheus=f"http://{host}:{ports.prometheus}/metrics",
            telemetry=f"http://{host}:{ports.telemetry}/metrics",
            health=f"http://{host}:{ports.health}/",
            zpages=f"http://{debug}:{ports.zpages}/debug/tracez",
            pprof=f"http://{debug}:{ports.pprof}/debug/pprof/",
        )

    def describe(self, role: str = "single") -> list[tuple[str, str]]:
        """(label, address) rows for printing; agents and gateways serve no Prometheus endpoint."""
        rows = [
            ("OTLP gRPC", f"{self.otlp_grpc}   (OTLP_ENDPOINT={self.otlp_grpc})"),
            ("OTLP HTTP", self.otlp_http),
            ("Prometheus (app + span metrics)", self.prometheus),
            ("self-metrics (otelcol_*)", self.telemetry),
            ("health", self.health),
            ("zpages", self.zpages),
        ]
        if role == "gateway":
            rows[0] = ("OTLP gRPC", f"{self.otlp_grpc}   (for the agents)")
        return rows if role == "single" else [r for r in rows if not r[0].startswith("Prometheus")]


def _client_host(bind_host: str) -> str:
    if bind_host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host


def collector_env(
    ports: CollectorPorts,
    *,
    bind_host: str = "127.0.0.1",
    storage_dir: Path | None = None,
    signoz_endpoint: str | None = None,
    extra: Mapping[str, str] | None = None,
    clean: bool = True,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for ``otelcol-config.yaml`` on ``ports``.

    ``base`` (default ``os.environ``) is the starting point; ``clean`` drops its ``OTELCOL_*`` and
    ``SINK_*`` variables first. ``SIGNOZ_*`` always pass through unless ``signoz_endpoint`` is
    given, and ``extra`` wins over everything.
    """
    env = dict(os.environ if base is None else base)
    if clean:
        env = {k: v for k, v in env.items() if not k.startswith(OWN_ENV_PREFIXES)}
    env.update(ports.env())
    env["OTELCOL_BIND_HOST"] = bind_host
    env.setdefault("OTELCOL_DEBUG_BIND_HOST", "127.0.0.1")
    if storage_dir is not None:
        env["OTELCOL_STORAGE_DIR"] = str(storage_dir)
    elif not env.get("OTELCOL_STORAGE_DIR"):
        env["OTELCOL_STORAGE_DIR"] = str(default_storage_dir())
    if signoz_endpoint is not None:
        env["SIGNOZ_ENDPOINT"] = signoz_endpoint
        env.setdefault("SIGNOZ_INSECURE", "true")
    env.update(extra or {})
    return env


def gateways_env(gateways: Iterable[str]) -> dict[str, str]:
    """``OTELCOL_GATEWAYS`` for the agent's static resolver: ``host:port`` entries as a YAML list.

    The whole variable is one ``${env:...}`` value in ``agent.yaml``, which the collector parses
    as YAML, so the list reaches the resolver as a list. Raises :class:`CollectorError` for an
    empty list or an entry that is not ``host:port``.
    """
    entries = [g.strip() for g in gateways]
    if not entries:
        raise CollectorError("an agent needs at least one gateway (host:port)")
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or any(c in entry for c in ",[]{} \t"):
            raise CollectorError(f"gateway {entry!r} is not host:port")
    return {"OTELCOL_GATEWAYS": "[" + ", ".join(entries) + "]"}


def describe_endpoints(endpoints: Endpoints, role: str = "single") -> str:
    """A printable block of a collector's endpoints."""
    rows = endpoints.describe(role)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)
