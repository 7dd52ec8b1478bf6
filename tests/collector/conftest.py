"""Fixtures for testing otel-trader's collector distribution with the real binary.

Everything here runs ``collector/bin/otelcol-trader`` (built once per session by
``collector/build.sh``) on 127.0.0.1 with free ports, so several instances can run at once
and nothing leaves loopback.

Fixtures
--------
``otelcol_binary`` (session)
    Path of the built binary. ``collector/build.sh`` runs once per session, right after
    collection when any test here is selected (so a slow first build does not count against
    a test's timeout); instant when the binary is up to date. A failed build FAILS every test
    that needs the binary; it is never skipped.

``fleet`` (function) / ``module_fleet`` (module)
    A :class:`Fleet` that starts collectors and stops all of them at teardown::

        sink = fleet.sink()              # stand-in for SigNoz ingest (collector/sink-config.yaml)
        main = fleet.main(sink)          # collector/otelcol-config.yaml, exporting to ``sink``
        main = fleet.main(sink, env={"OTELCOL_DEPLOYMENT_ENVIRONMENT": "ci"})
        main = fleet.main(sink, extra_configs=[COLLECTOR_DIR / "tail-sampling.yaml"])

``sink`` / ``collector`` (function)
    Shortcuts: a started sink, and a started main collector wired to it.

``otlp`` (function)
    An :class:`OtlpSender` that sends spans/metrics/logs with the plain OpenTelemetry
    Python SDK over OTLP/gRPC and flushes before returning (``run_id`` tags its resource).

Helper classes
--------------
:class:`Collector` (base of :class:`Sink` and :class:`MainCollector`): ``ports`` (dict),
``start()``, ``stop()`` (SIGTERM, then SIGKILL after a timeout), ``kill()`` (SIGKILL, a
crash), ``restart()``, ``running``, ``log()`` (its stdout/stderr), ``otlp_grpc_endpoint``
(``127.0.0.1:PORT``), ``otlp_http_endpoint`` (``http://127.0.0.1:PORT``), ``health_url``.

:class:`Sink` adds ``read_sink()`` (every OTLP/JSON request written so far), ``spans()``,
``metrics()``, ``logs()`` (flattened records with their resource attributes), ``raw()``
(file text, for "this secret never appears anywhere" checks) and ``wait_for_spans()``.
The ``wait_until`` fixture is the bounded polling helper.

:class:`MainCollector` adds ``prometheus_url`` (:8889 equivalent), ``scrape()``,
``metric_families()``, ``wait_for_families()``, ``telemetry_url`` (:8888 equivalent), ``telemetry_value()`` and
``storage_dir`` (file_storage of the persistent queue, kept across ``restart()``).

Ports and settings are passed through the environment variables documented in
collector/README.md; the test defaults (short retry/flush intervals) are in
:data:`MAIN_TEST_ENV`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_DIR = REPO_ROOT / "collector"
BUILD_SCRIPT = COLLECTOR_DIR / "build.sh"
BINARY = COLLECTOR_DIR / "bin" / "otelcol-trader"
MAIN_CONFIG = COLLECTOR_DIR / "otelcol-config.yaml"
SINK_CONFIG = COLLECTOR_DIR / "sink-config.yaml"

LOOPBACK = "127.0.0.1"

# Environment of the main collector in tests: loopback only, and intervals shortened so
# recovery after an outage takes seconds instead of the production 5-30 s backoff.
MAIN_TEST_ENV = {
    "OTELCOL_BIND_HOST": LOOPBACK,
    "OTELCOL_DEBUG_BIND_HOST": LOOPBACK,
    "SIGNOZ_INSECURE": "true",
    "OTELCOL_BATCH_TIMEOUT": "200ms",
    "OTELCOL_RETRY_INITIAL_INTERVAL": "500ms",
    "OTELCOL_RETRY_MAX_INTERVAL": "2s",
    "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
    "OTELCOL_DEPLOYMENT_ENVIRONMENT": "ci-test",
    "OTELCOL_LOG_LEVEL": "info",
}

# Variables that configure our configs; removed from the inherited environment so a
# developer's shell cannot change what the tests run.
_OWN_ENV_PREFIXES = ("OTELCOL_", "SIGNOZ_", "SINK_")


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on loopback (all held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError) as e:  # not up yet / partial data
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


def attrs_to_dict(attrs: Iterable[dict] | None) -> dict[str, Any]:
    """OTLP/JSON KeyValue list -> {key: python value}."""
    out: dict[str, Any] = {}
    for kv in attrs or []:
        out[kv["key"]] = _any_value(kv.get("value", {}))
    return out


def _any_value(v: dict) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_any_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return attrs_to_dict(v["kvlistValue"].get("values", []))
    return None


class Collector:
    """One otelcol-trader process with a fixed set of ports (kept across restarts)."""

    def __init__(
        self,
        name: str,
        binary: Path,
        configs: list[Path],
        env: dict[str, str],
        ports: dict[str, int],
        workdir: Path,
    ):
        self.name = name
        self.binary = binary
        self.configs = configs
        self.ports = ports
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{name}.log"
        self.starts = 0

    # -- endpoints ---------------------------------------------------------------------
    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"{LOOPBACK}:{self.ports['otlp_grpc']}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['otlp_http']}"

    @property
    def health_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['health']}/"

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        cmd = [str(self.binary)]
        for c in self.configs:
            cmd += ["--config", str(c)]
        return cmd

    def start(self, timeout: float = 30.0) -> Collector:
        assert not self.running, f"{self.name} already running"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_ENV_PREFIXES)}
        full_env.update(self.env)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            log.write(f"\n===== start #{self.starts + 1}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.starts += 1
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode} during start:\n{self.log_tail()}"
                )
            try:
                status, _ = http_get(self.health_url, timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not healthy after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop the process (SIGTERM = graceful shutdown; SIGKILL after ``timeout``)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> None:
        """Simulate a crash: SIGKILL, no shutdown hooks."""
        self.stop(sig=signal.SIGKILL)

    def restart(self, timeout: float = 30.0) -> Collector:
        self.stop()
        return self.start(timeout)

    # -- diagnostics -------------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ports={self.ports} running={self.running}>"


class Sink(Collector):
    """collector/sink-config.yaml: OTLP in, one JSON line per request out."""

    def __init__(self, name: str, binary: Path, workdir: Path, env: dict[str, str] | None = None):
        grpc, http, health = free_ports(3)
        self.file = workdir / f"{name}.jsonl"
        base_env = {
            "SINK_BIND_HOST": LOOPBACK,
            "SINK_OTLP_GRPC_PORT": str(grpc),
            "SINK_OTLP_HTTP_PORT": str(http),
            "SINK_HEALTH_PORT": str(health),
            "SINK_FILE": str(self.file),
        }
        base_env.update(env or {})
        super().__init__(
            name,
            binary,
            [SINK_CONFIG],
            base_env,
            {"otlp_grpc": grpc, "otlp_http": http, "health": health},
            workdir,
        )

    def raw(self) -> str:
        return self.file.read_text(errors="replace") if self.file.exists() else ""

    def read_sink(self) -> list[dict]:
        """Every OTLP/JSON request written so far (a torn last line is ignored)."""
        out = []
        for line in self.raw().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # only the line being written can be incomplete
        return out

    def spans(self) -> list[dict]:
        """Flattened spans: the OTLP/JSON span plus ``resource`` and ``attrs`` dicts."""
        out = []
        for req in self.read_sink():
            for rs in req.get("resourceSpans", []):
                res = attrs_to_dict(rs.get("resource", {}).get("attributes"))
                for ss in rs.get("scopeSpans", []):
                    for sp in ss.get("spans", []):
                        out.append({**sp, "resource": res, "attrs": attrs_to_dict(sp.get("attributes"))})
        return out

    def logs(self) -> list[dict]:
        out = []
        for req in self.read_sink():
            for rl in req.get("resourceLogs", []):
                res = attrs_to_dict(rl.get("resource", {}).get("attributes"))
                for sl in rl.get("scopeLogs", []):
                    for rec in sl.get("logRecords", []):
                        body = _any_value(rec.get("body", {}))
                        out.append(
                            {
                                **rec,
                                "resource": res,
                                "attrs": attrs_to_dict(rec.get("attributes")),
                                "body_value": body,
                            }
                        )
        return out

    def metrics(self) -> list[dict]:
        out = []
        for req in self.read_sink():
            for rm in req.get("resourceMetrics", []):
                res = attrs_to_dict(rm.get("resource", {}).get("attributes"))
                for sm in rm.get("scopeMetrics", []):
                    for m in sm.get("metrics", []):
                        out.append({**m, "resource": res})
        return out

    def wait_for_spans(
        self, predicate: Callable[[dict], bool], count: int, timeout: float = 30.0
    ) -> list[dict]:
        """Wait until at least ``count`` spans matching ``predicate`` arrived; return them."""

        def enough():
            found = [s for s in self.spans() if predicate(s)]
            return found if len(found) >= count else None

        return wait_until(enough, timeout, what=f"{count} spans in {self.file}")


class MainCollector(Collector):
    """collector/otelcol-config.yaml exporting to a :class:`Sink` (SigNoz stand-in)."""

    def __init__(
        self,
        name: str,
        binary: Path,
        workdir: Path,
        sink: Sink | None,
        env: dict[str, str] | None = None,
        extra_configs: list[Path] | None = None,
        signoz_endpoint: str | None = None,
    ):
        names = ["otlp_grpc", "otlp_http", "health", "prometheus", "telemetry", "pprof", "zpages"]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.storage_dir = workdir / f"{name}-storage"
        self.sink = sink
        endpoint = signoz_endpoint or (sink.otlp_grpc_endpoint if sink else f"{LOOPBACK}:{free_ports(1)[0]}")
        base_env = dict(MAIN_TEST_ENV)
        base_env.update(
            {
                "OTELCOL_OTLP_GRPC_PORT": str(ports["otlp_grpc"]),
                "OTELCOL_OTLP_HTTP_PORT": str(ports["otlp_http"]),
                "OTELCOL_HEALTH_PORT": str(ports["health"]),
                "OTELCOL_PROMETHEUS_PORT": str(ports["prometheus"]),
                "OTELCOL_TELEMETRY_PORT": str(ports["telemetry"]),
                "OTELCOL_PPROF_PORT": str(ports["pprof"]),
                "OTELCOL_ZPAGES_PORT": str(ports["zpages"]),
                "OTELCOL_STORAGE_DIR": str(self.storage_dir),
                "SIGNOZ_ENDPOINT": endpoint,
            }
        )
        base_env.update(env or {})
        super().__init__(name, binary, [MAIN_CONFIG, *(extra_configs or [])], base_env, ports, workdir)

    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['prometheus']}/metrics"

    @property
    def telemetry_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['telemetry']}/metrics"

    def scrape(self) -> str:
        status, body = http_get(self.prometheus_url)
        assert status == 200, f"scrape {self.prometheus_url}: HTTP {status}"
        return body

    def metric_families(self) -> dict[str, Any]:
        from prometheus_client.parser import text_string_to_metric_families

        return {f.name: f for f in text_string_to_metric_families(self.scrape())}

    def wait_for_families(self, *names: str, timeout: float = 30.0) -> dict[str, Any]:
        """Scrape until every family in ``names`` has samples; return all families."""

        def ready():
            fams = self.metric_families()
            return fams if all(n in fams and fams[n].samples for n in names) else None

        return wait_until(ready, timeout, what=f"{names} on {self.prometheus_url}")

    def telemetry_value(self, sample_name: str, **labels: str) -> float:
        """Sum of the collector's own metric samples named ``sample_name`` matching ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = http_get(self.telemetry_url)
        assert status == 200
        total = 0.0
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total


class Fleet:
    """Starts collectors for a test (or module) and stops every one of them at the end."""

    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.members: list[Collector] = []

    def sink(self, name: str = "sink", start: bool = True, env: dict[str, str] | None = None) -> Sink:
        s = Sink(self._unique(name), self.binary, self.workdir, env)
        self.members.append(s)
        return s.start() if start else s

    def main(
        self,
        sink: Sink | None,
        name: str = "main",
        start: bool = True,
        env: dict[str, str] | None = None,
        extra_configs: list[Path] | None = None,
    ) -> MainCollector:
        m = MainCollector(self._unique(name), self.binary, self.workdir, sink, env, extra_configs)
        self.members.append(m)
        return m.start() if start else m

    def _unique(self, name: str) -> str:
        taken = {m.name for m in self.members}
        if name not in taken:
            return name
        i = 2
        while f"{name}{i}" in taken:
            i += 1
        return f"{name}{i}"

    def close(self) -> None:
        for m in reversed(self.members):
            m.stop()


# ------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------

_build_result: tuple[bool, str] | None = None


def _build_once() -> tuple[bool, str]:
    """Run collector/build.sh once per process; remember (ok, report)."""
    global _build_result
    if _build_result is None:
        t0 = time.monotonic()
        try:
            r = subprocess.run(
                ["bash", str(BUILD_SCRIPT)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800
            )
            ok = r.returncode == 0 and BINARY.is_file()
            report = (
                f"collector/build.sh exit {r.returncode} after {time.monotonic() - t0:.0f}s\n"
                f"--- stdout ---\n{r.stdout[-5000:]}\n--- stderr ---\n{r.stderr[-5000:]}"
            )
        except subprocess.TimeoutExpired as e:  # a hung build must fail the run, not hang it
            ok, report = False, f"collector/build.sh timed out after {e.timeout}s"
        _build_result = (ok, report)
    return _build_result


def pytest_collection_finish(session: pytest.Session) -> None:
    # Build before the first test starts: a first build with empty Go caches takes minutes,
    # which must not count against the per-test timeout (pytest-timeout covers fixture setup).
    here = Path(__file__).resolve().parent
    if any(here in Path(str(item.path)).resolve().parents for item in session.items):
        _build_once()


@pytest.fixture(scope="session")
def otelcol_binary() -> Path:
    """collector/bin/otelcol-trader, built (or confirmed up to date) once per session."""
    ok, report = _build_once()
    if not ok:
        pytest.fail(f"building the collector failed:\n{report}", pytrace=False)
    return BINARY


@pytest.fixture
def fleet(otelcol_binary: Path, tmp_path: Path):
    f = Fleet(otelcol_binary, tmp_path)
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def module_fleet(otelcol_binary: Path, tmp_path_factory: pytest.TempPathFactory):
    f = Fleet(otelcol_binary, tmp_path_factory.mktemp("collectors"))
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def sink(fleet: Fleet) -> Sink:
    return fleet.sink()


@pytest.fixture
def collector(fleet: Fleet, sink: Sink) -> MainCollector:
    return fleet.main(sink)


# ------------------------------------------------------------------------------------
# Sending with the plain OpenTelemetry Python SDK
# ------------------------------------------------------------------------------------


@dataclass
class OtlpSender:
    """Sends telemetry to a collector with the OpenTelemetry SDK (OTLP/gRPC, insecure).

    Each call builds its own provider, flushes and shuts it down, so the data has been
    accepted by the collector's receiver when the call returns.
    """

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def resource(self, **extra: Any):
        from opentelemetry.sdk.resources import Resource

        attrs = {
            "service.name": "otel-trader-test",
            "service.instance.id": f"inst-{self.run_id}",
            "test.run_id": self.run_id,
        }
        attrs.update({k.replace("__", "."): v for k, v in extra.items()})
        return Resource.create(attrs)

    def send_spans(self, endpoint: str, spans: list[dict], resource=None, timeout: float = 10.0) -> list[str]:
        """``spans``: dicts with name, attributes, optional status_error / event. Returns span ids (hex)."""
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import Status, StatusCode

        provider = TracerProvider(resource=resource or self.resource())
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=timeout), max_export_batch_size=512
            )
        )
        tracer = provider.get_tracer("tests.collector")
        ids = []
        for spec in spans:
            with tracer.start_as_current_span(spec["name"], attributes=spec.get("attributes")) as span:
                for ev in spec.get("events", []):
                    span.add_event(ev["name"], attributes=ev.get("attributes"))
                if spec.get("status_error"):
                    span.set_status(Status(StatusCode.ERROR, spec["status_error"]))
                ids.append(format(span.get_span_context().span_id, "016x"))
        assert provider.force_flush(int(timeout * 1000)), "span flush timed out"
        provider.shutdown()
        return ids

    def meter_provider(self, endpoint: str, resource=None):
        """A MeterProvider exporting cumulative OTLP/gRPC on ``force_flush()`` only."""
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=3_600_000
        )
        return MeterProvider(metric_readers=[reader], resource=resource or self.resource())

    def send_logs(self, endpoint: str, records: list[dict], resource=None) -> None:
        """``records``: dicts with body and attributes; emitted as WARN through the logs API."""
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        provider = LoggerProvider(resource=resource or self.resource())
        provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True))
        )
        logger = provider.get_logger("tests.collector")
        try:
            for rec in records:
                logger.emit(
                    LogRecord(
                        body=rec["body"],
                        attributes=rec.get("attributes", {}),
                        severity_text="WARN",
                        severity_number=SeverityNumber.WARN,
                    )
                )
            assert provider.force_flush(10_000), "log flush timed out"
        finally:
            provider.shutdown()


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    """The :func:`wait_until` polling helper, for test modules (they do not import conftest)."""
    return wait_until


@pytest.fixture
def otlp() -> OtlpSender:
    return OtlpSender()
