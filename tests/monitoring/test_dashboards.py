"""The generated files (dashboards, alert rules, doc tables): committed = generator output, and well-formed.

The generator (``python -m monitoring.generate``) runs into a temp dir and every file is compared
byte for byte with the committed one, so a hand edit of generated output (or a generator change
without regenerating) fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "monitoring" / "grafana"
SIGNOZ = ROOT / "signoz"
RULES = ROOT / "monitoring" / "prometheus" / "alerts"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from monitoring.generate import alerts, cli, grafana, model, signoz  # noqa: E402

GRAFANA_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
SIGNOZ_DASHBOARDS = sorted((SIGNOZ / "dashboards").glob("*.json"))
SIGNOZ_RULES = sorted((SIGNOZ / "alerts").glob("*.json"))
RULE_FILES = sorted(RULES.glob("*.yml"))
DOCUMENTS = [ROOT / "docs" / "DESIGN.md", ROOT / "monitoring" / "README.md"]
REGENERATE = "run `make dashboards` (python -m monitoring.generate)"


def test_committed_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "monitoring.generate", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(ROOT) for p in [*GRAFANA_FILES, *SIGNOZ_DASHBOARDS, *SIGNOZ_RULES, *RULE_FILES, *DOCUMENTS])
    assert generated == committed, f"generated and committed file sets differ: {REGENERATE}"
    for rel in generated:
        assert (tmp_path / rel).read_bytes() == (ROOT / rel).read_bytes(), f"{rel} is stale: {REGENERATE}"


@pytest.mark.parametrize("victim", ["monitoring/grafana/dashboards/api-performance.json",
                                    "monitoring/prometheus/alerts/trader.yml", "docs/DESIGN.md"])
def test_check_mode_detects_a_stale_file(tmp_path: Path, victim: str) -> None:
    """--check (the `make dashboards-check` command) passes on fresh output and fails on an edit."""
    cli.write(tmp_path)
    assert cli.main(["--check", "--out", str(tmp_path)]) == 0
    path = tmp_path / victim
    text = path.read_text()
    edited = text.replace("P95 Latency", "P95 latency (edited)").replace("for: 5m", "for: 6m").replace(
        "| `orders_total` |", "| `orders` |")
    assert edited != text
    path.write_text(edited)
    assert cli.main(["--check", "--out", str(tmp_path)]) == 1


def test_check_mode_detects_a_file_that_is_not_generated(tmp_path: Path) -> None:
    cli.write(tmp_path)
    (tmp_path / "monitoring/prometheus/alerts/extra.yml").write_text("groups: []\n")
    assert cli.stale(tmp_path) == ["monitoring/prometheus/alerts/extra.yml (not generated: remove it)"]


def test_rule_files_read_back_as_described() -> None:
    """The hand-written YAML of the generator means what the alert description says."""
    rules = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                rules[rule["alert"]] = (group["name"], rule)
    assert sorted(rules) == sorted(a.name for a in alerts.ALERTS)
    for alert in alerts.ALERTS:
        group, rule = rules[alert.name]
        assert group == alert.group
        assert rule == {"alert": alert.name, "expr": alert.prometheus_expr(), "for": alert.for_,
                        "labels": {"severity": alert.severity},
                        "annotations": {"summary": alert.summary, "description": alert.description}}


def test_four_dashboards_per_backend() -> None:
    titles = {json.loads(p.read_text())["title"] for p in GRAFANA_FILES}
    assert titles == {"Trading Overview", "API Performance", "FastAPI Metrics", "Telemetry Pipeline Health", "Bot Health",
                      "Exchanges"}
    assert {p.name for p in SIGNOZ_DASHBOARDS} == {p.name for p in GRAFANA_FILES}


def _row_panels(dash: dict, row_title: str) -> list[str]:
    """Titles of the panels under the row `row_title` (up to the next row)."""
    titles, inside = [], False
    for panel in dash["panels"]:
        if panel["type"] == "row":
            inside = panel["title"] == row_title
        elif inside:
            titles.append(panel["title"])
    return titles


def test_the_panels_users_rely_on_are_all_there() -> None:
    """The trading overview, API performance and FastAPI application panels the users' guides describe."""
    trading = json.loads((GRAFANA / "dashboards" / "trading-overview.json").read_text())
    assert _row_panels(trading, "Trading overview") == [
        "Orders (24h)", "Open Positions", "Realized Profit", "WebSocket Connections", "Orders by Side",
        "Orders by Status", "Orders by Exchange", "PnL Over Time", "Open Positions by Symbol",
        "WebSocket Connections Over Time",
    ]
    api = json.loads((GRAFANA / "dashboards" / "api-performance.json").read_text())
    assert _row_panels(api, "API performance") == [
        "API Status", "Request Rate", "P50 Latency", "P95 Latency", "P99 Latency", "Error Rate",
        "Latency by Endpoint", "Request Rate by Endpoint", "Request Rate by Method", "Response Status Codes",
        "P95 Latency Bar Gauge",
    ]
    fastapi = json.loads((GRAFANA / "dashboards" / "fastapi-metrics.json").read_text())
    assert _row_panels(fastapi, "FastAPI application metrics") == [
        "Request Rate", "Request Duration", "Total Requests per Second", "Response Status Codes", "Requests by Endpoint",
    ]


def _overlaps(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


@pytest.mark.parametrize("path", GRAFANA_FILES, ids=lambda p: p.name)
def test_grafana_dashboard_is_well_formed(path: Path) -> None:
    dash = json.loads(path.read_text())
    assert dash["schemaVersion"] == grafana.SCHEMA_VERSION
    assert dash["uid"].startswith("otel-trader-") and len(dash["uid"]) <= 40
    assert dash["id"] is None, "provisioned dashboards must not carry a database id"
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    grids = []
    for panel in panels:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["w"] > 0 and grid["h"] > 0
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the 24-column grid"
        assert all(not _overlaps(grid, other) for other in grids), f"{panel['title']} overlaps another panel"
        grids.append(grid)
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "gauge", "piechart", "bargauge"}
        assert panel["datasource"] == {"type": "prometheus", "uid": model.DATASOURCE_UID}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs)
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"]
            assert target["datasource"]["uid"] == model.DATASOURCE_UID
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == model.DATASOURCE_UID


def test_provisioning_matches_the_dashboards() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["uid"] == model.DATASOURCE_UID and datasource["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "otel-trader.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


@pytest.mark.parametrize("path", SIGNOZ_DASHBOARDS, ids=lambda p: p.name)
def test_signoz_dashboard_is_well_formed(path: Path) -> None:
    dash = json.loads(path.read_text())
    assert dash["version"] == signoz.SIGNOZ_DASHBOARD_VERSION and dash["title"]
    widget_ids = [w["id"] for w in dash["widgets"]]
    assert len(set(widget_ids)) == len(widget_ids)
    assert sorted(item["i"] for item in dash["layout"]) == sorted(widget_ids), "layout and widgets must match one to one"
    grids = []
    for item in dash["layout"]:
        assert item["x"] + item["w"] <= 12, "SigNoz's grid has 12 columns"
        assert all(not _overlaps(item, other) for other in grids)
        grids.append(item)
    for row_id, row in dash["panelMap"].items():
        assert row_id in widget_ids
        assert {w["i"] for w in row["widgets"]} <= set(widget_ids)
    for widget in dash["widgets"]:
        if widget["panelTypes"] == "row":
            continue
        assert widget["panelTypes"] in {"graph", "value", "pie", "table"}
        query = widget["query"]
        # what SigNoz's editor offers per panel type: test_signoz_schema.py
        if widget["panelTypes"] in signoz.SIGNOZ_PROMQL_PANELS:
            assert query["queryType"] == "promql"
            assert query["promql"] and all(q["query"].strip() and q["name"] for q in query["promql"])
        else:
            assert query["queryType"] == "builder"
            assert query["builder"]["queryData"] and all(q["aggregations"][0]["metricName"] for q in query["builder"]["queryData"])
    for var_id, var in dash["variables"].items():
        assert var["id"] == var_id and var["type"] in {"QUERY", "TEXTBOX", "CUSTOM"}


def test_signoz_uses_otel_names_not_prometheus_names() -> None:
    """What SigNoz stores: no _bucket/_count/_sum suffix, no _total added to our runtime counters,
    resource attributes instead of job/instance, dotted SDK metric names."""
    text = "\n".join(p.read_text() for p in [*SIGNOZ_DASHBOARDS, *SIGNOZ_RULES])
    for wrong in ("_bucket", "_count{", "_sum{", "process_cpu_seconds_total", "python_gc_collections_total",
                  "otel_sdk_processor", "job=", "instance=~", "otelcol_exporter_sent_spans_total", "via="):
        assert wrong not in text, f"SigNoz JSON contains the Prometheus-side name {wrong!r}"
    for right in ('http_request_duration_seconds.bucket', '"service.name"', "process_cpu_seconds{",
                  'otel.sdk.processor.span.processed', "otelcol_exporter_sent_spans{"):
        assert right.replace('"', '\\"') in text or right in text, f"SigNoz JSON lacks {right!r}"


def test_signoz_rules_mirror_the_prometheus_alerts() -> None:
    prometheus = set()
    for path in (ROOT / "monitoring" / "prometheus" / "alerts").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            prometheus |= {rule["alert"] for rule in group["rules"]}
    signoz = {}
    for path in SIGNOZ_RULES:
        rule = json.loads(path.read_text())
        signoz[rule["alert"]] = rule
        assert rule["ruleType"] == "promql_rule" and rule["alertType"] == "METRIC_BASED_ALERT"
        condition = rule["condition"]
        assert condition["compositeQuery"]["queryType"] == "promql"
        (query,) = condition["compositeQuery"]["queries"]
        assert query["type"] == "promql" and query["spec"]["name"] == "A" and query["spec"]["query"].strip()
        (threshold,) = condition["thresholds"]["spec"]
        assert threshold["op"] in {"1", "2"} and isinstance(threshold["target"], (int, float))
        assert threshold["matchType"] == "2" and condition["selectedQueryName"] == "A"
        assert rule["labels"]["severity"] in {"critical", "warning"} and threshold["name"] == rule["labels"]["severity"]
    assert set(signoz) == prometheus
