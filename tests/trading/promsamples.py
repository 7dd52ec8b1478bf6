"""Prometheus exposition helpers for tests: samples without OTel's otel_scope_* labels."""

from __future__ import annotations


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels without otel_scope_*, value) for every sample in an exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if not k.startswith("otel_scope_")}
            out.append((sample.name, labels, sample.value))
    return out


def families(text: str) -> dict[str, str]:
    """Metric family name → Prometheus type, as exposed."""
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f.type for f in text_string_to_metric_families(text)}



def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))
