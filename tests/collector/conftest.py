"""Fixtures for testing otel-trader's collector distribution with the real binary.

Everything here runs ``collector/bin/otelcol-trader`` (built once per session by
``collector/build.sh``) on 127.0.0.1 with free ports, so several instances can run at once
and nothing leaves loopback. The processes are :mod:`otel_trader.collector`'s
(:class:`~otel_trader.collector.SinkProcess`, :class:`~otel_trader.collector.CollectorProcess`):
the classes ``otel-trader collector run`` and the end-to-end tests use, with test settings on top.

Fixtures
--------
``otelcol_binary`` (session, from ``tests/conftest.py``)
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
:class:`Sink` and :class:`MainCollector` are :class:`~otel_trader.collector.ManagedProcess`
subclasses: ``name``, ``start()``, ``stop()`` (SIGTERM, then SIGKILL after a timeout), ``kill()``
(SIGKILL, a crash), ``restart()``, ``running``, ``log()`` (its stdout/stderr), ``health_url``; with
``otlp_grpc_endpoint`` (``127.0.0.1:PORT``) and ``otlp_http_endpoint`` (``http://127.0.0.1:PORT``).

:class:`Sink` adds ``ports`` (dict), ``read_sink()`` (every OTLP/JSON request written so far),
``spans()``, ``metrics()``, ``logs()`` (flattened records with their resource attributes, from
:class:`tests.support.SinkReader`), ``raw()`` (file text, for "this secret never appears
anywhere" checks) and ``wait_for_spans()``. The ``wait_until`` fixture is the bounded polling
helper.

:class:`MainCollector` adds ``ports`` (:class:`~otel_trader.collector.CollectorPorts`),
``prometheus_url`` (:8889 equivalent), ``scrape()``, ``metric_families()``,
``wait_for_families()``, ``telemetry_url`` (:8888 equivalent), ``telemetry_value()`` and
``storage_dir`` (file_storage of the persistent queue, kept across ``restart()``).

Ports and settings are passed through the environment variables documented in
collector/README.md; the test defaults (short retry/flush intervals) are in
:data:`MAIN_TEST_ENV`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from otel_trader.collector import COLLECTOR_DIR, CollectorPorts, CollectorProcess, SinkProcess, http_get
from tests.support import SinkReader, free_port, wait_for

MAIN_CONFIG = COLLECTOR_DIR / "otelcol-config.yaml"

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

#: How long a graceful stop may take before SIGKILL (a collector flushing its queue).
STOP_TIMEOUT = 20.0


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes.

    :func:`tests.support.wait_for` with this fixture's argument order: ``OSError`` and
    ``ValueError`` (not up yet / partial data) count as "not yet".
    """
    return wait_for(predicate, timeout, what, interval)


class Sink(SinkReader, SinkProcess):
    """collector/sink-config.yaml: OTLP in, one JSON line per request out (``<workdir>/<name>.jsonl``)."""

    def __init__(self, name: str, binary: Path, workdir: Path, env: dict[str, str] | None = None):
        super().__init__(workdir / f"{name}.jsonl", binary, log_path=workdir / f"{name}.log", cwd=workdir)
        self.name = name
        self.env.update(env or {})

    @property
    def ports(self) -> dict[str, int]:
        return {"otlp_grpc": self.grpc_port, "otlp_http": self.http_port, "health": self.health_port}

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        return super().stop(timeout)

    def read_sink(self) -> list[dict]:
        """Every OTLP/JSON request written so far (a torn last line is ignored)."""
        return self.requests()

    def wait_for_spans(
        self, predicate: Callable[[dict], bool], count: int, timeout: float = 30.0
    ) -> list[dict]:
        """Wait until at least ``count`` spans matching ``predicate`` arrived; return them."""

        def enough():
            found = [s for s in self.spans() if predicate(s)]
            return found if len(found) >= count else None

        return wait_until(enough, timeout, what=f"{count} spans in {self.file}")


class MainCollector(CollectorProcess):
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
        self.sink = sink
        endpoint = signoz_endpoint or (sink.otlp_grpc_endpoint if sink else f"{LOOPBACK}:{free_port()}")
        settings = {**MAIN_TEST_ENV, **(env or {})}
        super().__init__(
            binary,
            MAIN_CONFIG,
            CollectorPorts.free(),
            storage_dir=workdir / f"{name}-storage",
            signoz_endpoint=endpoint,
            env=settings,
            extra_configs=extra_configs or [],
            log_path=workdir / f"{name}.log",
            cwd=workdir,
        )
        self.name = name
        # A developer's SIGNOZ_* (an ingestion key, a telemetry endpoint) must not reach the tests.
        ours = {"SIGNOZ_ENDPOINT", *settings}
        self.env = {k: v for k, v in self.env.items() if not k.startswith("SIGNOZ_") or k in ours}

    # The endpoints under the names the tests use (``127.0.0.1:PORT`` and ``http://...`` URLs).
    otlp_grpc_endpoint = property(lambda self: self.endpoints.otlp_grpc)
    otlp_http_endpoint = property(lambda self: self.endpoints.otlp_http)
    prometheus_url = property(lambda self: self.endpoints.prometheus)
    telemetry_url = property(lambda self: self.endpoints.telemetry)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        return super().stop(timeout)

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
        return self.self_metric(sample_name, **labels)


class Fleet:
    """Starts collectors for a test (or module) and stops every one of them at the end."""

    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.members: list[Sink | MainCollector] = []

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
