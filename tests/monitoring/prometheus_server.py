"""A real Prometheus (Debian's /usr/bin/prometheus) for tests: temp TSDB, loopback port, bounded waits.

    cfg = render_config(targets={"trader-api": ["127.0.0.1:8001"]}, scrape_interval="1s", out=tmp / "p.yml")
    with PrometheusServer(cfg, tmp / "tsdb") as prom:
        prom.query("up")          # -> list of {"metric": {...}, "value": [ts, "1"]}

:func:`render_config` copies monitoring/prometheus/prometheus.yml and only substitutes what a
test must: targets (by job), intervals, rule_files (absolute) and the Alertmanager address.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from tests.support import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "monitoring" / "prometheus" / "prometheus.yml"
PROMETHEUS_BIN = "/usr/bin/prometheus"


def render_config(
    out: Path,
    targets: dict[str, list[str]] | None = None,
    scrape_interval: str | None = None,
    alertmanager: list[str] | None = None,
    drop_jobs: tuple[str, ...] = (),
) -> Path:
    """Write a copy of prometheus.yml with the given job -> targets, every interval set to
    ``scrape_interval`` (if given), absolute rule_files and ``alertmanager`` targets (none:
    the alerting block is removed). Jobs not named in ``targets`` keep the committed targets."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    config["rule_files"] = [str(PROMETHEUS_YML.parent / pattern) for pattern in config["rule_files"]]
    if scrape_interval:
        config["global"]["scrape_interval"] = scrape_interval
        config["global"]["evaluation_interval"] = scrape_interval
        config["global"]["scrape_timeout"] = scrape_interval
    if alertmanager:
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = alertmanager
    else:
        config.pop("alerting", None)
    kept = []
    for job in config["scrape_configs"]:
        if job["job_name"] in drop_jobs:
            continue
        if targets and job["job_name"] in targets:
            job["static_configs"][0]["targets"] = targets[job["job_name"]]
        if scrape_interval:
            job["scrape_interval"] = scrape_interval
            job["scrape_timeout"] = scrape_interval
        kept.append(job)
    config["scrape_configs"] = kept
    out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return out


class PrometheusError(RuntimeError):
    pass


class PrometheusServer:
    """One Prometheus process; stopped (SIGTERM, then SIGKILL) by :meth:`stop`."""

    def __init__(self, config: Path, storage: Path, port: int | None = None, binary: str = PROMETHEUS_BIN):
        if not Path(binary).exists() and shutil.which(binary) is None:
            raise PrometheusError(f"{binary} not found: run `make system-deps` (Debian package prometheus)")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = storage.parent / f"prometheus-{self.port}.log"
        storage.mkdir(parents=True, exist_ok=True)
        self.command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if self._get("/-/ready")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus not ready after {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _get(self, path: str, timeout: float = 10.0) -> tuple[int, dict | str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                body = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read().decode(), exc.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def api(self, path: str, **params: str) -> tuple[int, dict]:
        """GET /api/v1/<path>; returns (HTTP status, decoded JSON)."""
        status, body = self._get(f"/api/v1/{path}?{urllib.parse.urlencode(params)}")
        if not isinstance(body, dict):
            raise PrometheusError(f"/api/v1/{path}: HTTP {status}, not JSON: {body[:200]!r}")
        return status, body

    def query(self, expr: str) -> list[dict]:
        """Instant query; raises PrometheusError on any error (parse errors included)."""
        status, body = self.api("query", query=expr)
        if status != 200 or body.get("status") != "success":
            raise PrometheusError(f"{expr!r}: HTTP {status} {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("vector", "matrix"):
            return data["result"]
        return [{"metric": {}, "value": data["result"]}]

    def targets_up(self) -> dict[str, str]:
        """job -> health of its (first) active target."""
        _, body = self.api("targets", state="active")
        return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}

    def rules(self) -> list[dict]:
        _, body = self.api("rules")
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    def alerts(self) -> list[dict]:
        """Active alerts (pending and firing) with their labels and state."""
        _, body = self.api("alerts")
        return body["data"]["alerts"]
