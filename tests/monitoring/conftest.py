"""Fixtures for the monitoring assets: promtool, a real empty Prometheus, the Prometheus 3 parser.

Missing tools FAIL the tests (never skip): they are installed by `make system-deps`
(prometheus, promtool) and needed by `make collector` anyway (Go).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import yaml  # noqa: F401  (Prometheus config and rule files are YAML)
except ImportError as exc:  # a clear message instead of an ImportError deep in a helper
    raise ImportError("tests/monitoring need PyYAML: pip install pyyaml (it belongs in the dev extra)") from exc

from prometheus_server import PrometheusServer, render_config
from promql import build_v3_parser


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `make system-deps` (Debian package prometheus)")
    return path


@pytest.fixture(scope="session")
def v3_parser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/monitoring/promqlparse built once per session (about a second with a warm Go cache)."""
    return build_v3_parser(tmp_path_factory.mktemp("promqlparse"))


@pytest.fixture(scope="session")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus with an empty TSDB and no targets, for parse checks over its HTTP API
    (Prometheus 2.42's promtool has no parse-only command). Our alert rules are loaded too, so
    a rule file Prometheus refuses would fail its start."""
    tmp = tmp_path_factory.mktemp("prometheus-empty")
    jobs = ("prometheus", "otel-collector", "otel-collector-self", "trader-api")
    config = render_config(tmp / "prometheus.yml", drop_jobs=jobs)
    server = PrometheusServer(config, tmp / "tsdb").start()
    try:
        yield server
    finally:
        server.stop()
