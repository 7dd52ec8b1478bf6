"""How one expression is written for each backend: our Prometheus, or SigNoz.

The Prometheus dialect produces the names our Prometheus scrapes (``http_request_duration_seconds_bucket``,
``process_cpu_seconds_total``, labels ``job``/``instance``); the SigNoz dialect produces the names
SigNoz stores, which are the OpenTelemetry instrument names unchanged: histograms get
``.bucket``/``.count``/``.sum``, counters get no ``_total``, dots stay dots (quoted in PromQL:
``{"otel.sdk.processor.span.processed"}``), and resource attributes are labels
(``"service.name"`` instead of ``job``). See signoz/README.md.

Every selector goes through :meth:`Dialect.sel`, which takes the metric's names from the catalog
and refuses a label (or a fixed value of a closed label) the catalog does not list for it.
"""

from __future__ import annotations

import json
import re

from .catalog import METRICS, SIGNOZ_LABELS, check_label, scope

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')
_LEGACY_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")


def quote_label(name: str) -> str:
    return name if _LEGACY_NAME.match(name) and ":" not in name else json.dumps(name)


def split(matcher: str) -> tuple[str, str, str]:
    """``'status=~"5.."'`` -> ``("status", "=~", "5..")``."""
    found = _MATCHER.match(matcher)
    if not found:
        raise ValueError(f"matcher {matcher!r} is not name<op>\"value\"")
    return found.group(1), found.group(2), found.group(3)


class Dialect:
    """Writes selectors, groupings and legends for one backend."""

    name: str
    #: range for rate()/increase() in panels
    rate: str

    def sel(self, metric: str, *matchers: str, part: str = "", base: bool = True) -> str:
        """``metric``'s series (``part``: a histogram's bucket/sum/count) with ``matchers``;
        ``base`` adds the dashboard's service/instance variables."""
        for matcher in matchers:
            label, op, value = split(matcher)
            check_label(metric, label, value, op)
        return self._sel(metric, matchers, part, base)

    def _sel(self, metric: str, matchers: tuple[str, ...], part: str, base: bool) -> str:
        raise NotImplementedError

    def label(self, name: str) -> str:
        raise NotImplementedError

    def label_key(self, name: str) -> str:
        raise NotImplementedError

    def by(self, *labels: str) -> str:
        return ", ".join(self.label(label) for label in labels)

    def grouped(self, metric: str, *labels: str) -> str:
        """``by`` over labels of ``metric``, checked against the catalog."""
        for label in labels:
            check_label(metric, label)
        return self.by(*labels)

    def legend(self, *labels: str) -> str:
        return " ".join("{{" + self.label_key(label) + "}}" for label in labels)


class PrometheusDialect(Dialect):
    """Our Prometheus: app metrics filtered by the dashboard's via/job/instance variables."""

    name = "prometheus"
    rate = "$__rate_interval"

    APP_BASE = ('job="$job"', 'via="$via"', 'instance=~"$instance"')
    COLLECTOR_BASE = ('job="otel-collector-self"', 'instance=~"$collector"')

    def _sel(self, metric: str, matchers: tuple[str, ...], part: str, base: bool) -> str:
        prom = METRICS[metric].prom
        name = f"{prom}_{part}" if part else prom
        base_matchers = (self.APP_BASE if scope(metric) == "app" else self.COLLECTOR_BASE) if base else ()
        inner = [*base_matchers, *(f'{label}{op}"{value}"' for label, op, value in map(split, matchers))]
        return name + "{" + ", ".join(inner) + "}" if inner else name

    def label(self, name: str) -> str:
        return name

    def label_key(self, name: str) -> str:
        return name


class SignozDialect(Dialect):
    """SigNoz: OTel names, resource attributes as labels, UTF-8 quoting where needed."""

    name = "signoz"
    # SigNoz has no $__rate_interval; the app pushes every 15 s, SigNoz steps by 60 s.
    rate = "5m"

    def _sel(self, metric: str, matchers: tuple[str, ...], part: str, base: bool) -> str:
        otel = METRICS[metric].otel
        name = f"{otel}.{part}" if part else otel
        if base:
            service = "$service_name" if scope(metric) == "app" else "$collector_service"
            base_matchers = [f'"service.name"="{service}"']
        else:
            base_matchers = []
        rest = [f'{self.label(label)}{op}"{value}"' for label, op, value in map(split, matchers)]
        inner = [*base_matchers, *rest]
        if _LEGACY_NAME.match(name):
            return name + "{" + ", ".join(inner) + "}" if inner else name
        return "{" + ", ".join([json.dumps(name), *inner]) + "}"

    def label(self, name: str) -> str:
        return quote_label(SIGNOZ_LABELS.get(name, name))

    def label_key(self, name: str) -> str:
        return SIGNOZ_LABELS.get(name, name)


PROM = PrometheusDialect()
SIGNOZ = SignozDialect()
