"""The two-tier deployment: agents routing to gateways, started together; what each role routes where."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from otel_trader.collector.binary import ROLES, CollectorError, find_binary, role_configs
from otel_trader.collector.ports import CollectorPorts, gateways_env
from otel_trader.collector.services import CollectorProcess

#: The ``${env:VAR:-default}`` defaults of agent.yaml / gateway.yaml that :func:`describe_routing`
#: prints when a variable is unset (tests/collector/test_tier.py checks they match the files).
ROUTING_DEFAULTS = {
    "OTELCOL_GATEWAYS": "[otelcol-gateway:4317]",
    "OTELCOL_GATEWAY_DNS": "otelcol-gateway",
    "OTELCOL_GATEWAY_PORT": "4317",
    "OTELCOL_GATEWAY_DNS_INTERVAL": "5s",
    "OTELCOL_TAIL_DECISION_WAIT": "10s",
    "OTELCOL_TAIL_LATENCY_MS": "1000",
    "OTELCOL_TAIL_SAMPLE_PERCENT": "10",
    "OTELCOL_PROMETHEUS_REMOTE_WRITE_ENDPOINT": "http://prometheus:9090/api/v1/write",
    "SIGNOZ_ENDPOINT": "signoz-otel-collector:4317",
}


def describe_routing(role: str, env: Mapping[str, str], *, dns: bool = False) -> str:
    """Who routes what to whom, for a collector of ``role`` started with ``env`` (printable block)."""

    def get(name: str) -> str:
        return env.get(name) or ROUTING_DEFAULTS[name]

    if role == "agent":
        if dns:
            gateways = (
                f"the addresses of {get('OTELCOL_GATEWAY_DNS')}, port {get('OTELCOL_GATEWAY_PORT')} "
                f"(DNS, resolved every {get('OTELCOL_GATEWAY_DNS_INTERVAL')})"
            )
        else:
            gateways = f"{get('OTELCOL_GATEWAYS').strip('[]')} (static list)"
        return "\n".join(
            [
                f"  routes to gateways  {gateways}",
                "  traces              by trace id: every span of a trace, from any agent, to the same gateway",
                "  metrics             by service.name: every series of a service written by one gateway",
                "  logs                by trace id (logs without one: any gateway)",
                "  span metrics        traces_span_metrics_* computed here, from every span, before sampling",
                "  queue               one persistent queue per signal in front of the gateways "
                f"({env.get('OTELCOL_STORAGE_DIR') or 'OTELCOL_STORAGE_DIR'})",
            ]
        )
    if role == "gateway":
        return "\n".join(
            [
                "  receives from       the agents (OTLP), whole traces and whole services",
                f"  tail sampling       after {get('OTELCOL_TAIL_DECISION_WAIT')}: keeps errors, traces slower than "
                f"{get('OTELCOL_TAIL_LATENCY_MS')} ms, rejected/failed orders, "
                f"{get('OTELCOL_TAIL_SAMPLE_PERCENT')} % of the rest",
                f"  exports to SigNoz   {get('SIGNOZ_ENDPOINT')} (traces, metrics, logs; persistent queue)",
                f"  metrics to Prom.    {get('OTELCOL_PROMETHEUS_REMOTE_WRITE_ENDPOINT')} (remote write)",
            ]
        )
    if role == "single":
        return f"  exports to SigNoz   {get('SIGNOZ_ENDPOINT')}; Prometheus pulls app + span metrics from this collector"
    raise CollectorError(f"unknown collector role {role!r}: expected one of {', '.join(ROLES)}")


@dataclass
class Tier:
    """Agents and gateways started together by :func:`start_tier`; :meth:`stop` stops them all."""

    gateways: list[CollectorProcess]
    agents: list[CollectorProcess]

    @property
    def agent(self) -> CollectorProcess:
        """The first agent (where a single app sends)."""
        return self.agents[0]

    def gateway_endpoints(self) -> list[str]:
        """``host:port`` of every gateway's OTLP/gRPC receiver, as the agents route to them."""
        return [g.endpoints.otlp_grpc for g in self.gateways]

    def stop(self, timeout: float = 10.0) -> None:
        """Agents first (they flush into the gateways), then the gateways."""
        for process in [*self.agents, *self.gateways]:
            process.stop(timeout)

    def __enter__(self) -> Tier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_tier(
    signoz_endpoint: str | Sequence[str],
    workdir: Path,
    *,
    gateways: int = 2,
    agents: int = 1,
    binary: Path | None = None,
    env: Mapping[str, str] | None = None,
    gateway_env: Mapping[str, str] | None = None,
    agent_env: Mapping[str, str] | None = None,
    gateway_configs: Iterable[Path] = (),
    agent_configs: Iterable[Path] = (),
    bind_host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> Tier:
    """Start ``gateways`` gateways exporting to ``signoz_endpoint``, then ``agents`` agents routing to them.

    ``signoz_endpoint`` may be a list with one endpoint per gateway (tests give each gateway its
    own SigNoz stand-in to see what each one exported). Every process gets free ports, its own
    storage directory and log under ``workdir``; ``env`` applies to all of them, ``gateway_env`` /
    ``agent_env`` on top for one role, and ``gateway_configs`` / ``agent_configs`` are merged over
    the role's files. On any failure whatever was started is stopped again.
    """
    binary = binary or find_binary()
    targets = [signoz_endpoint] * gateways if isinstance(signoz_endpoint, str) else list(signoz_endpoint)
    if len(targets) != gateways:
        raise CollectorError(f"{len(targets)} SigNoz endpoints for {gateways} gateways")
    gateway_files, agent_files = list(gateway_configs), list(agent_configs)
    started: list[CollectorProcess] = []
    tier = Tier(gateways=[], agents=[])
    try:
        for i in range(1, gateways + 1):
            gateway = CollectorProcess(
                binary,
                role_configs("gateway")[0],
                CollectorPorts.free(),
                extra_configs=gateway_files,
                bind_host=bind_host,
                storage_dir=workdir / f"gateway-{i}-queue",
                signoz_endpoint=targets[i - 1],
                env={**(env or {}), **(gateway_env or {})},
                log_path=workdir / f"gateway-{i}.log",
            )
            started.append(gateway.start(timeout))
            tier.gateways.append(gateway)
        routes = gateways_env(tier.gateway_endpoints())
        for i in range(1, agents + 1):
            configs = role_configs("agent")
            agent = CollectorProcess(
                binary,
                configs[0],
                CollectorPorts.free(),
                bind_host=bind_host,
                storage_dir=workdir / f"agent-{i}-queue",
                env={"OTELCOL_AGENT_ID": f"agent-{i}", **routes, **(env or {}), **(agent_env or {})},
                extra_configs=[*configs[1:], *agent_files],
                log_path=workdir / f"agent-{i}.log",
            )
            started.append(agent.start(timeout))
            tier.agents.append(agent)
    except BaseException:
        for process in reversed(started):
            process.stop(5.0)
        raise
    return tier
