"""Fork-awareness: a worker forked after ``configure()`` (gunicorn ``--preload``) is its own instance.

The child reports over a pipe and always leaves through ``os._exit``, so it never runs pytest's
teardown or atexit handlers inherited from the parent.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import otel_trader
from otel_trader.sdk.exporters import ForkSafe

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
from procs import Launcher, clean_env  # noqa: E402


class RecordingExporter(SpanExporter):
    """Remembers which process created it and what it exported, from which thread."""

    created: list[int] = []  # pids of every instance created in this process's memory

    def __init__(self) -> None:
        self.pid = os.getpid()
        RecordingExporter.created.append(self.pid)
        self.exported: list[dict[str, Any]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            attributes = span.resource.attributes
            self.exported.append(
                {
                    "name": span.name,
                    "instance": attributes["service.instance.id"],
                    "pid_attribute": attributes["process.pid"],
                    "thread": threading.current_thread().name,
                    "exporter_pid": self.pid,
                }
            )
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def exported(proxy: ForkSafe, name: str) -> list[dict[str, Any]]:
    return [s for s in proxy.inner.exported if s["name"] == name]


def target_info(text: str) -> dict[str, str]:
    (sample,) = [
        s for f in text_string_to_metric_families(text) if f.name == "target_info" for s in f.samples
    ]
    return dict(sample.labels)


def run_child(proxy: ForkSafe, write_end: int) -> None:
    """The forked child: make a span, let the batch worker export it, report, ``os._exit``."""
    code = 1
    try:
        report: dict[str, Any] = {"pid": os.getpid()}
        with otel_trader.trace_operation("child-span"):
            pass
        # No force_flush: the span must leave through the batch processor's (restarted) worker.
        report["exported_in_time"] = wait_for(lambda: bool(exported(proxy, "child-span")))
        report["spans"] = proxy.inner.exported
        report["exporter_pid"] = proxy.inner.pid
        report["target_info"] = target_info(generate_latest(REGISTRY).decode())
        code = 0
    except BaseException:
        report = {"error": traceback.format_exc()}
    finally:
        try:
            os.write(write_end, json.dumps(report).encode())
            os.close(write_end)
        finally:
            os._exit(code)


def read_report(read_end: int, pid: int, timeout: float = 20.0) -> dict[str, Any]:
    """Read the child's JSON report and reap it; kill it if it overstays."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        status = None
        while status is None and time.monotonic() < deadline:
            reaped, code = os.waitpid(pid, os.WNOHANG)
            status = code if reaped else None
            time.sleep(0 if reaped else 0.02)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert chunks, "the child reported nothing (hung or crashed)"
    assert status is not None and os.waitstatus_to_exitcode(status) == 0, f"child status {status}"
    return dict(json.loads(b"".join(chunks)))


@pytest.fixture
def forked_setup(reset_otel: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ForkSafe]:
    """otel-trader configured with a ForkSafe recording exporter behind the batch processor."""
    # Export within 50 ms, so the test sees the worker thread export (not a force_flush).
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    RecordingExporter.created = []
    proxy = ForkSafe(RecordingExporter)
    otel_trader.configure(enabled=True, exporter="none", service_name="forky", span_exporter=proxy)  # type: ignore[arg-type]
    yield proxy


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_preload_fork_gives_the_child_its_own_instance(forked_setup: ForkSafe) -> None:
    proxy = forked_setup
    manager = otel_trader.get_telemetry_manager()
    with otel_trader.trace_operation("parent-before"):
        pass
    assert wait_for(lambda: bool(exported(proxy, "parent-before")))
    parent = exported(proxy, "parent-before")[0]
    parent_target = target_info(generate_latest(REGISTRY).decode())

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        run_child(proxy, write_end)
    os.close(write_end)
    child = read_report(read_end, pid)
    assert "error" not in child, child.get("error")

    # The child exported through its batch worker thread, with an exporter it created itself.
    assert child["exported_in_time"], child
    assert child["exporter_pid"] == child["pid"] != os.getpid()
    (span,) = [s for s in child["spans"] if s["name"] == "child-span"]
    assert span["thread"].startswith("OtelBatchSpan"), span["thread"]
    assert span["exporter_pid"] == child["pid"]
    # The parent's queue is not re-sent from the child.
    assert [s["name"] for s in child["spans"]] == ["child-span"]

    # A different service.instance.id and process.pid, on spans and on target_info alike.
    assert span["instance"] != parent["instance"]
    assert span["pid_attribute"] == child["pid"]
    assert parent["pid_attribute"] == os.getpid()
    assert child["target_info"]["service_instance_id"] == span["instance"]
    assert child["target_info"]["process_pid"] == str(child["pid"])
    assert child["target_info"]["service_name"] == parent_target["service_name"] == "forky"

    # The parent is untouched: same exporter, same identity, and still exporting.
    assert proxy.inner.pid == os.getpid() and RecordingExporter.created == [os.getpid()]
    with otel_trader.trace_operation("parent-after"):
        pass
    assert wait_for(lambda: bool(exported(proxy, "parent-after")))
    after = exported(proxy, "parent-after")[0]
    assert after["instance"] == parent["instance"] and after["thread"].startswith("OtelBatchSpan")
    assert target_info(generate_latest(REGISTRY).decode()) == parent_target
    assert manager.shutdown(timeout=5)


@pytest.mark.timeout(90)
def test_uvicorn_workers_each_get_their_own_instance(tmp_path: Path) -> None:
    """``uvicorn --workers 2`` spawns workers; each configures itself and has its own identity."""
    launch = Launcher(tmp_path)
    try:
        app = launch.uvicorn(
            "zero_code_app",
            clean_env(TELEMETRY_EXPORTER="none", OTEL_SERVICE_NAME="workers"),
            instrument=True,
            extra=("--workers", "2"),
        )
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 30
        # A new connection per request, so the kernel hands them to either worker.
        while len(seen) < 2 and time.monotonic() < deadline:
            try:
                response = httpx.get(f"{app.url}/metrics", timeout=5)
            except httpx.TransportError:  # a worker still starting
                time.sleep(0.1)
                continue
            if response.status_code == 200:
                # Once the workers share snapshots, /metrics lists one target_info per worker,
                # labelled with its pid (a worker that has seen no sibling yet serves its own).
                for family in text_string_to_metric_families(response.text):
                    for sample in family.samples if family.name == "target_info" else ():
                        worker = sample.labels.get("worker", sample.labels["process_pid"])
                        assert worker == sample.labels["process_pid"], sample.labels
                        seen[sample.labels["service_instance_id"]] = sample.labels["process_pid"]
        assert len(seen) == 2, f"saw only {seen} after 30 s"
        assert len(set(seen.values())) == 2
    finally:
        launch.stop_all()


# -- metric state after fork ---------------------------------------------------------------------


def metric_points(reader: Any, name: str) -> list[Any]:
    """The data points of metric ``name`` in a fresh collection of an InMemoryMetricReader."""
    data = reader.get_metrics_data()
    return [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def prometheus_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{labels without otel_scope_*: value} of the samples called ``name`` in an exposition.

    The exporter gives every sample of a family every label, empty where a series lacks it;
    those are left out.
    """
    return {
        tuple(sorted((k, v) for k, v in s.labels.items() if v and not k.startswith("otel_scope_"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def read_metrics(reader: Any) -> dict[str, Any]:
    """What the test compares between parent and children, from both readers."""
    (orders,) = metric_points(reader, "fork_orders_total")
    (latency,) = metric_points(reader, "fork_latency_seconds")
    (pid,) = metric_points(reader, "fork_pid")
    text = generate_latest(REGISTRY).decode()
    return {
        "orders": orders.value,
        "orders_start_ns": orders.start_time_unix_nano,
        "latency_count": latency.count,
        "latency_sum": latency.sum,
        "pid_gauge": pid.value,
        "prom_orders": prometheus_samples(text, "fork_orders_total"),
        "prom_latency_count": prometheus_samples(text, "fork_latency_seconds_count"),
        "prom_users": prometheus_samples(text, "fork_users_total"),
        "prom_positions": prometheus_samples(text, "positions_open"),
    }


def run_metric_child(reader: Any, index: int, write_end: int) -> None:
    """A forked child: record ``index + 1`` orders and latencies and two new users, report, ``os._exit``."""
    code = 1
    try:
        for _ in range(index + 1):
            otel_trader.record_counter("fork_orders_total", attributes={"side": "buy"})
            otel_trader.record_histogram("fork_latency_seconds", 0.7, buckets=(0.1, 0.5, 1.0))
        for user in ("c1", "c2"):
            otel_trader.record_counter("fork_users_total", attributes={"user": user})
        report: dict[str, Any] = {"pid": os.getpid(), **read_metrics(reader)}
        report = {k: list(v.items()) if isinstance(v, dict) else v for k, v in report.items()}
        code = 0
    except BaseException:
        report = {"error": traceback.format_exc()}
    finally:
        try:
            os.write(write_end, json.dumps(report).encode())
            os.close(write_end)
        finally:
            os._exit(code)


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_forked_children_start_with_empty_metric_state(reset_otel: None) -> None:
    """Children report only what they recorded; the parent keeps its own values."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_trader import trading

    reader = InMemoryMetricReader()
    manager = otel_trader.configure(
        enabled=True,
        exporter="none",
        service_name="forky",
        metric_cardinality_limit=3,  # two attribute sets plus the overflow series
        span_exporter=InMemorySpanExporter(),
        metric_readers=[reader],
    )
    parent_orders = 40
    for _ in range(parent_orders):
        otel_trader.record_counter("fork_orders_total", attributes={"side": "buy"})
        otel_trader.record_histogram("fork_latency_seconds", 0.2, buckets=(0.1, 0.5, 1.0))
    for user in ("p1", "p2", "p3"):  # p3 overflows in the parent
        otel_trader.record_counter("fork_users_total", attributes={"user": user})
    otel_trader.observe_gauge("fork_pid", lambda: float(os.getpid()))
    trading.configure_trading()
    trading.set_open_positions("BTC-USDT", 3, strategy="grid")
    parent_before = read_metrics(reader)
    # A flush collects every reader, the pull reader too: that data waits for the next scrape.
    assert manager.meter_provider is not None
    manager.meter_provider.force_flush()

    fork_ns = time.time_ns()
    children = []
    for index in range(3):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read_end)
            run_metric_child(reader, index, write_end)
        os.close(write_end)
        children.append((index, read_end, pid))
    reports = [(index, read_report(read_end, pid)) for index, read_end, pid in children]

    for index, child in reports:
        assert "error" not in child, child.get("error")
        recorded = index + 1
        # Exactly what the child recorded, not the parent's 40 plus it.
        assert child["orders"] == recorded, child
        assert child["latency_count"] == recorded and child["latency_sum"] == pytest.approx(0.7 * recorded)
        assert child["prom_orders"] == [[[["side", "buy"]], recorded]], child["prom_orders"]
        assert child["prom_latency_count"] == [[[], recorded]]
        # A cumulative series restarts in the child: its start time is after the fork.
        assert child["orders_start_ns"] > fork_ns > parent_before["orders_start_ns"]
        # Observable instruments are still read, in the child.
        assert child["pid_gauge"] == child["pid"] != os.getpid()
        # The child's own attribute sets are not overflowed by the parent's.
        assert sorted(child["prom_users"]) == [[[["user", "c1"]], 1.0], [[["user", "c2"]], 1.0]]
        # Trading state read by observable instruments is the parent's: not reported again.
        assert child["prom_positions"] == []

    # The parent is untouched.
    generate_latest(REGISTRY)  # hands out the data the flush above left for the next scrape
    parent_after = read_metrics(reader)
    assert parent_after["orders"] == parent_orders and parent_after["latency_count"] == parent_orders
    assert parent_after["orders_start_ns"] == parent_before["orders_start_ns"]
    assert parent_after["prom_orders"] == {(("side", "buy"),): parent_orders}
    assert (
        parent_after["prom_users"]
        == parent_before["prom_users"]
        == {
            (("user", "p1"),): 1.0,
            (("user", "p2"),): 1.0,
            (("otel_metric_overflow", "true"),): 1.0,
        }
    )
    assert parent_after["prom_positions"] == {(("symbol", "BTC-USDT"),): 3.0}
    assert parent_after["pid_gauge"] == os.getpid()
    trading.configure_trading()
    assert manager.shutdown(timeout=5)
