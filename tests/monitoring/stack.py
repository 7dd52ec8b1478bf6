"""The end-to-end stack of the monitoring tests, and the checks run against it.

    with Stack.start(tmp, apps=[AppSpec(...)], api="trader-api") as stack:   # collector, sink, apps, Prometheus
        ...

All real processes on 127.0.0.1 with free ports, each stopped at the end (SIGTERM, then
SIGKILL after a bounded wait):

    app(s) (uvicorn) --OTLP--> otelcol-trader (collector/otelcol-config.yaml + signoz/otelcol-telemetry.yaml)
    otelcol-trader --OTLP--> sink (collector/sink-config.yaml: what SigNoz's ingest would receive)
    Prometheus (monitoring/prometheus/prometheus.yml rendered, 1 s scrapes) <-- collector :8889
        (via="collector"), :8888, and the API's /metrics (job trader-api, via="direct")

The checks (:func:`check_grafana`, :func:`check_alert_selectors`, :func:`check_signoz`) return
what had data, what was allowed to be empty (with the reason) and what failed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_server import PrometheusServer, render_config
from promql import Expr, parse_v3, selector_matches, signoz_series

from otel_trader.collector import CollectorPorts, CollectorProcess, SinkProcess
from tests.support import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
#: The direct scrape job of prometheus.yml; the API runs with this service.name (README convention).
API_SERVICE = "trader-api"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without otel-trader/OTel settings, plus `extra`: a developer's
    shell must not redirect the apps' telemetry."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEMETRY_", "OTLP_", "OTEL_", "TELEGRAM_", "METRIC_", "SIGNOZ_"))
           and k not in ("SERVICE_NAME", "ENVIRONMENT", "SERVICE_VERSION", "REDIS_URL", "DATABASE_URL")}
    env.update(extra)
    return env


def telemetry_env(collector: CollectorProcess, service: str, **extra: str) -> dict[str, str]:
    """An app exporting to `collector` every second (instead of 15 s), as `service`."""
    return clean_env(
        TELEMETRY_ENABLED="true",
        TELEMETRY_EXPORTER="otlp",
        SERVICE_NAME=service,
        ENVIRONMENT="ci",
        OTLP_ENDPOINT=collector.endpoints.otlp_grpc,
        OTLP_INSECURE="true",
        METRIC_EXPORT_INTERVAL_SECONDS="1",
        OTEL_BSP_SCHEDULE_DELAY="200",
        **extra,
    )


@dataclass
class App:
    name: str
    process: subprocess.Popen
    url: str
    port: int
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


def start_uvicorn(tmp: Path, name: str, target: str, env: dict[str, str], *, factory: bool = False,
                  app_dir: Path | None = None, ready_path: str = "/", ready: tuple[int, ...] = (200,),
                  timeout: float = 30.0) -> App:
    """`target` ("module:app") under uvicorn on a free port; waits until `ready_path` answers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--no-access-log"]
    if factory:
        command.append("--factory")
    if app_dir is not None:
        command += ["--app-dir", str(app_dir)]
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    app = App(name, process, f"http://127.0.0.1:{port}", port, log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(app.url + ready_path, timeout=1).status_code in ready:
                return app
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            app.stop()
            raise AssertionError(f"{name} did not come up (exit {process.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@dataclass
class Stack:
    tmp: Path
    sink: SinkProcess
    collector: CollectorProcess
    apps: dict[str, App] = field(default_factory=dict)
    prometheus: PrometheusServer | None = None

    @classmethod
    def start_pipeline(cls, tmp: Path, **collector_env: str) -> Stack:
        """Sink and collector (with the SigNoz self-telemetry overlay pointing at the sink)."""
        sink = SinkProcess(tmp / "sink.jsonl", log_path=tmp / "sink.log").start()
        try:
            env = {
                "OTELCOL_BATCH_TIMEOUT": "200ms",
                "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
                "OTELCOL_DEPLOYMENT_ENVIRONMENT": "ci",
                "SIGNOZ_TELEMETRY_ENDPOINT": f"http://{sink.otlp_grpc_endpoint}",
                "OTELCOL_TELEMETRY_PUSH_INTERVAL_MS": "1000",
                **collector_env,
            }
            collector = CollectorProcess(
                ports=CollectorPorts.free(),
                storage_dir=tmp / "queue",
                signoz_endpoint=sink.otlp_grpc_endpoint,
                extra_configs=[ROOT / "signoz" / "otelcol-telemetry.yaml"],
                env=env,
                log_path=tmp / "collector.log",
            ).start()
        except BaseException:
            sink.stop()
            raise
        return cls(tmp, sink, collector)

    def start_prometheus(self, api: App) -> PrometheusServer:
        """Prometheus on the committed config, targets rendered to this stack, 1 s scrapes."""
        port = free_port()
        config = render_config(
            self.tmp / "prometheus.yml",
            targets={
                "prometheus": [f"127.0.0.1:{port}"],
                "otel-collector": [f"127.0.0.1:{self.collector.ports.prometheus}"],
                "otel-collector-self": [f"127.0.0.1:{self.collector.ports.telemetry}"],
                API_SERVICE: [f"127.0.0.1:{api.port}"],
            },
            scrape_interval="1s",
        )
        self.prometheus = PrometheusServer(config, self.tmp / "tsdb", port=port).start()
        return self.prometheus

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        for app in self.apps.values():
            app.stop()
        self.collector.stop()
        self.sink.stop()

    def wait_for(self, queries: list[str], samples: int = 8, timeout: float = 90.0) -> None:
        """Until each count_over_time(...) query reaches `samples` (enough for rate() windows)."""
        assert self.prometheus is not None
        deadline = time.monotonic() + timeout
        missing = queries
        while time.monotonic() < deadline:
            missing = [q for q in queries if not any(float(r["value"][1]) >= samples for r in self.prometheus.query(q))]
            if not missing:
                return
            time.sleep(1)
        logs = {name: app.log.read_text()[-1500:] for name, app in self.apps.items()}
        raise AssertionError(f"no data after {timeout}s for: {missing}\ntargets: {self.prometheus.targets_up()}\n"
                             f"app logs: {logs}")


# -- checks -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    with_data: list[str] = field(default_factory=list)
    allowed_empty: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def report(self, title: str) -> None:
        print(f"\n== {title}: {len(self.with_data)} with data, {len(self.allowed_empty)} allowed empty, "
              f"{len(self.failures)} failed")
        for line in self.allowed_empty:
            print("  empty (allowed): " + line)


def check_grafana(prometheus: PrometheusServer, exprs: list[Expr], via: str, **variables: str) -> Outcome:
    """Each Grafana panel/variable expression (rendered for `via`) returns data, unless the builder
    marks it empty-when-healthy. With via="direct" only the expressions that depend on $via run."""
    out = Outcome()
    for e in exprs:
        if via == "direct" and "$via" not in e.expr:
            continue
        rendered = e.rendered(dict(e.test_variables(), via=via, **variables))
        if prometheus.query(rendered):
            out.with_data.append(str(e))
        elif e.empty_when_healthy:
            out.allowed_empty.append(f"{e}: {e.empty_when_healthy}")
        else:
            out.failures.append(f"{e}\n    {rendered}")
    return out


def _reason(selector: dict, allowed: dict[re.Pattern[str], str]) -> str | None:
    """The reason of the first pattern found in the selector's text (name and matchers)."""
    for pattern, reason in allowed.items():
        if pattern.search(selector["text"]):
            return reason
    return None


def check_alert_selectors(prometheus: PrometheusServer, exprs: list[Expr], v3_parser: Path,
                          allowed: dict[re.Pattern[str], str], **variables: str) -> Outcome:
    """Every vector selector of every alert rule matches series (the conditions themselves only
    return data while firing), except selectors in `allowed` (pattern searched in the selector's
    text -> reason)."""
    out = Outcome()
    rendered = [e.rendered(dict(e.test_variables(), **variables)) for e in exprs]
    for e, result in zip(exprs, parse_v3(v3_parser, rendered), strict=True):
        assert "error" not in result, f"{e}: {result['error']}"
        for selector in result["selectors"]:
            label = f"{e}: {selector['text']}"
            if prometheus.query(f"count(last_over_time({selector['text']}[5m]))"):
                out.with_data.append(label)
            elif why := _reason(selector, allowed):
                out.allowed_empty.append(f"{label}: {why}")
            else:
                out.failures.append(label)
    return out


def check_signoz(sink_file: Path, exprs: list[Expr], v3_parser: Path, allowed: dict[re.Pattern[str], str],
                 is_allowed: Callable[[Expr], str | None] = lambda e: None, **variables: str) -> Outcome:
    """Every selector of every SigNoz widget/rule matches a series SigNoz would store for the OTLP
    data the sink received, except selectors in `allowed` or expressions `is_allowed` excuses."""
    stored = signoz_series(sink_file)
    out = Outcome()
    rendered = [e.rendered(dict(e.test_variables(), **variables)) for e in exprs]
    for e, result in zip(exprs, parse_v3(v3_parser, rendered), strict=True):
        assert "error" not in result, f"{e}: {result['error']}"
        for selector in result["selectors"]:
            label = f"{e}: {selector['text']}"
            if any(selector_matches(selector, labels) for labels in stored):
                out.with_data.append(label)
            elif why := (_reason(selector, allowed) or is_allowed(e)):
                out.allowed_empty.append(f"{label}: {why}")
            else:
                out.failures.append(label)
    return out
