"""Every PromQL expression otel-trader ships, and how to check it.

Reusable outside these tests (e.g. by the demo end-to-end check)::

    from tests.monitoring.promql import extract_all, render

    for e in extract_all():
        print(e.where, render(e.expr, e.test_variables()))

Sources (paths relative to the repository root):

* ``monitoring/grafana/dashboards/*.json``  panel targets and ``label_values()`` variables
* ``monitoring/prometheus/alerts/*.yml``    alerting rule ``expr``
* ``signoz/dashboards/*.json``              PromQL widgets (SigNoz's OTel names), and the
  query-builder widgets of tables and pies as the selector each builder query reads
  (:func:`builder_selector`)
* ``signoz/alerts/*.json``                  PromQL alert rules (v5: ``condition.compositeQuery.queries``)

``Expr.dialect`` is ``"prometheus"`` (our Prometheus; Prometheus 2.42 parses it) or ``"signoz"``
(UTF-8 quoted names such as ``{"otel.sdk.processor.span.processed"}``, which need the
Prometheus 3 parser: :func:`parse_v3`). ``Expr.empty_when_healthy`` says why an expression may
return nothing while everything works (it only shows a problem); ``None`` means it must return
data under load.

:func:`signoz_series` turns the OTLP/JSON the test sink received into the label sets SigNoz
would store, and :func:`selector_matches` matches a selector from :func:`parse_v3` against
one: together they check SigNoz queries against real data without running SigNoz.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA_DASHBOARDS = ROOT / "monitoring" / "grafana" / "dashboards"
PROMETHEUS_RULES = ROOT / "monitoring" / "prometheus" / "alerts"
SIGNOZ_DASHBOARDS = ROOT / "signoz" / "dashboards"
SIGNOZ_ALERTS = ROOT / "signoz" / "alerts"
PARSER_SOURCE = Path(__file__).resolve().parent / "promqlparse"

#: Values the test substitutes for dashboard variables. The service is the one prometheus.yml
#: scrapes directly (job trader-api); the load generator runs the app with that service.name.
GRAFANA_TEST_VARIABLES = {
    "job": "trader-api",
    "via": "collector",
    "instance": ".*",
    "collector": ".*",
    # Grafana's own: at least 4 scrape intervals; the test scrapes every second
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}
SIGNOZ_TEST_VARIABLES = {"service_name": "trader-api", "collector_service": "otelcol-trader"}

#: Alert conditions compare with a threshold: by design they return nothing unless firing.
ALERT_CONDITION = "an alert condition: it returns series only while the alert is firing"


@dataclass(frozen=True)
class Expr:
    """One PromQL expression and where it lives."""

    source: str  # grafana | grafana-variable | prometheus-rule | signoz-dashboard | signoz-alert
    dialect: str  # prometheus | signoz
    file: str  # relative to the repository root
    where: str  # dashboard / panel / refId, or group / alert
    expr: str  # as written, with $variables (a builder query: the selector it reads)
    empty_when_healthy: str | None = None
    builder: bool = False  # a SigNoz query-builder query, not PromQL

    def test_variables(self) -> dict[str, str]:
        return GRAFANA_TEST_VARIABLES if self.dialect == "prometheus" else SIGNOZ_TEST_VARIABLES

    def rendered(self, variables: dict[str, str] | None = None) -> str:
        return render(self.expr, variables or self.test_variables())

    def __str__(self) -> str:
        return f"{self.file}: {self.where}"


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def render(expr: str, variables: dict[str, str]) -> str:
    """Substitute ``$var``, ``${var}``, ``${var:fmt}`` and ``[[var]]``; unknown variables fail."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in variables:
            raise KeyError(f"no test value for variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(substitute, expr)


_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)


def _builder_reasons() -> dict[tuple[str, str, str], str]:
    """(dialect, dashboard title, panel title + ref) -> empty_when_healthy, from the generator."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from monitoring.generate.alerts import ALERTS
    from monitoring.generate.dashboards import dashboards
    from monitoring.generate.dialect import PROM, SIGNOZ

    reasons: dict[tuple[str, str, str], str] = {}
    for dash in dashboards():
        for panel in dash.panels:
            if panel.queries is None:
                continue
            # a panel with query-builder queries for SigNoz has no SigNoz PromQL
            for dialect in (PROM,) if panel.signoz else (PROM, SIGNOZ):
                for i, query in enumerate(panel.queries(dialect)):
                    if query.empty_when_healthy:
                        reasons[(dialect.name, dash.title, f"{panel.title} / {chr(65 + i)}")] = query.empty_when_healthy
    for alert in ALERTS:
        if alert.empty_when_healthy:
            reasons[("signoz", "alert", alert.name)] = alert.empty_when_healthy
    return reasons


def grafana_expressions(path: Path, reasons: dict | None = None) -> list[Expr]:
    reasons = _builder_reasons() if reasons is None else reasons
    dash = json.loads(path.read_text(encoding="utf-8"))
    rel = str(path.relative_to(ROOT))
    out = []
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        found = _LABEL_VALUES.match(query)
        if not found:
            raise ValueError(f"{rel}: variable {var['name']}: only label_values(selector, label) is supported: {query!r}")
        out.append(Expr("grafana-variable", "prometheus", rel, f"{dash['title']} / ${var['name']}", found.group("selector")))
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            where = f"{panel['title']} / {target['refId']}"
            out.append(Expr("grafana", "prometheus", rel, f"{dash['title']} / {where}", target["expr"],
                            reasons.get(("prometheus", dash["title"], where))))
    return out


def prometheus_rule_expressions(path: Path) -> list[Expr]:
    rel = str(path.relative_to(ROOT))
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            reason = ALERT_CONDITION if "alert" in rule else None
            out.append(Expr("prometheus-rule", "prometheus", rel, f"{group['name']} / {name}", rule["expr"].strip(), reason))
    return out


_FILTER_TERM = re.compile(r"""^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(\$\w+|'[^']*')\s*$""")


def builder_selector(query: dict) -> str:
    """The PromQL selector of the series a SigNoz query-builder metric query reads: its metric
    (``aggregations[0].metricName``), its filter, and ``!=""`` for each group-by label (a table
    row or pie slice per value needs the label). Only the filter form the generator writes
    (``key = $var`` / ``key = 'text'`` joined by AND) is understood; anything else raises."""
    (aggregation,) = query["aggregations"]
    matchers = [json.dumps(aggregation["metricName"])]
    expression = query.get("filter", {}).get("expression", "").strip()
    for term in re.split(r"\s+AND\s+", expression) if expression else []:
        found = _FILTER_TERM.match(term)
        if not found:
            raise ValueError(f"builder filter term {term!r} is not `key = $var` or `key = 'text'`")
        key, value = found.groups()
        matchers.append(f"{json.dumps(key)}={json.dumps(value.strip(chr(39)))}")
    matchers += [f'{json.dumps(group["key"])}!=""' for group in query.get("groupBy", [])]
    return "{" + ", ".join(matchers) + "}"


def signoz_dashboard_expressions(path: Path, reasons: dict | None = None) -> list[Expr]:
    reasons = _builder_reasons() if reasons is None else reasons
    dash = json.loads(path.read_text(encoding="utf-8"))
    rel = str(path.relative_to(ROOT))
    out = []
    for widget in dash["widgets"]:
        query = widget.get("query")
        if not query:
            continue
        if query.get("queryType") == "promql":
            for promql in query["promql"]:
                if promql.get("disabled"):
                    continue
                where = f"{widget['title']} / {promql['name']}"
                out.append(Expr("signoz-dashboard", "signoz", rel, f"{dash['title']} / {where}", promql["query"],
                                reasons.get(("signoz", dash["title"], where))))
        elif query.get("queryType") == "builder":
            # disabled builder queries still run: they feed the widget's formula
            for data in query["builder"]["queryData"]:
                where = f"{widget['title']} / {data['queryName']}"
                out.append(Expr("signoz-dashboard", "signoz", rel, f"{dash['title']} / {where}", builder_selector(data),
                                reasons.get(("signoz", dash["title"], where)), builder=True))
    return out


def signoz_alert_expressions(path: Path, reasons: dict | None = None) -> list[Expr]:
    reasons = _builder_reasons() if reasons is None else reasons
    rule = json.loads(path.read_text(encoding="utf-8"))
    rel = str(path.relative_to(ROOT))
    envelopes = rule["condition"]["compositeQuery"]["queries"]
    return [Expr("signoz-alert", "signoz", rel, f"{rule['alert']} / {e['spec']['name']}", e["spec"]["query"],
                 reasons.get(("signoz", "alert", rule["alert"])))
            for e in sorted(envelopes, key=lambda e: e["spec"]["name"])
            if e["type"] == "promql" and not e["spec"].get("disabled")]


def extract_all(root: Path = ROOT) -> list[Expr]:
    """Every expression in the committed Grafana/SigNoz dashboards and alert rules."""
    if root != ROOT:
        raise ValueError("extract_all reads the repository it lives in")
    reasons = _builder_reasons()
    out: list[Expr] = []
    for path in sorted(GRAFANA_DASHBOARDS.glob("*.json")):
        out += grafana_expressions(path, reasons)
    for path in sorted(PROMETHEUS_RULES.glob("*.yml")):
        out += prometheus_rule_expressions(path)
    for path in sorted(SIGNOZ_DASHBOARDS.glob("*.json")):
        out += signoz_dashboard_expressions(path, reasons)
    for path in sorted(SIGNOZ_ALERTS.glob("*.json")):
        out += signoz_alert_expressions(path, reasons)
    return out


# -- the Prometheus 3 parser (for SigNoz's UTF-8 syntax) ----------------------------------------


def build_v3_parser(out_dir: Path, timeout: float = 600.0) -> Path:
    """Build tests/monitoring/promqlparse (Go; Prometheus 3's promql/parser) into ``out_dir``.

    Uses the Go toolchain the collector build needs; modules come from the Go module cache or
    proxy (the pinned prometheus module is the one the collector already depends on).
    """
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise RuntimeError("Go is not installed (needed for collector/build.sh as well): cannot build promqlparse")
    binary = out_dir / "promqlparse"
    env = dict(os.environ, CGO_ENABLED="0")
    result = subprocess.run([go, "build", "-o", str(binary), "."], cwd=PARSER_SOURCE, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"go build promqlparse failed:\n{result.stderr}")
    return binary


def parse_v3(binary: Path, exprs: list[str], timeout: float = 60.0) -> list[dict]:
    """Parse with Prometheus 3's parser: one {"error"} or {"selectors": [...], "labels": [...]}
    per expression ("labels": the result's label names where the expression fixes them)."""
    result = subprocess.run([str(binary)], input=json.dumps(exprs), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"promqlparse failed: {result.stderr}")
    parsed = json.loads(result.stdout)
    assert len(parsed) == len(exprs)
    return parsed


# -- what SigNoz would store -------------------------------------------------------------------


def signoz_series(sink_file: Path) -> list[dict[str, str]]:
    """The label sets SigNoz stores for the OTLP metrics in the sink's file.

    Names as the OTel instrument names (SigNoz does not normalise them); histograms as
    <name>.bucket (with le, +Inf included), <name>.count and <name>.sum; labels = data point
    attributes + resource attributes, keys unchanged (dots stay).
    """
    series: dict[tuple, dict[str, str]] = {}

    def add(labels: dict[str, str]) -> None:
        series.setdefault(tuple(sorted(labels.items())), labels)

    for line in sink_file.read_text().splitlines():
        request = json.loads(line)
        for rm in request.get("resourceMetrics", []):
            resource = {a["key"]: _value(a["value"]) for a in rm.get("resource", {}).get("attributes", [])}
            for sm in rm.get("scopeMetrics", []):
                for metric in sm.get("metrics", []):
                    name = metric["name"]
                    for kind in ("sum", "gauge"):
                        for dp in metric.get(kind, {}).get("dataPoints", []):
                            add({**resource, **_attrs(dp), "__name__": name})
                    for dp in metric.get("histogram", {}).get("dataPoints", []):
                        base = {**resource, **_attrs(dp)}
                        add({**base, "__name__": name + ".count"})
                        add({**base, "__name__": name + ".sum"})
                        for bound in [*dp.get("explicitBounds", []), "+Inf"]:
                            add({**base, "__name__": name + ".bucket", "le": _le(bound)})
    return list(series.values())


def _value(v: dict) -> str:
    (raw,) = v.values() if v else ("",)
    return str(raw).lower() if isinstance(raw, bool) else str(raw)


def _attrs(dp: dict) -> dict[str, str]:
    return {a["key"]: _value(a["value"]) for a in dp.get("attributes", [])}


def _le(bound: float | str) -> str:
    # The queries never filter on a bucket's value, only group by le; any stable format will do.
    return bound if isinstance(bound, str) else repr(float(bound))


def selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """Whether a series (label set) matches a selector from :func:`parse_v3` (regexes anchored)."""
    for m in selector["matchers"]:
        value = labels.get(m["name"], "")
        if m["type"] == "=" and value != m["value"]:
            return False
        if m["type"] == "!=" and value == m["value"]:
            return False
        if m["type"] == "=~" and not re.fullmatch(m["value"], value):
            return False
        if m["type"] == "!~" and re.fullmatch(m["value"], value):
            return False
    return True
