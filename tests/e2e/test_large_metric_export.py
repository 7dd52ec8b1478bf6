"""A metric export larger than gRPC's 4 MiB message limit still reaches the collector, split."""

from __future__ import annotations

import pytest

import otel_trader
from otel_trader.sdk.exporters import METRIC_POINTS_PER_REQUEST
from tests.e2e.conftest import E2EStack, wait_until

INSTRUMENTS, SERIES = 50, 2_000  # 2,000 = the SDK's default cardinality limit per instrument


@pytest.mark.timeout(180)
def test_metric_export_over_the_grpc_limit_is_split_and_accepted(stack: E2EStack, reset_otel, monkeypatch) -> None:
    collector = stack.collector(stack.sink())
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("OTLP_ENDPOINT", collector.endpoints.otlp_grpc)
    monkeypatch.setenv("METRIC_EXPORT_INTERVAL_SECONDS", "3600")  # only our explicit flush exports
    monkeypatch.setenv("PROMETHEUS_ENABLED", "false")
    monkeypatch.setenv("TELEMETRY_LOGS_ENABLED", "false")
    manager = otel_trader.get_telemetry_manager()
    meter = otel_trader.sdk.metric_helpers.get_meter()
    for i in range(INSTRUMENTS):
        counter = meter.create_counter(f"wide_counter_{i}_total")
        for j in range(SERIES):
            counter.add(1, {"series": f"s{j}", "desk": "spot"})
    total = INSTRUMENTS * SERIES
    assert total > 4 * METRIC_POINTS_PER_REQUEST  # unsplit, this is over 4 MiB
    assert manager.meter_provider.force_flush(60_000)

    def accepted() -> float | None:
        value = collector.self_metric("otelcol_receiver_accepted_metric_points_total")
        return value if value >= total else None

    wait_until(accepted, 30, f"{total} metric points accepted by the collector")
    assert collector.self_metric("otelcol_receiver_refused_metric_points_total") == 0
