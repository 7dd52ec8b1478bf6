"""The metric helpers' cardinality limit and attribute redaction, read back from the real ``/metrics`` text."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

import otel_trader
from otel_trader import ConfigError, TelemetryConfig

OVERFLOW = (("otel_metric_overflow", "true"),)


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{labels: value} of the samples called ``name``, without otel_scope_* and empty labels.

    The exporter gives every sample of a family every label, empty where a series lacks it.
    """
    return {
        tuple(sorted((k, v) for k, v in s.labels.items() if v and not k.startswith("otel_scope_"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def overflow_warnings(caplog: pytest.LogCaptureFixture, metric: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "cardinality limit" in r.getMessage() and metric in r.getMessage()
    ]


def test_default_limit_keeps_1999_sets_and_one_overflow_series(telemetry, caplog):
    distinct = 5000
    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        for i in range(distinct):
            otel_trader.record_counter("logins_total", attributes={"user": f"u{i}"})
        # A set admitted before the overflow keeps its own series.
        otel_trader.record_counter("logins_total", attributes={"user": "u0"})
    text = telemetry.scrape()
    logins = samples(text, "logins_total")
    assert len(logins) == 2000  # the OpenTelemetry default, the overflow series included
    assert logins[OVERFLOW] == distinct - 1999
    assert logins[(("user", "u0"),)] == 2.0
    assert sum(logins.values()) == distinct + 1  # nothing lost
    assert samples(text, "otel_trader_metric_overflow_total") == {
        (("metric", "logins_total"),): distinct - 1999
    }
    (warning,) = overflow_warnings(caplog, "logins_total")
    assert "2000" in warning and "TELEMETRY_METRIC_CARDINALITY_LIMIT" in warning


def test_every_helper_is_bounded_by_the_configured_limit(reset_otel, monkeypatch, caplog):
    monkeypatch.setenv("TELEMETRY_METRIC_CARDINALITY_LIMIT", "3")
    manager = otel_trader.configure(enabled=True, exporter="none", service_name="limits")
    from prometheus_client import REGISTRY, generate_latest

    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        for i in range(5):
            attributes = {"order": f"o{i}"}
            otel_trader.record_histogram("fill_seconds", 0.2, attributes, buckets=(0.1, 1.0))
            otel_trader.set_gauge("book_depth", float(i), attributes)
            otel_trader.record_up_down("exposure", -1.0, attributes)
            manager.record_counter("orders.processed", 2, attributes)  # the manager's method too
            otel_trader.record_counter("tagged_total", attributes={"tags": [f"t{i}", "x"]})  # unhashable
        otel_trader.record_counter("tagged_total", attributes={"tags": ["t0", "x"]})
        otel_trader.observe_gauge("queue_depth", lambda: [(float(i), {"queue": f"q{i}"}) for i in range(5)])
        text = generate_latest(REGISTRY).decode()
        # Observations overflow at export time; the overflow counter shows them from the next one.
        later = generate_latest(REGISTRY).decode()
    first_two = [(("order", "o0"),), (("order", "o1"),)]

    assert sorted(samples(text, "fill_seconds_count")) == sorted([*first_two, OVERFLOW])
    assert samples(text, "fill_seconds_count")[OVERFLOW] == 3
    assert samples(text, "book_depth") == {first_two[0]: 0.0, first_two[1]: 1.0, OVERFLOW: 4.0}
    assert samples(text, "exposure") == {first_two[0]: -1.0, first_two[1]: -1.0, OVERFLOW: -3.0}
    assert samples(text, "orders_processed_total") == {first_two[0]: 2.0, first_two[1]: 2.0, OVERFLOW: 6.0}
    tagged = samples(text, "tagged_total")
    assert len(tagged) == 3 and tagged[OVERFLOW] == 3 and sorted(tagged.values()) == [1.0, 2.0, 3.0]
    assert samples(text, "queue_depth") == {(("queue", "q0"),): 0.0, (("queue", "q1"),): 1.0, OVERFLOW: 4.0}
    overflowed = samples(later, "otel_trader_metric_overflow_total")
    assert overflowed.pop((("metric", "queue_depth"),)) >= 3
    assert overflowed == {
        (("metric", "fill_seconds"),): 3,
        (("metric", "book_depth"),): 3,
        (("metric", "exposure"),): 3,
        (("metric", "orders.processed"),): 3,
        (("metric", "tagged_total"),): 3,
    }
    for metric in (
        "fill_seconds",
        "book_depth",
        "exposure",
        "orders.processed",
        "tagged_total",
        "queue_depth",
    ):
        assert len(overflow_warnings(caplog, metric)) == 1, metric


@pytest.mark.parametrize("value", ["0", "1000001", "many"])
def test_limit_setting_is_checked(reset_otel, monkeypatch, value):
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_METRIC_CARDINALITY_LIMIT", value)
    with pytest.raises(ConfigError, match="TELEMETRY_METRIC_CARDINALITY_LIMIT"):
        TelemetryConfig()


def test_sensitive_attribute_values_never_become_labels(telemetry):
    otel_trader.record_counter("exchange_calls_total", attributes={"api_key": "sk-live-123", "venue": "okx"})
    for i in range(50):  # distinct secrets are one series, not fifty, and take no room in the limit
        otel_trader.record_histogram(
            "sign_seconds", 0.1, attributes={"X-MBX-APIKEY": f"k{i}", "venue": "okx"}
        )
    otel_trader.set_gauge("session", 1.0, attributes={"token": "tok-999"})
    text = telemetry.scrape()
    for secret in ("sk-live-123", "tok-999", "k7"):
        assert secret not in text
    assert samples(text, "exchange_calls_total") == {(("api_key", "REDACTED"), ("venue", "okx")): 1.0}
    assert samples(text, "sign_seconds_count") == {(("X_MBX_APIKEY", "REDACTED"), ("venue", "okx")): 50}
    assert samples(text, "session") == {(("token", "REDACTED"),): 1.0}
