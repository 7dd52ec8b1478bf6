"""What a dashboard is made of (panels, queries, variables), and the expression helpers panels use.

A panel is one description for both backends: its ``queries`` are a function of a
:class:`~.dialect.Dialect`, so each expression exists once. Where SigNoz's editor has no PromQL
(its tables and pies) the panel also carries ``signoz=Builder(...)``: the same metrics as SigNoz
query-builder queries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .dialect import Dialect

#: uid of the datasource in monitoring/grafana/provisioning/datasources/prometheus.yml; every
#: Grafana panel and query variable names it.
DATASOURCE_UID = "otel-trader-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
#: The collector's service.name (its ocb build name); its self-metrics carry it in SigNoz.
COLLECTOR_SERVICE = "otelcol-trader"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    #: Why this query is empty while everything works (it only shows a problem); None = it
    #: must return data under the demo load. Read by tests/monitoring.
    empty_when_healthy: str | None = None


QueryFn = Callable[[Dialect], list[Query]]


@dataclass(frozen=True)
class BuilderQuery:
    """One metric query of SigNoz's query builder (a widget's ``builder.queryData`` entry).

    SigNoz computes it per 60 s step (``time`` within a step, then ``space`` across series
    grouped by ``by``) and reduces the steps of the widget's window to one value per group
    with ``reduce``: a table row or a pie slice.
    """

    metric: str  # Prometheus name, a key of the catalog
    time: str  # time aggregation: latest | increase | rate | "" (histogram percentiles: SigNoz uses rate)
    space: str  # space aggregation: sum | max | p95 | ...
    reduce: str  # reduceTo: sum | last | avg | ...
    by: tuple[str, ...] = ()  # Prometheus label names; SIGNOZ_LABELS maps them
    part: str = ""  # histogram series: bucket | sum | count
    hidden: bool = False  # disabled: it only feeds the formula


@dataclass(frozen=True)
class Builder:
    """A SigNoz query-builder widget: its queries (named A, B, ...), an optional formula over
    them, and the widget's own time window (``timePreferance``) where the Grafana query has a
    fixed range (``increase(...[24h])`` -> ``LAST_1_DAY``)."""

    queries: tuple[BuilderQuery, ...]
    formula: str = ""
    window: str = "GLOBAL_TIME"  # GLOBAL_TIME | LAST_5_MIN | LAST_1_HR | LAST_1_DAY | ...


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries | stat | gauge | piechart | bargauge | row
    queries: QueryFn | None = None
    unit: str = "short"
    description: str = ""
    w: int = 12
    h: int = 8
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    mappings: tuple[dict, ...] = ()
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    stack: bool = False
    #: only in Grafana (a Prometheus-only concept such as `up`, or Grafana-only variables)
    grafana_only: bool = False
    #: The SigNoz widget as query-builder queries instead of `queries`' PromQL: SigNoz's panel
    #: editor offers no PromQL for tables and pies, so those panels need it.
    signoz: Builder | None = None


def row(title: str) -> Panel:
    return Panel(title=title, kind="row", w=24, h=1)


@dataclass
class Variable:
    name: str
    label: str
    grafana: dict
    signoz: dict | None = None


@dataclass
class Dashboard:
    slug: str
    uid: str
    title: str
    description: str
    tags: list[str]
    panels: list[Panel]
    variables: list[Variable] = field(default_factory=list)
    refresh: str = "30s"
    time_from: str = "now-1h"


def q(expr: str, legend: str = "", empty_when_healthy: str | None = None) -> Query:
    return Query(expr, legend, empty_when_healthy)


# Expression helpers. Matchers are plain strings ('status=~"5.."') that the dialect writes, so
# each expression below exists once for both backends.


def _agg(d: Dialect, metric: str, inner: str, by: tuple[str, ...], agg: str = "sum") -> str:
    return f"{agg} by ({d.grouped(metric, *by)}) ({inner})" if by else f"{agg}({inner})"


def rate_sum(d: Dialect, metric: str, *matchers: str, by: tuple[str, ...] = (), window: str | None = None) -> str:
    return _agg(d, metric, f"rate({d.sel(metric, *matchers)}[{window or d.rate}])", by)


def increase_sum(d: Dialect, metric: str, *matchers: str, by: tuple[str, ...] = (), window: str = "24h") -> str:
    return _agg(d, metric, f"increase({d.sel(metric, *matchers)}[{window}])", by)


def gauge(d: Dialect, metric: str, *matchers: str, by: tuple[str, ...] = (), agg: str = "sum") -> str:
    return _agg(d, metric, d.sel(metric, *matchers), by, agg)


def percent_of(d: Dialect, metric: str, matcher: str, window: str) -> str:
    """100 * part / whole of a counter's rate.

    `or vector(0)`: while nothing matched yet (no 5xx at all) the part has no series, so the
    ratio would show No data instead of 0 %. `> 0` on the whole: an idle service gives No data
    instead of 0/0 = NaN.
    """
    part = rate_sum(d, metric, matcher, window=window)
    whole = rate_sum(d, metric, window=window)
    return f"100 * ({part} or vector(0)) / ({whole} > 0)"


def quantile(d: Dialect, phi: str, metric: str, by: tuple[str, ...] = (), window: str | None = None) -> str:
    buckets = f"rate({d.sel(metric, part='bucket')}[{window or d.rate}])"
    return f"histogram_quantile({phi}, sum by ({d.grouped(metric, *by, 'le')}) ({buckets}))"


def avg_time(d: Dialect, metric: str, window: str) -> str:
    """The average per path: _sum / _count; an idle path is filtered out (not 0/0)."""
    total = f"sum by ({d.grouped(metric, 'path')}) (rate({d.sel(metric, part='sum')}[{window}]))"
    count = f"sum by ({d.grouped(metric, 'path')}) (rate({d.sel(metric, part='count')}[{window}]))"
    return f"{total} / ({count} > 0)"


ERROR_STEPS = ((None, "green"), (1.0, "yellow"), (5.0, "red"))
LATENCY_STEPS = ((None, "green"), (0.5, "yellow"), (1.0, "red"))
UP_MAPPINGS = (
    {"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0},
                                  "1": {"text": "UP", "color": "green", "index": 1}}},
)
DROPPED = "only non-zero while data is being dropped: a healthy pipeline has no such series"
NO_LOGS = "no logs flow under the demo load (spans and metrics only); logs need TELEMETRY_LOGS_ENABLED"
BUY = 'side="buy"'
FILLED = 'status="filled"'
LIMITED = 'status="limited"'
SERVER_ERROR = 'status=~"5.."'
