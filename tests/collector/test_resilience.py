"""Nothing is lost when SigNoz (the sink) is down for a while, nor when the collector restarts
or crashes while data waits for SigNoz (persistent sending_queue on file_storage)."""

from __future__ import annotations

import time

import pytest

QUEUE = "otelcol_exporter_queue_size"
EXPORTER = "otlp_grpc/signoz"


def _mine(otlp):
    return lambda s: s["resource"].get("test.run_id") == otlp.run_id


def _queued_batches(main) -> float:
    return main.telemetry_value(QUEUE, exporter=EXPORTER, data_type="traces")


@pytest.mark.timeout(180)
def test_sink_outage_then_recovery_delivers_everything(fleet, otlp, wait_until):
    sink = fleet.sink()
    main = fleet.main(sink)
    sent = otlp.send_spans(main.otlp_grpc_endpoint, [{"name": "before-outage"} for _ in range(5)])
    sink.wait_for_spans(_mine(otlp), 5)

    sink.stop()
    outage_started = time.monotonic()
    # ~12 s of outage with traffic throughout: 6 rounds of 20 spans, 2 s apart.
    for round_no in range(6):
        sent += otlp.send_spans(
            main.otlp_grpc_endpoint, [{"name": f"during-outage-{round_no}"} for _ in range(20)]
        )
        time.sleep(2.0)
    # The data is waiting in the exporter's queue, not lost and not delivered elsewhere.
    wait_until(lambda: _queued_batches(main) >= 1, 10, what="queued batches during the outage")
    assert time.monotonic() - outage_started >= 10

    sink.start()
    spans = sink.wait_for_spans(_mine(otlp), len(sent), timeout=60)
    assert {s["spanId"] for s in spans} == set(sent)
    assert len(sent) == 125
    wait_until(lambda: _queued_batches(main) == 0, 20, what="queue drained")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["graceful-restart", "crash"])
def test_queued_data_survives_collector_restart(fleet, otlp, wait_until, how):
    # The sink (SigNoz) is down for the whole first life of the collector, so whatever
    # arrives afterwards can only come from the queue persisted in file_storage.
    sink = fleet.sink(start=False)
    main = fleet.main(sink)
    sent = []
    for round_no in range(3):
        sent += otlp.send_spans(main.otlp_grpc_endpoint, [{"name": f"queued-{round_no}"} for _ in range(40)])
    wait_until(
        lambda: main.telemetry_value("otelcol_receiver_accepted_spans_total") >= len(sent),
        10,
        what="spans accepted",
    )
    wait_until(lambda: _queued_batches(main) >= 1, 10, what="batches in the persistent queue")

    if how == "crash":
        main.kill()  # SIGKILL: no shutdown, no final flush
    else:
        main.stop()  # SIGTERM: graceful shutdown while the queue cannot drain
    assert any(main.storage_dir.iterdir()), "file_storage directory is empty"

    main.start()
    # Restored from disk before any delivery was possible (sink still down).
    wait_until(lambda: _queued_batches(main) >= 1, 10, what="queue restored after restart")
    time.sleep(1.0)
    assert sink.spans() == []

    sink.start()
    spans = sink.wait_for_spans(_mine(otlp), len(sent), timeout=60)
    assert {s["spanId"] for s in spans} == set(sent)
    wait_until(lambda: _queued_batches(main) == 0, 20, what="queue drained")


@pytest.mark.timeout(120)
def test_control_in_memory_queue_loses_data_on_crash(fleet, otlp, wait_until, tmp_path):
    """Control for the test above: the same crash with the queue's storage removed loses
    the data, so that test passes because of file_storage, not by accident."""
    overlay = tmp_path / "memory-queue.yaml"
    overlay.write_text(f"exporters:\n  {EXPORTER}:\n    sending_queue:\n      storage: null\n")
    sink = fleet.sink(start=False)
    main = fleet.main(sink, extra_configs=[overlay])
    otlp.send_spans(main.otlp_grpc_endpoint, [{"name": "volatile"} for _ in range(40)])
    wait_until(lambda: _queued_batches(main) >= 1, 10, what="batches in the in-memory queue")
    main.kill()
    main.start()
    sink.start()
    # With retries every <= 2 s, queued data would arrive within ~3 s; wait a little longer.
    time.sleep(5.0)
    assert [s for s in sink.spans() if _mine(otlp)(s)] == []


@pytest.mark.timeout(120)
def test_a_collector_restarted_by_a_helper_thread_outlives_that_thread(fleet, otlp):
    """Linux sends the parent-death signal when the thread that started a child ends: a collector
    restarted from a helper thread (a supervisor, a benchmark's restarter) must keep running."""
    import threading

    sink = fleet.sink()
    main = fleet.main(sink)
    restarter = threading.Thread(target=lambda: (main.kill(), main.start()))
    restarter.start()
    restarter.join(60)
    pid = main.pid
    time.sleep(1.0)  # the signal, had it been asked for, is delivered as the thread exits
    assert main.running and main.pid == pid
    sent = otlp.send_spans(main.otlp_grpc_endpoint, [{"name": "after-restart"} for _ in range(3)])
    assert {s["spanId"] for s in sink.wait_for_spans(_mine(otlp), 3)} == set(sent)
