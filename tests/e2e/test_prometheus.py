"""A real Prometheus scrapes our collector's :8889 with monitoring/prometheus/prometheus.yml."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_trader.collector import free_ports, http_get
from tests.conftest import stop_process

from .conftest import ROOT, AppProcess, E2EStack, wait_until

PROMETHEUS_YML = ROOT / "monitoring" / "prometheus" / "prometheus.yml"


def render_prometheus_config(targets: dict[str, str], rules_dir: Path) -> str:
    """monitoring/prometheus/prometheus.yml with the compose targets replaced by loopback ones.

    Also: rule files by absolute path (the real alert rules are loaded, so a rule Prometheus
    rejects fails this test) and every interval at 1 s, so a test sees scrapes in seconds.
    Each substitution must apply: if the file changes shape, this fails instead of silently
    testing something else.
    """
    text = PROMETHEUS_YML.read_text()
    for old, new in targets.items():
        assert f'"{old}"' in text, f"{old} not in {PROMETHEUS_YML}"
        text = text.replace(f'"{old}"', f'"{new}"')
    text, n = re.subn(r"(?m)^(\s*-\s*)alerts/", rf"\g<1>{rules_dir}/", text)
    assert n == 1, "rule_files entry alerts/*.yml not found"
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        text, n = re.subn(rf"(?m)^(\s*{key}:\s*)\S+", r"\g<1>1s", text)
        assert n >= 1, key
    return text


class Prometheus:
    """/usr/bin/prometheus on a free loopback port with a temporary TSDB."""

    def __init__(self, config: Path, workdir: Path, port: int) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: run `make system-deps`")
        self.port = port
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
            try:
                return http_get(f"{self.url}/-/ready", timeout=1.0)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, "prometheus ready")

    def query(self, promql: str) -> list[dict]:
        status, body = http_get(f"{self.url}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5.0)
        assert status == 200, body
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        """The value of a one-element result, None when empty."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        stop_process(self.process, timeout=15)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[list[Prometheus]]:
    started: list[Prometheus] = []
    yield started
    for p in started:
        p.stop()


@pytest.mark.timeout(150)
def test_real_prometheus_scrapes_collector_and_answers_request_rate(
    stack: E2EStack, tmp_path: Path, prometheus_factory: list[Prometheus]
) -> None:
    sink = stack.sink()
    collector = stack.collector(sink)
    # SERVICE_NAME=trader-api as prometheus.yml asks: the collector path then has job="trader-api",
    # the same as the direct scrape job.
    api: AppProcess = stack.api(collector.endpoints.otlp_grpc, service="trader-api")
    port = free_ports(1)[0]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        render_prometheus_config(
            {
                "localhost:9090": f"127.0.0.1:{port}",
                "otel-collector:8889": collector.endpoints.prometheus.split("/")[2],
                "otel-collector:8888": collector.endpoints.telemetry.split("/")[2],
                "trader-api:8000": f"127.0.0.1:{api.port}",
                # Nothing listens there: alerts stay on loopback and go nowhere.
                "alertmanager:9093": f"127.0.0.1:{free_ports(1)[0]}",
            },
            ROOT / "monitoring" / "prometheus" / "alerts",
        )
    )
    prometheus = Prometheus(config, tmp_path, port)
    prometheus_factory.append(prometheus)
    prometheus.wait_ready()

    # A steady load for ~8 s, so several 1 s scrapes see the counter grow.
    sent = 0
    end = time.monotonic() + 8
    while time.monotonic() < end:
        assert api.get("/quote/BTC")[0] == 200
        sent += 1
        time.sleep(0.05)

    wait_until(
        lambda: prometheus.scalar('sum(http_requests_total{via="collector"})') == sent,
        30, f'sum(http_requests_total{{via="collector"}}) == {sent}',
    )
    # The rendered config scrapes the app directly too (via="direct", the seed's path); both
    # paths carry the same counter, so the plain sum is exactly twice the requests.
    wait_until(lambda: prometheus.scalar('sum(http_requests_total{via="direct"})') == sent, 30, "direct path")
    assert prometheus.scalar("sum(http_requests_total)") == 2 * sent
    assert prometheus.scalar('sum(http_requests_total{job="trader-api", path="/quote/{symbol}", status="200"})') == 2 * sent

    rate = prometheus.scalar("sum(rate(http_requests_total[1m]))")
    assert rate is not None and rate > 0, rate
    rate_collector = prometheus.scalar('sum(rate(http_requests_total{via="collector"}[1m]))')
    assert rate_collector is not None and rate_collector > 0
    # Every scrape target of the rendered file is up (the collector's :8889/:8888, the app, Prometheus).
    ups = {r["metric"]["job"]: float(r["value"][1]) for r in prometheus.query("up")}
    assert ups == {"prometheus": 1.0, "otel-collector": 1.0, "otel-collector-self": 1.0, "trader-api": 1.0}, ups
    print(f"\nprometheus: sent={sent} sum(http_requests_total{{via=collector}})={sent} "
          f"sum(rate(http_requests_total[1m]))={rate:.3f} (collector path {rate_collector:.3f}/s)")
