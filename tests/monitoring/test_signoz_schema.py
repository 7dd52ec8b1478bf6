"""SigNoz v0.119.0 accepts every SigNoz file we ship, and its alert texts show real label values.

The checker is tests/monitoring/signoz_schema.py: SigNoz's own validation at the tag v0.119.0
(github.com/SigNoz/signoz), mirrored in Python; its docstring and comments name the Go/TS source
of each rule. SigNoz itself cannot run here (no Docker); these tests pin what its code requires:

* alert rules: ``POST /api/v1/rules`` = pkg/query-service/rules/manager.go (CreateRule) ->
  pkg/types/ruletypes/api_params.go (PostableRule.UnmarshalJSON, validate, Validate,
  validateV2Alpha1), threshold.go, evaluation.go, and the v5 query envelope of
  pkg/types/querybuildertypes/querybuildertypesv5/req.go + prom_query.go;
* alert texts: pkg/types/ruletypes/templates.go (preprocessTemplate, AlertTemplateData) with the
  label map of pkg/query-service/rules/prom_rule.go (Eval);
* dashboards: pkg/modules/dashboard/impldashboard/handler.go (Create: v5 is stored as is),
  frontend/src/container/NewWidget/utils.ts (PANEL_TYPE_TO_QUERY_TYPES: no PromQL for table and
  pie), frontend/src/api/v5/queryRange/prepareQueryRangePayloadV5.ts (widget -> v5 request) and
  querybuildertypesv5/validation.go (what the query service accepts).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
from promql import ROOT, SIGNOZ_ALERTS, SIGNOZ_DASHBOARDS, parse_v3
from signoz_schema import (
    SIGNOZ_TAG,
    alert_labels,
    check_dashboard,
    check_rule,
    expand_template,
    label_references,
    template_data_labels,
)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from monitoring.generate import catalog  # noqa: E402

HERE = Path(__file__).resolve().parent
RULES = sorted(SIGNOZ_ALERTS.glob("*.json"))
DASHBOARDS = sorted(SIGNOZ_DASHBOARDS.glob("*.json"))
#: A rule as we shipped it for SigNoz's pre-v5 rule API (version v4, condition.compositeQuery.promQueries).
V4_RULE = HERE / "fixtures" / "signoz_rule_v4.json"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_files_exist() -> None:
    assert SIGNOZ_TAG == "v0.119.0" and "v0.119.0" in (ROOT / "signoz" / "README.md").read_text()
    from monitoring.generate.alerts import ALERTS
    from monitoring.generate.dashboards import dashboards

    assert len(RULES) == len(ALERTS) >= 24 and len(DASHBOARDS) == len(dashboards()) >= 5


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.name)
def test_signoz_rule_api_accepts_the_rule(path: Path) -> None:
    """POST /api/v1/rules would answer 200 and the rule task would start (signoz_schema.check_rule)."""
    assert check_rule(_load(path)) == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_signoz_imports_the_dashboard_and_can_edit_every_widget(path: Path) -> None:
    """Stored as is (v5), every widget's query type offered by its panel's editor, every builder
    widget a valid v5 query_range request (signoz_schema.check_dashboard)."""
    assert check_dashboard(_load(path)) == []


def test_rule_texts_name_labels_the_alert_series_carries(v3_parser: Path) -> None:
    """Each label a summary/description uses is one the rule's query result carries (its `by`
    labels, from Prometheus 3's parser), so SigNoz renders a value, not an empty string."""
    rules = [_load(p) for p in RULES]
    queries = [r["condition"]["compositeQuery"]["queries"][0]["spec"]["query"] for r in rules]
    problems, used = [], 0
    for rule, parsed in zip(rules, parse_v3(v3_parser, queries), strict=True):
        threshold = rule["condition"]["thresholds"]["spec"][0]["name"]
        for key, text in rule["annotations"].items():
            refs = label_references(text)
            if not refs:
                continue
            used += 1
            if parsed.get("labels") is None:
                problems.append(f"{rule['alert']}.{key}: the query does not fix its result labels")
                continue
            labels = alert_labels(parsed["labels"], threshold)
            data = template_data_labels(labels)
            missing = [r for r in refs if r not in data]
            if missing:
                problems.append(f"{rule['alert']}.{key}: {text!r} uses {missing}, the result has {sorted(labels)}")
            rendered = expand_template(text, labels)
            assert all(data[r] in rendered for r in refs if r in data), rendered
    assert not problems, "\n".join(problems)
    assert used >= 12  # the alerts whose summary names the service, exporter or receiver


def test_builder_widgets_query_what_the_grafana_panel_queries() -> None:
    """A table/pie rewritten as query-builder queries keeps the panel's meaning: the metrics and
    group-by labels of the Grafana panel of the same title (Prometheus names mapped to OTel)."""
    otel_to_prom = {m.otel: m.prom for m in catalog.METRICS.values()}
    label_to_prom = {v: k for k, v in catalog.SIGNOZ_LABELS.items()}
    grafana = {}
    for path in (ROOT / "monitoring" / "grafana" / "dashboards").glob("*.json"):
        for panel in _load(path)["panels"]:
            grafana[(path.name, panel["title"])] = " ".join(t["expr"] for t in panel.get("targets", []))
    checked = 0
    for path in DASHBOARDS:
        for widget in _load(path)["widgets"]:
            if widget.get("query", {}).get("queryType") != "builder":
                continue
            expr = grafana[(path.name, widget["title"])]
            for data in widget["query"]["builder"]["queryData"]:
                metric = data["aggregations"][0]["metricName"]
                base, _, part = metric.rpartition(".") if metric.endswith((".bucket", ".sum", ".count")) else (metric, "", "")
                prom = otel_to_prom[base] + (f"_{part}" if part else "")
                assert prom in expr, f"{widget['title']}: {metric} ({prom}) is not in the Grafana query {expr}"
                for group in data["groupBy"]:
                    label = label_to_prom.get(group["key"], group["key"])
                    assert re.search(rf"by \([^)]*\b{re.escape(label)}\b", expr), f"{widget['title']}: by {label}?"
                checked += 1
    assert checked >= 10  # 4 pies, 5 tables (one with a formula over two queries)


# -- the checker against SigNoz's own test cases and our old format ---------------------------


@pytest.mark.parametrize(("text", "labels", "expected"), [
    # pkg/types/ruletypes/templates_test.go at v0.119.0, case by case
    ("test $service.name", {"service.name": "my-service"}, "test my-service"),
    ("test $service.name exceeds {{$threshold}} and observed at {{$value}}", {"service.name": "my-service"},
     "test my-service exceeds 100 and observed at 200"),
    ("test {{.Labels.service_name}} exceeds {{$threshold}} and observed at {{$value}}", {"service.name": "my-service"},
     "test my-service exceeds 100 and observed at 200"),
    ("test {{.Labels.service_name}} exceeds {{$threshold}} and observed at {{$value}}", {"service_name": "my-service"},
     "test my-service exceeds 100 and observed at 200"),
    ("test {{.Labels.missing_key}} exceeds {{$threshold}} and observed at {{$value}}", {"service_name": "my-service"},
     "test  exceeds 100 and observed at 200"),
    ("test {{.Labels.service.name}} exceeds {{$threshold}} and observed at {{$value}}", {"service.name": "my-service"},
     "test my-service exceeds 100 and observed at 200"),
    ("test {{$service.name}} exceeds {{$threshold}} and observed at {{$value}}", {"service.name": "my-service"},
     "test my-service exceeds 100 and observed at 200"),
    # the Prometheus form looks up a label literally named "labels.service.name"
    ("High error rate on {{$labels.service.name}}", {"service.name": "my-service"}, "High error rate on "),
])
def test_template_mirror_matches_signoz_own_tests(text: str, labels: dict[str, str], expected: str) -> None:
    assert expand_template(text, labels, value="200", threshold="100") == expected


def test_the_v4_rule_format_is_rejected_as_signoz_rejects_it() -> None:
    """The answers SigNoz v0.119.0 gives to the rule format we shipped before (version v4,
    promQueries): the version, then, with only the version changed, the missing v5 queries."""
    old = _load(V4_RULE)
    assert check_rule(old) == ['version: only v5 is supported, got "v4"',
                               "condition.compositeQuery.queries: must have at least one query"]
    old["version"] = "v5"
    assert check_rule(old) == ["condition.compositeQuery.queries: must have at least one query"]
    assert expand_template(old["annotations"]["summary"], alert_labels(["service.name"], "warning")) == "High error rate on "


def _rule() -> dict:
    return _load(SIGNOZ_ALERTS / "high-error-rate.json")


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda r: r.pop("version"), 'version: only v5 is supported, got ""'),
    (lambda r: r["condition"]["compositeQuery"]["queries"][0]["spec"].update(step_interval=60),
     'unknown field "step_interval" in PromQL spec'),
    (lambda r: r["condition"]["compositeQuery"]["queries"][0].update(name="A"), 'unknown field "name"'),
    (lambda r: r["condition"]["compositeQuery"]["queries"][0]["spec"].update(query=""),
     "invalid PromQL query 'A': PromQL query is required"),
    (lambda r: r["condition"]["compositeQuery"]["queries"][0].update(type="prom"), 'unknown query type "prom"'),
    (lambda r: r["condition"].pop("thresholds"), 'condition.thresholds: field is required for schemaVersion "v2alpha1"'),
    (lambda r: r.pop("evaluation"), 'evaluation: field is required for schemaVersion "v2alpha1"'),
    (lambda r: r.pop("notificationSettings"), 'notificationSettings: field is required for schemaVersion "v2alpha1"'),
    (lambda r: r.pop("schemaVersion"), 'condition.target: field is required for schemaVersion "v1"'),
    (lambda r: r["condition"]["thresholds"]["spec"][0].update(op="higher"), 'condition.op: unsupported value "higher"'),
    (lambda r: r["condition"]["thresholds"]["spec"][0].update(matchType="always"),
     'condition.matchType: unsupported value "always"'),
    (lambda r: r["condition"]["thresholds"]["spec"][0].pop("target"), "target value cannot be nil"),
    (lambda r: r["condition"]["thresholds"].update(spec=[]), "condition.thresholds.spec: must have at least one threshold"),
    (lambda r: r["evaluation"]["spec"].update(evalWindow="0s"),
     "failed to validate rolling window: evalWindow must be greater than zero"),
    (lambda r: r["evaluation"]["spec"].update(frequency="1 minute"), "failed to unmarshal rolling window: invalid duration"),
    (lambda r: r["notificationSettings"]["renotify"].update(alertStates=["resolved"]), "invalid alert state: resolved"),
    (lambda r: r["condition"].update(selectedQueryName="B"),
     'condition.selectedQueryName: "B" does not match any query in compositeQuery'),
    (lambda r: r["labels"].update({"team-name": "x"}), "invalid label name: team-name"),
    (lambda r: r["annotations"].update(summary="{{$service.name"), "template parsing error: unbalanced {{ }}"),
    (lambda r: r.update(alertType="METRIC"), 'alertType: unsupported value "METRIC"'),
    (lambda r: r["condition"].update(target="0.05"), "failed to parse json: condition.target: cannot unmarshal"),
])
def test_rule_checker_fails_where_signoz_fails(mutate, expected: str) -> None:
    rule = _rule()
    assert check_rule(rule) == []
    mutate(rule)
    assert expected in check_rule(rule)


def _dashboard() -> dict:
    return _load(SIGNOZ_DASHBOARDS / "trading-overview.json")


def _widget(dash: dict, title: str) -> dict:
    return next(w for w in dash["widgets"] if w["title"] == title)


def _promql_pie(dash: dict) -> None:
    pie = _widget(dash, "Orders by Side")
    pie["query"]["queryType"] = "promql"
    pie["query"]["promql"] = [{"name": "A", "query": 'sum by (side) (increase(orders_total[24h]))', "legend": "", "disabled": False}]


@pytest.mark.parametrize(("mutate", "expected"), [
    (_promql_pie, "Orders by Side: a pie panel's editor offers ['builder', 'clickhouse_sql'], not 'promql'"),
    (lambda d: _widget(d, "Open Positions by Symbol").update(panelTypes="bargauge"),
     "Open Positions by Symbol: unknown panel type 'bargauge'"),
    (lambda d: d.update(version="v4"), "version 'v4': the import migrates it as v4 (version \"v5\" is kept as is)"),
    (lambda d: _widget(d, "Orders by Side")["query"]["builder"]["queryData"][0]["aggregations"][0].update(metricName=""),
     "Orders by Side: invalid query 'A': metric name is required for aggregation #1 in query 'A'"),
    (lambda d: _widget(d, "Orders by Side")["query"]["builder"]["queryData"][0]["aggregations"][0].update(spaceAggregation="total"),
     "Orders by Side: invalid query 'A': invalid space aggregation, should be one of the following: "
     "[`sum`, `avg`, `min`, `max`, `count`, `p50`, `p75`, `p90`, `p95`, `p99`]"),
    (lambda d: _widget(d, "Orders by Side")["query"]["builder"]["queryData"][0].update(disabled=True),
     "Orders by Side: all queries are disabled - at least one query must be enabled"),
    (lambda d: _widget(d, "Orders by Side").update(timePreferance="LAST_24_HR"),
     "Orders by Side: unknown timePreferance 'LAST_24_HR'"),
    (lambda d: _widget(d, "Orders by Side")["query"]["builder"]["queryData"][0]["filter"].update(
        expression="service.name = $service"), "Orders by Side: uses undefined dashboard variables ['service']"),
    (lambda d: d["layout"].pop(), "layout and widgets must match one to one"),
])
def test_dashboard_checker_fails_where_signoz_would_change_or_refuse_it(mutate, expected: str) -> None:
    dash = _dashboard()
    assert check_dashboard(dash) == []
    mutate(dash)
    assert expected in check_dashboard(dash)


def test_formula_checker_fails_on_unknown_queries() -> None:
    dash = _load(SIGNOZ_DASHBOARDS / "fastapi-metrics.json")
    widget = _widget(dash, "Average Response Time by Path (5m)")
    assert widget["query"]["builder"]["queryFormulas"][0]["expression"] == "A / B"
    broken = copy.deepcopy(dash)
    _widget(broken, widget["title"])["query"]["builder"]["queryFormulas"][0]["expression"] = "A / C"
    assert f"{widget['title']}: formula F1: unknown query C" in check_dashboard(broken)
