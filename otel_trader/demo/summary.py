"""The demo's summary, read back from the metrics themselves (Prometheus text → numbers).

Quantiles are computed from ``http_request_duration_seconds_bucket`` the way PromQL's
``histogram_quantile`` does (linear interpolation inside the bucket), so they are what a
Grafana panel would show, bucket resolution included.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Sample", "histogram_quantile", "parse", "route_table", "total"]


@dataclass(frozen=True)
class Sample:
    """One sample, without OTel's ``otel_scope_*`` labels."""

    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if not k.startswith("otel_scope_")}
            out.append(Sample(s.name, labels, float(s.value)))
    return out


def total(samples: Iterable[Sample], name: str, **match: str) -> float:
    """Sum of ``name`` over the samples whose labels include ``match``."""
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in match.items())
    )


def by_label(samples: Iterable[Sample], name: str, label: str) -> dict[str, float]:
    """``sum by (label) (name)``."""
    out: dict[str, float] = defaultdict(float)
    for s in samples:
        if s.name == name and label in s.labels:
            out[s.labels[label]] += s.value
    return dict(out)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """PromQL's histogram_quantile over cumulative ``(le, count)`` buckets; None without data."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):  # beyond the last finite bound: PromQL answers that bound
                return previous_le
            if count == previous_count:
                return le
            return previous_le + (le - previous_le) * (rank - previous_count) / (count - previous_count)
        previous_le, previous_count = le, count
    return previous_le


@dataclass
class RouteStats:
    method: str
    path: str
    requests: float
    errors: float  # responses with a 4xx or 5xx status
    server_errors: float
    p50: float | None
    p95: float | None
    p99: float | None


def route_table(samples: list[Sample]) -> list[RouteStats]:
    """Per (method, path): requests, errors and p50/p95/p99 from the RED metrics."""
    requests: dict[tuple[str, str], float] = defaultdict(float)
    errors: dict[tuple[str, str], float] = defaultdict(float)
    server_errors: dict[tuple[str, str], float] = defaultdict(float)
    for s in samples:
        if s.name != "http_requests_total":
            continue
        route = (s.labels.get("method", ""), s.labels.get("path", ""))
        requests[route] += s.value
        status = s.labels.get("status", "")
        if status.startswith(("4", "5")):
            errors[route] += s.value
        if status.startswith("5"):
            server_errors[route] += s.value
    buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for s in samples:
        if s.name == "http_request_duration_seconds_bucket":
            route = (s.labels.get("method", ""), s.labels.get("path", ""))
            buckets[route][float(s.labels["le"])] += s.value
    rows = []
    for route in sorted(requests, key=lambda r: -requests[r]):
        series = list(buckets.get(route, {}).items())
        rows.append(
            RouteStats(
                method=route[0],
                path=route[1],
                requests=requests[route],
                errors=errors[route],
                server_errors=server_errors[route],
                p50=histogram_quantile(0.50, series),
                p95=histogram_quantile(0.95, series),
                p99=histogram_quantile(0.99, series),
            )
        )
    return rows


def fmt_seconds(value: float | None) -> str:
    """``12.3ms`` / ``1.20s`` / ``-``."""
    if value is None:
        return "-"
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"
