"""End-to-end fixtures: instrumented apps under uvicorn → our collector → a SigNoz stand-in.

Everything is a real process on 127.0.0.1 with free ports: the apps run
``uvicorn --factory tests.e2e.apps.trader_app:create_api`` (so OTel globals, signal handling and
exit behaviour are the real ones), the collector and the sink are started through
:mod:`otel_trader.collector` (the code ``otel-trader collector run`` uses) from the session's
``otelcol_binary`` (``tests/conftest.py``), Redis is the session's real redis-server.

``stack`` (function) is an :class:`E2EStack`; whatever it started is stopped at teardown, last
started first (apps before the collector before the sink)::

    sink = stack.sink()                  # SinkFile: spans(), metrics(), logs(), raw()
    col = stack.collector(sink)          # CollectorProcess exporting to the sink
    api = stack.api(col, exchange)       # AppProcess: url, get(), rss_kib(), stderr(), stop()
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_trader.collector import CollectorPorts, CollectorProcess, SinkProcess, free_ports, http_get
from tests.conftest import Server
from tests.support import SinkReader, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]

#: The collector as the tests run it: loopback only; batches, retries and span-metric flushes
#: shortened so recovery takes seconds instead of the production 5–30 s backoff.
COLLECTOR_TEST_ENV = {
    "OTELCOL_BATCH_TIMEOUT": "200ms",
    "OTELCOL_RETRY_INITIAL_INTERVAL": "500ms",
    "OTELCOL_RETRY_MAX_INTERVAL": "2s",
    "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
    "OTELCOL_DEPLOYMENT_ENVIRONMENT": "collector-default",
    "OTELCOL_LOG_LEVEL": "info",
}

#: Variables of the test runner's own environment that must not reach an app.
_APP_ENV_DROP = ("TELEMETRY_", "OTLP_", "OTEL_", "TELEGRAM_", "FASTAPI_")
_APP_ENV_NAMES = ("SERVICE_NAME", "SERVICE_VERSION", "ENVIRONMENT", "DEPLOYMENT_ENVIRONMENT")


# -- reading the sink --------------------------------------------------------------------------


class SinkFile(SinkReader, SinkProcess):
    """The SigNoz stand-in, plus readers of what it wrote (one OTLP/JSON request per line):
    ``raw()``, ``requests()``, ``spans()``, ``metrics()``, ``logs()`` (:class:`tests.support.SinkReader`)."""


# -- apps --------------------------------------------------------------------------------------


def traceparent() -> tuple[str, str]:
    """(trace id hex, ``traceparent`` header value) of a new sampled trace the client starts."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


class AppProcess:
    """``uvicorn --factory <factory>`` in a subprocess; output to files (a full pipe never blocks it)."""

    def __init__(self, name: str, factory: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_ports(1)[0]
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        argv = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        self.exit_seconds: float | None = None
        self._conn: http.client.HTTPConnection | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> AppProcess:
        """Until ``/health`` answers 200 (excluded from telemetry, so it counts nowhere)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.stderr()[-4000:]}")
            try:
                if http_get(f"{self.url}/health", timeout=1.0)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.stderr()[-4000:]}")
            time.sleep(0.05)

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET over one kept-alive connection (plain http.client: the test process adds no telemetry)."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                self._conn.request("GET", path, headers=headers or {})
                response = self._conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # uvicorn closed an idle keep-alive connection: reconnect once. A second
                # failure is a real one and propagates.
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def rss_kib(self) -> int:
        """VmRSS of the app process, KiB (/proc/<pid>/status)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Send ``sig``, wait for exit (SIGKILL after ``timeout``); return the seconds it took."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        start = time.monotonic()
        stop_process(self.process, timeout, sig=sig)
        self.exit_seconds = time.monotonic() - start
        return self.exit_seconds


def app_env(service: str, otlp_endpoint: str, **extra: str) -> dict[str, str]:
    """An app's environment: the runner's without telemetry settings, plus otel-trader's for ``service``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_APP_ENV_DROP) and k not in _APP_ENV_NAMES}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        TELEMETRY_ENABLED="true",
        OTLP_ENDPOINT=otlp_endpoint,
        METRIC_EXPORT_INTERVAL_SECONDS="1",
        SERVICE_NAME=service,
        SERVICE_VERSION="1.2.3",
        ENVIRONMENT="e2e",
        # The SDK's batch span processor waits 5 s by default; 500 ms keeps the tests short
        # without changing what is exported.
        OTEL_BSP_SCHEDULE_DELAY="500",
    )
    env.update(extra)
    return env


class E2EStack:
    """Starts sinks, collectors and apps for one test; :meth:`close` stops them all."""

    def __init__(self, binary: Path, workdir: Path, redis: Server) -> None:
        self.binary = binary
        self.workdir = workdir
        self.redis = redis
        self._stoppers: list[Callable[[], object]] = []

    def sink(self, name: str = "sink") -> SinkFile:
        sink = SinkFile(self.workdir / f"{name}.jsonl", self.binary, log_path=self.workdir / f"{name}.log")
        self._stoppers.append(sink.stop)
        sink.start()
        return sink

    def collector(self, sink: SinkFile | None, name: str = "collector", **env: str) -> CollectorProcess:
        """Our config on free ports, exporting to ``sink`` (or to a dead port)."""
        target = sink.otlp_grpc_endpoint if sink is not None else f"127.0.0.1:{free_ports(1)[0]}"
        collector = CollectorProcess(
            self.binary,
            ports=CollectorPorts.free(),
            storage_dir=self.workdir / f"{name}-queue",
            signoz_endpoint=target,
            env={**COLLECTOR_TEST_ENV, **env},
            log_path=self.workdir / f"{name}.log",
        )
        self._stoppers.append(collector.stop)
        return collector.start()

    def app(self, name: str, factory: str, env: dict[str, str]) -> AppProcess:
        app = AppProcess(name, factory, env, self.workdir)
        self._stoppers.append(app.stop)
        return app.wait_ready()

    def exchange(self, otlp_endpoint: str, **extra: str) -> AppProcess:
        """The mock exchange service (``e2e-exchange``)."""
        return self.app("exchange", "tests.e2e.apps.trader_app:create_exchange",
                        app_env("e2e-exchange", otlp_endpoint, **extra))

    def api(
        self, otlp_endpoint: str, exchange: AppProcess | None = None, service: str = "e2e-api", **extra: str
    ) -> AppProcess:
        """The trading API (``service``), calling ``exchange`` (or a dead port)."""
        exchange_url = exchange.url if exchange is not None else f"http://127.0.0.1:{free_ports(1)[0]}"
        env = app_env(service, otlp_endpoint, EXCHANGE_URL=exchange_url,
                      DATABASE_URL=f"sqlite:///{self.workdir / 'orders.db'}", REDIS_URL=self.redis.url, **extra)
        return self.app("api", "tests.e2e.apps.trader_app:create_api", env)

    def close(self) -> None:
        for stop in reversed(self._stoppers):
            with contextlib.suppress(Exception):  # keep stopping the rest
                stop()


@pytest.fixture
def stack(otelcol_binary: Path, tmp_path: Path, redis_server: Server) -> Iterator[E2EStack]:
    """An :class:`E2EStack` for this test; everything it started is stopped at teardown."""
    s = E2EStack(otelcol_binary, tmp_path, redis_server)
    try:
        yield s
    finally:
        s.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until ``predicate()`` is truthy (returned) or fail after ``timeout`` seconds.

    :func:`tests.support.wait_for` where every exception of ``predicate`` propagates at once.
    """
    return wait_for(predicate, timeout, what, interval, retry_on=())
