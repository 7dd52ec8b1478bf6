"""Shared fixtures: a fresh OpenTelemetry state per test, in-memory exporters, real servers.

OpenTelemetry's global providers can be set once per process; ``reset_otel`` clears that latch
between tests (test-only use of the API's private set-once guards).

Helpers (no fixtures) are in :mod:`tests.support`; ``free_port`` and ``stop_process`` are still
importable from here, where many test modules import them from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_trader.collector.process import port_open
from tests.support import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Block until something listens on 127.0.0.1:port, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _reset_globals() -> None:
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.metrics import _internal as metrics_internal

    import otel_trader.sdk.manager as manager_module
    from otel_trader.sdk import metric_helpers as ot_metrics
    from otel_trader.sdk import span_helpers as ot_tracing

    if manager_module._manager is not None:
        manager_module._manager.shutdown(timeout=2)
        manager_module._manager = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    metrics_internal._METER_PROVIDER_SET_ONCE._done = False
    metrics_internal._METER_PROVIDER = None
    _logs._internal._LOGGER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]
    _logs._internal._LOGGER_PROVIDER = None  # type: ignore[attr-defined]
    ot_tracing.refresh()
    ot_metrics.refresh()
    del metrics  # imported for its side effect of loading the module


@pytest.fixture
def reset_otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh global OpenTelemetry state and no otel-trader env vars, before and after the test."""
    for name in list(os.environ):
        if name.startswith(("TELEMETRY_", "OTLP_", "OTEL_", "TELEGRAM_")) or name in (
            "SERVICE_NAME",
            "ENVIRONMENT",
            "SERVICE_VERSION",
        ):
            monkeypatch.delenv(name, raising=False)
    # A developer's own .env in the working directory must not leak into tests.
    monkeypatch.setenv("TELEMETRY_ENV_FILE", "none")
    _reset_globals()
    yield
    _reset_globals()


@dataclass
class Telemetry:
    """A configured manager whose spans land in memory and whose metrics are scrapeable."""

    manager: object
    spans: object  # InMemorySpanExporter

    def finished_spans(self) -> list:
        return list(self.spans.get_finished_spans())  # type: ignore[attr-defined]

    def scrape(self) -> str:
        """The Prometheus exposition `/metrics` would serve now."""
        from prometheus_client import REGISTRY, generate_latest

        return generate_latest(REGISTRY).decode()


@pytest.fixture
def telemetry(reset_otel: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    """otel-trader enabled, spans exported synchronously to memory, Prometheus reader on."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_trader

    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_EXPORTER", "none")
    monkeypatch.setenv("SERVICE_NAME", "test-service")
    monkeypatch.setenv("ENVIRONMENT", "test")
    manager = otel_trader.get_telemetry_manager()
    exporter = InMemorySpanExporter()
    manager.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[union-attr]
    yield Telemetry(manager=manager, spans=exporter)


# -- the collector binary --------------------------------------------------------------------

#: Where the tests start the collector also without this fixture (``otel-trader collector run``).
_COLLECTOR_TEST_DIRS = (ROOT / "tests" / "collector", ROOT / "tests" / "e2e")
_build: tuple[bool, str] | None = None


def _build_once() -> tuple[bool, str]:
    """``collector/build.sh`` once per session: (True, binary path) or (False, what went wrong)."""
    global _build
    if _build is None:
        from otel_trader.collector import build_collector

        try:
            _build = (True, str(build_collector(quiet=True)))
        except Exception as exc:  # reported by the fixture as a failure, never a skip
            _build = (False, str(exc))
    return _build


def pytest_collection_finish(session: pytest.Session) -> None:
    # Build before the first test: a cold build (empty Go caches) takes minutes, which must not
    # count against a test's timeout (pytest-timeout covers fixture setup).
    for item in session.items:
        path = Path(str(item.path)).resolve()
        if "otelcol_binary" in getattr(item, "fixturenames", ()) or any(
            d in path.parents for d in _COLLECTOR_TEST_DIRS
        ):
            _build_once()
            return


@pytest.fixture(scope="session")
def otelcol_binary() -> Path:
    """collector/bin/otelcol-trader, built or confirmed up to date (instant) by collector/build.sh.

    Built once per session, right after collection when a selected test needs it. A failed build
    FAILS every test that needs the binary; it is never skipped.
    """
    ok, detail = _build_once()
    if not ok:
        pytest.fail(f"building the collector failed: {detail}", pytrace=False)
    return Path(detail)


# -- real servers ----------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    url: str
    process: subprocess.Popen  # type: ignore[type-arg]

    def stop(self) -> None:
        stop_process(self.process)


def start_redis() -> Server:
    """Start a private redis-server on a free loopback port (no persistence)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make system-deps`")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return Server(port=port, url=f"redis://127.0.0.1:{port}/0", process=process)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    """A real Redis 7 for the whole session."""
    server = start_redis()
    yield server
    server.stop()


def _pg_bin(name: str) -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        pytest.fail("PostgreSQL is not installed: run `make system-deps`")
    return str(candidates[-1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL cluster in a temp dir, on a free loopback port; yields a SQLAlchemy URL."""
    data = Path(tempfile.mkdtemp(prefix="otel-trader-pg-"))
    port = free_port()
    # PostgreSQL refuses to run as root; Debian's package creates the postgres user.
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        [*as_postgres, _pg_bin("initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    process = subprocess.Popen(
        [*as_postgres, _pg_bin("postgres"), "-D", str(data / "db"), "-p", str(port), "-k", str(data), "-h", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(data, ignore_errors=True)
