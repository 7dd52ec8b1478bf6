"""Run the demo: collector (if built), mock exchange, trading API, a load, a summary from the metrics.

``python -m otel_trader.demo`` and ``otel-trader demo`` run the same thing:

1. starts our collector (``collector/bin/otelcol-trader``) when it is built, with a local
   stand-in for SigNoz behind it; otherwise says so and runs in-process only
   (``TELEMETRY_EXPORTER=none``, metrics at each service's ``/metrics``);
2. starts Redis (``REDIS_URL``, or a private ``redis-server`` when one is installed), the mock
   exchange and the trading API with uvicorn on free 127.0.0.1 ports, as child processes;
3. drives a bounded mixed load with a progress bar on stderr;
4. prints a summary read back from the metrics (``/metrics``, and the collector's own metrics);
5. stops everything it started — also on Ctrl-C, SIGTERM, SIGHUP and errors (children also die
   with the runner if it is killed, see :mod:`.processes`). ``--keep-running`` keeps the
   services up until Ctrl-C.

Exit status: 0 after a completed run (or Ctrl-C with ``--keep-running``), 1 when something
failed, 130 when interrupted before the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from otel_trader.demo import API_SERVICE, EXCHANGE_SERVICE

__all__ = ["add_arguments", "main", "run"]

RATE_LIMIT_BURST = 20
RATE_LIMIT_PER_SEC = 20
#: The mock exchange's clock runs this far ahead (seconds): the summary shows the skew ccxt sees.
MOCK_CLOCK_OFFSET = "0.35"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (shared by ``python -m otel_trader.demo`` and ``otel-trader demo``)."""
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        metavar="N",
        help="HTTP requests to send (default 300; unlimited within --duration when that is given)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop the load after this many seconds",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent load workers (default 8)")
    parser.add_argument(
        "--keep-running", action="store_true", help="after the summary keep the services running until Ctrl-C"
    )
    parser.add_argument(
        "--no-collector",
        action="store_true",
        help="do not start otelcol-trader even if it is built (in-process /metrics only)",
    )
    parser.add_argument(
        "--gateways",
        type=int,
        default=0,
        metavar="N",
        help="run the two-tier deployment: an agent routing to N gateways (collector/README.md, Two tiers)",
    )
    parser.add_argument(
        "--no-redis", action="store_true", help="do not start a private redis-server when REDIS_URL is unset"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the load mix")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory with service logs")


class _Interrupted(Exception):
    """SIGTERM/SIGHUP: stop like Ctrl-C."""


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _service_env(name: str, collector: Any, extra: dict[str, str]) -> dict[str, str]:
    # The demo configures telemetry itself: inherited TELEMETRY_*/OTLP_*/OTEL_* settings (say, a
    # production endpoint in the shell) must not redirect it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTLP_", "OTEL_"))}
    env.update(
        TELEMETRY_ENABLED="true",
        SERVICE_NAME=name,
        SERVICE_VERSION="demo",
        ENVIRONMENT="demo",
        TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS="3",
        # Span counts for the summary (otel_sdk_span_started_total), also without an exporter.
        OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED="true",
        PYTHONUNBUFFERED="1",
    )
    if collector is not None:
        env.update(
            TELEMETRY_EXPORTER="otlp",
            OTLP_ENDPOINT=collector.otlp_grpc_endpoint,
            METRIC_EXPORT_INTERVAL_SECONDS="2",
            OTEL_BSP_SCHEDULE_DELAY="200",
        )
    else:
        env["TELEMETRY_EXPORTER"] = "none"
    env.update(extra)
    return env


def _uvicorn(factory: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "3",
    ]


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed ``args``; returns the exit status."""
    if args.requests is not None and args.requests < 1:
        _say("--requests must be at least 1")
        return 2
    if args.duration is not None and args.duration <= 0:
        _say("--duration must be positive")
        return 2
    if getattr(args, "gateways", 0) < 0:
        _say("--gateways must be 0 (one collector) or more")
        return 2
    requests = args.requests if args.requests is not None else (None if args.duration else 300)

    from otel_trader.demo.processes import ProcessGroup

    run_dir = Path(tempfile.mkdtemp(prefix="otel-trader-demo-"))
    group = ProcessGroup(run_dir)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in handlers:
        signal.signal(sig, _raise_interrupted)
    code = 1
    try:
        code = _run(args, requests, group, run_dir)
    except (KeyboardInterrupt, _Interrupted) as exc:
        reason = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
        code = 0 if getattr(exc, "after_summary", False) else 130
        _say(f"\n{reason}: stopping everything the demo started")
    except RuntimeError as exc:
        _say(f"demo failed: {exc}")
        code = 1
    finally:
        # A second Ctrl-C must not cut the clean-up short (every wait in it is bounded).
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in handlers:
            signal.signal(sig, signal.SIG_IGN)
        try:
            group.stop_all()
            left = [c for c in group.children if c.alive()]
            if left:  # pragma: no cover - stop_all kills what does not stop
                _say("still running: " + ", ".join(f"{c.name} (pid {c.pid})" for c in left))
                code = 1
            else:
                _say(
                    "stopped: " + ", ".join(f"{c.name} (pid {c.pid})" for c in group.children)
                    if group.children
                    else "nothing was started"
                )
            if code == 0 and not args.keep_logs:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                _say(f"logs: {run_dir}")
        finally:
            signal.signal(signal.SIGINT, previous_int)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    return code


class _AfterSummary(KeyboardInterrupt):
    """Ctrl-C while --keep-running: the run itself succeeded."""

    after_summary = True


def _run(args: argparse.Namespace, requests: int | None, group: Any, run_dir: Path) -> int:
    from otel_trader.demo.collector import find_collector, start_collector
    from otel_trader.demo.load import Progress, run_load
    from otel_trader.demo.processes import free_port

    collector = None
    if args.no_collector:
        _say("telemetry: --no-collector: in-process only (TELEMETRY_EXPORTER=none, metrics at /metrics)")
    elif find_collector() is None:
        _say(
            "telemetry: collector/bin/otelcol-trader is not built (collector/build.sh builds it): "
            "falling back to in-process export only (TELEMETRY_EXPORTER=none, metrics at /metrics; "
            "traces are recorded but not exported)"
        )
    else:
        collector = start_collector(group, run_dir, gateways=getattr(args, "gateways", 0))
        assert collector is not None
        _say(
            f"telemetry: otelcol-trader pid {collector.process.pid}, OTLP {collector.otlp_grpc_endpoint} "
            f"→ {collector.destination}"
        )
        if collector.routing:
            _say(f"telemetry: who routes to whom\n{collector.routing}")

    extra: dict[str, str] = {}
    redis_note = "off (no REDIS_URL)"
    if os.environ.get("REDIS_URL"):
        extra["REDIS_URL"] = os.environ["REDIS_URL"]
        redis_note = "REDIS_URL from the environment"
    elif not args.no_redis and shutil.which("redis-server"):
        port = free_port()
        redis = group.start(
            "redis-server",
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            dict(os.environ),
        )
        group.wait_port(redis, port)
        extra["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        redis_note = f"private redis-server pid {redis.pid} on 127.0.0.1:{port}"
    _say(f"redis: {redis_note}")

    exchange_port, api_port = free_port(), free_port()
    exchange_url, api_url = f"http://127.0.0.1:{exchange_port}", f"http://127.0.0.1:{api_port}"
    exchange = group.start(
        "mock-exchange",
        # The mock exchange sends its own Date header, from its own (skewed) clock.
        [*_uvicorn("otel_trader.demo.exchange:create_app", exchange_port), "--no-date-header"],
        _service_env(
            EXCHANGE_SERVICE,
            collector,
            # Room for the load's ~40 orders/s (Binance's 100 per 10 s would refuse most of them).
            {"MOCK_EXCHANGE_CLOCK_OFFSET_SECONDS": MOCK_CLOCK_OFFSET, "MOCK_EXCHANGE_ORDERS_PER_10S": "1000"},
        ),
        url=exchange_url,
    )
    extra.update(
        EXCHANGE_URL=exchange_url,
        DATABASE_URL=os.environ.get("DATABASE_URL") or f"sqlite:///{run_dir / 'demo.db'}",
        DEMO_RATE_LIMIT_BURST=str(RATE_LIMIT_BURST),
        DEMO_RATE_LIMIT_PER_SEC=str(RATE_LIMIT_PER_SEC),
    )
    api = group.start(
        "trading-api",
        _uvicorn("otel_trader.demo.api:create_app", api_port),
        _service_env(API_SERVICE, collector, extra),
        url=api_url,
    )
    group.wait_http(exchange, f"{exchange_url}/health")
    group.wait_http(api, f"{api_url}/health", ok=(200, 503))
    _say(
        f"started: mock-exchange pid {exchange.pid} at {exchange_url}, trading-api pid {api.pid} at {api_url}"
    )

    progress = Progress(requests, args.duration)
    from otel_trader.demo.scenario import with_scenario  # stall, blocked loop, kill switch during the load

    load = asyncio.run(
        with_scenario(
            run_load(
                api_url,
                requests=requests,
                duration=args.duration,
                concurrency=max(1, args.concurrency),
                seed=args.seed,
                burst_capacity=RATE_LIMIT_BURST,
                progress=progress,
            ),
            api_url,
            exchange_url,
        )
    )
    dead = [c.name for c in group.children if not c.alive()]
    if dead:
        raise RuntimeError(f"died during the load: {', '.join(dead)} (logs in {run_dir})")

    from otel_trader.demo.report import render

    text = render(load, api_url, exchange_url, collector, run_dir, args, requests)
    print(text, flush=True)
    ok = load.requests > 0 and load.transport_errors <= 0.05 * load.requests
    if not ok:
        _say(f"demo failed: {load.transport_errors} of {load.requests} requests got no HTTP response")
        return 1
    if args.keep_running:
        _say("services keep running (--keep-running); Ctrl-C stops them")
        try:
            while True:
                time.sleep(0.5)
                dead = [c.name for c in group.children if not c.alive()]
                if dead:
                    _say(f"stopped by itself: {', '.join(dead)}")
                    return 1
        except KeyboardInterrupt:
            raise _AfterSummary() from None
        except _Interrupted as exc:
            exc.after_summary = True  # type: ignore[attr-defined]
            raise
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m otel_trader.demo``."""
    parser = argparse.ArgumentParser(
        prog="python -m otel_trader.demo",
        description="Run the otel-trader demo: collector (if built), mock exchange, trading API, load, summary.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
