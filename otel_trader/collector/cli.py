"""Run otel-trader's collector (otelcol-trader) in the foreground.

``otel-trader collector run`` builds ``collector/bin/otelcol-trader`` when it is missing (source
checkout), starts it with ``collector/otelcol-config.yaml``, waits until its health check
answers, prints where it listens, and runs until Ctrl-C or SIGTERM, then stops it (SIGTERM,
SIGKILL after ``--stop-timeout``). Ports: the options, else the ``OTELCOL_*_PORT`` variables,
else the usual 4317/4318/13133/8889/8888. Every other ``OTELCOL_*``/``SIGNOZ_*`` variable of
``collector/README.md`` passes through.

``--role`` picks the deployment role (collector/README.md, "Two tiers"): ``single`` (default,
``otelcol-config.yaml``), ``agent`` (``otelcol-config.yaml`` + ``agent.yaml``: routes to the
gateways named by ``--gateway`` or found with ``--gateway-dns``) or ``gateway`` (``gateway.yaml``:
tail sampling, SigNoz, Prometheus remote write to ``--remote-write``). It prints who routes
what to whom.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from otel_trader.collector import (
    ROLES,
    CollectorError,
    CollectorPorts,
    CollectorProcess,
    describe_endpoints,
    describe_routing,
    find_binary,
    find_config,
    gateways_env,
    role_configs,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``run`` (the only action so far) and its options to the ``collector`` parser."""
    actions = parser.add_subparsers(dest="collector_action", required=True, metavar="ACTION")
    run_parser = actions.add_parser(
        "run",
        help="build if missing, start, wait for health, print endpoints, run until Ctrl-C",
        description=(__doc__ or "").strip().splitlines()[0],
    )
    run_parser.add_argument(
        "--role",
        choices=ROLES,
        default="single",
        help="single collector (default), agent (next to the apps, routes to the gateways) or "
        "gateway (tail sampling, SigNoz, Prometheus remote write)",
    )
    run_parser.add_argument(
        "--gateway",
        dest="gateways",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="agent: a gateway's OTLP/gRPC address (repeatable; default $OTELCOL_GATEWAYS); "
        "every agent must list the same addresses",
    )
    run_parser.add_argument(
        "--gateway-dns",
        default=None,
        metavar="NAME[:PORT]",
        help="agent: find the gateways by resolving NAME (one address per gateway, e.g. a headless "
        "Service) instead of --gateway",
    )
    run_parser.add_argument(
        "--remote-write",
        default=None,
        metavar="URL",
        help="gateway: Prometheus remote-write URL (default $OTELCOL_PROMETHEUS_REMOTE_WRITE_ENDPOINT "
        "or http://prometheus:9090/api/v1/write)",
    )
    run_parser.add_argument(
        "--bind",
        default=None,
        metavar="HOST",
        help="listen address (default $OTELCOL_BIND_HOST or 127.0.0.1; 0.0.0.0 for all interfaces)",
    )
    for option, field, default in (
        ("--grpc-port", "otlp_grpc", 4317),
        ("--http-port", "otlp_http", 4318),
        ("--health-port", "health", 13133),
        ("--prometheus-port", "prometheus", 8889),
        ("--telemetry-port", "telemetry", 8888),
    ):
        run_parser.add_argument(
            option,
            dest=field,
            type=int,
            default=None,
            metavar="PORT",
            help=f"default ${CollectorPorts.ENV[field]} or {default}",
        )
    run_parser.add_argument(
        "--config",
        dest="extra_configs",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="extra config merged over otelcol-config.yaml (repeatable), e.g. collector/tail-sampling.yaml",
    )
    run_parser.add_argument(
        "--storage-dir",
        type=Path,
        default=None,
        help="persistent queue directory (default $OTELCOL_STORAGE_DIR or "
        "~/.local/state/otel-trader/collector-queue)",
    )
    run_parser.add_argument(
        "--no-build", action="store_true", help="fail instead of building a missing binary"
    )
    run_parser.add_argument(
        "--startup-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for the health check (default 60)",
    )
    run_parser.add_argument(
        "--stop-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds between SIGTERM and SIGKILL when stopping (default 15)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; returns the exit status."""
    if args.collector_action == "run":
        return _run(args)
    raise SystemExit(f"unknown collector action {args.collector_action!r}")  # argparse prevents this


def _say(message: str) -> None:
    print(message, flush=True)


def _role_env(args: argparse.Namespace) -> tuple[dict[str, str], bool]:
    """The variables the role's config reads from the options, and whether gateways come from DNS."""
    env: dict[str, str] = {}
    if args.role != "agent" and (args.gateways or args.gateway_dns):
        raise CollectorError("--gateway/--gateway-dns are options of --role agent")
    if args.role != "gateway" and args.remote_write:
        raise CollectorError("--remote-write is an option of --role gateway")
    if args.role == "gateway" and args.remote_write:
        env["OTELCOL_PROMETHEUS_REMOTE_WRITE_ENDPOINT"] = args.remote_write
    if args.role != "agent":
        return env, False
    if args.gateways and args.gateway_dns:
        raise CollectorError("give either --gateway (static list) or --gateway-dns, not both")
    # Names the agent in the span metrics of apps that set no service.instance.id (agent.yaml).
    env["OTELCOL_AGENT_ID"] = os.environ.get("OTELCOL_AGENT_ID") or socket.gethostname()
    if args.gateway_dns:
        name, _, port = args.gateway_dns.partition(":")
        env["OTELCOL_GATEWAY_DNS"] = name
        if port:
            env["OTELCOL_GATEWAY_PORT"] = port
        return env, True
    if args.gateways:
        env.update(gateways_env(args.gateways))
    elif not os.environ.get("OTELCOL_GATEWAYS"):
        raise CollectorError("--role agent needs --gateway HOST:PORT (repeatable) or --gateway-dns NAME")
    return env, False


def _backends(collector: CollectorProcess, timeout: float = 5.0) -> str:
    """How many gateways the agent's load balancer has in its ring (its own metric), once it has any."""
    deadline = time.monotonic() + timeout
    count = 0.0
    while time.monotonic() < deadline:
        try:
            count = collector.self_metric("otelcol_loadbalancer_num_backends")
        except (CollectorError, OSError):
            count = 0.0
        if count > 0:
            break
        time.sleep(0.25)
    return f"  gateways in the ring {count:g} (otelcol_loadbalancer_num_backends)"


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    # SIGTERM (systemd, docker stop, kill) stops as cleanly as Ctrl-C. Installed before the
    # build and the start, so a signal during either still leads to a clean stop.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    collector: CollectorProcess | None = None
    try:
        try:
            role_env, dns = _role_env(args)
            configs = role_configs(args.role, dns=dns, base=find_config() if args.role != "gateway" else None)
            binary = find_binary(build=not args.no_build)
            config = configs[0]
            ports = CollectorPorts.from_env(
                otlp_grpc=args.otlp_grpc,
                otlp_http=args.otlp_http,
                health=args.health,
                prometheus=args.prometheus,
                telemetry=args.telemetry,
            )
            bind = args.bind or os.environ.get("OTELCOL_BIND_HOST") or "127.0.0.1"
            # clean_env=False: the user's OTELCOL_* settings (batch timeout, memory limit, …) apply.
            collector = CollectorProcess(
                binary,
                config,
                ports,
                bind_host=bind,
                storage_dir=args.storage_dir,
                env=role_env,
                extra_configs=[*configs[1:], *args.extra_configs],
                clean_env=False,
            )
            _say(
                f"otel-trader: starting the {args.role} collector: {binary}"
                + "".join(f" --config {c}" for c in collector.configs)
            )
            if stop.is_set():
                return 128 + received[0]
            collector.start(timeout=args.startup_timeout)
        except CollectorError as exc:
            print(f"otel-trader collector: {exc}", file=sys.stderr)
            return 1
        signoz = collector.env.get("SIGNOZ_ENDPOINT", "signoz-otel-collector:4317 (default)")
        if args.role == "single":
            routing = f"  exporting to SigNoz at {signoz}; queue in {collector.storage_dir}"
        else:
            routing = describe_routing(args.role, collector.env, dns=dns)
        _say(
            f"otel-trader: collector healthy, pid {collector.pid}\n"
            f"{describe_endpoints(collector.endpoints, args.role)}\n{routing}"
        )
        if args.role == "agent":
            _say(_backends(collector))
        _say("otel-trader: Ctrl-C to stop")
        while not stop.wait(0.5):
            if not collector.running:
                code = collector.stop()
                print(
                    f"otel-trader collector: otelcol-trader exited by itself with code {code}",
                    file=sys.stderr,
                )
                return code if code else 1
        _say("otel-trader: stopping the collector")
        code = collector.stop(timeout=args.stop_timeout)
        _say(f"otel-trader: collector stopped (exit code {code})")
        return 0
    finally:
        if collector is not None and collector.running:
            collector.stop(timeout=args.stop_timeout)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
