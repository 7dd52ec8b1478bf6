"""The generated dashboards and SigNoz rules: committed JSON = generator output, and well-formed.

The generator runs into a temp dir and every file is compared byte for byte with the
committed one, so a hand edit of the JSON (or a builder change without regenerating) fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "monitoring" / "grafana" / "build_dashboards.py"
GRAFANA = ROOT / "monitoring" / "grafana"
SIGNOZ = ROOT / "signoz"

sys.path.insert(0, str(BUILDER.parent))
import build_dashboards as builder  # noqa: E402

sys.path.pop(0)

GRAFANA_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
SIGNOZ_DASHBOARDS = sorted((SIGNOZ / "dashboards").glob("*.json"))
SIGNOZ_RULES = sorted((SIGNOZ / "alerts").glob("*.json"))


def test_committed_json_is_what_the_builder_generates(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(BUILDER), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.json"))
    committed = sorted(p.relative_to(ROOT) for p in [*GRAFANA_FILES, *SIGNOZ_DASHBOARDS, *SIGNOZ_RULES])
    assert generated == committed, "generated and committed file sets differ: run `python monitoring/grafana/build_dashboards.py`"
    for rel in generated:
        assert (tmp_path / rel).read_bytes() == (ROOT / rel).read_bytes(), (
            f"{rel} is stale: run `python monitoring/grafana/build_dashboards.py`")


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    """--check (the `make dashboards-check` command) passes on fresh output and fails on an edit."""
    builder.write(tmp_path)
    assert builder.main(["--check", "--out", str(tmp_path)]) == 0
    victim = tmp_path / "monitoring/grafana/dashboards/api-performance.json"
    victim.write_text(victim.read_text().replace("P95 Latency", "P95 latency (edited)"))
    assert builder.main(["--check", "--out", str(tmp_path)]) == 1


def test_four_dashboards_per_backend() -> None:
    titles = {json.loads(p.read_text())["title"] for p in GRAFANA_FILES}
    assert titles == {"Trading Overview", "API Performance", "FastAPI Metrics", "Telemetry Pipeline Health"}
    assert {p.name for p in SIGNOZ_DASHBOARDS} == {p.name for p in GRAFANA_FILES}


def _seed_panels(dash: dict, row_title: str) -> list[str]:
    """Titles of the panels under the row `row_title` (up to the next row)."""
    titles, inside = [], False
    for panel in dash["panels"]:
        if panel["type"] == "row":
            inside = panel["title"] == row_title
        elif inside:
            titles.append(panel["title"])
    return titles


def test_seed_001_panels_are_all_there() -> None:
    trading = json.loads((GRAFANA / "dashboards" / "trading-overview.json").read_text())
    assert _seed_panels(trading, "Trading overview (seed 001)") == [
        "Orders (24h)", "Open Positions", "Realized Profit", "WebSocket Connections", "Orders by Side",
        "Orders by Status", "Orders by Exchange", "PnL Over Time", "Open Positions by Symbol",
        "WebSocket Connections Over Time",
    ]
    api = json.loads((GRAFANA / "dashboards" / "api-performance.json").read_text())
    assert _seed_panels(api, "API performance (seed 001)") == [
        "API Status", "Request Rate", "P50 Latency", "P95 Latency", "P99 Latency", "Error Rate",
        "Latency by Endpoint", "Request Rate by Endpoint", "Request Rate by Method", "Response Status Codes",
        "P95 Latency Bar Gauge",
    ]
    fastapi = json.loads((GRAFANA / "dashboards" / "fastapi-metrics.json").read_text())
    assert _seed_panels(fastapi, "FastAPI application metrics (seed 003)") == [
        "Request Rate", "Request Duration", "Total Requests per Second", "Response Status Codes", "Requests by Endpoint",
    ]


def _overlaps(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


@pytest.mark.parametrize("path", GRAFANA_FILES, ids=lambda p: p.name)
def test_grafana_dashboard_is_well_formed(path: Path) -> None:
    dash = json.loads(path.read_text())
    assert dash["schemaVersion"] == builder.SCHEMA_VERSION
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
        assert panel["datasource"] == {"type": "prometheus", "uid": builder.DATASOURCE_UID}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs)
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"]
            assert target["datasource"]["uid"] == builder.DATASOURCE_UID
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == builder.DATASOURCE_UID


def test_provisioning_matches_the_dashboards() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["uid"] == builder.DATASOURCE_UID and datasource["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "otel-trader.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


@pytest.mark.parametrize("path", SIGNOZ_DASHBOARDS, ids=lambda p: p.name)
def test_signoz_dashboard_is_well_formed(path: Path) -> None:
    dash = json.loads(path.read_text())
    assert dash["version"] == builder.SIGNOZ_DASHBOARD_VERSION and dash["title"]
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
        if widget["panelTypes"] in builder.SIGNOZ_PROMQL_PANELS:
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
