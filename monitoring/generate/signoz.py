"""SigNoz JSON in the formats SigNoz v0.119.0 accepts: dashboards (v5) and alert rules (v5 / v2alpha1).

See signoz/README.md, "What SigNoz v0.119.0 accepts"; tests/monitoring/signoz_schema.py checks
these against SigNoz's source.
"""

from __future__ import annotations

import uuid

from .alerts import Alert, signoz_text
from .catalog import METRICS, check_label, scope
from .dialect import SIGNOZ
from .model import Builder, Dashboard, Query

_NS = uuid.UUID("6f1e0b52-5d3c-4f7a-9a57-0e1f3c2b7d10")

_SIGNOZ_PANEL = {"timeseries": "graph", "stat": "value", "gauge": "value", "piechart": "pie", "bargauge": "table"}
_SIGNOZ_UNIT = {"short": "none", "reqpm": "reqpm", "reqps": "reqps", "ops": "ops"}
#: Panel types whose editor offers PromQL in SigNoz v0.119.0 (PANEL_TYPE_TO_QUERY_TYPES in
#: frontend/src/container/NewWidget/utils.ts); a table or pie needs query-builder queries.
SIGNOZ_PROMQL_PANELS = frozenset({"graph", "value", "bar", "histogram", "trace"})
#: The dashboard JSON version: "v5" is the query-builder format the widgets are written in
#: (aggregations, filter expressions); SigNoz's import migrates anything else from v4 first.
SIGNOZ_DASHBOARD_VERSION = "v5"


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


#: The unused tabs of a widget's query (SigNoz's editor keeps one empty query per tab).
_EMPTY_QUERY = {"name": "A", "query": "", "legend": "", "disabled": False}


def _promql_query(queries: list[Query]) -> dict:
    return {
        "queryType": "promql",
        "promql": [{"name": chr(ord("A") + i), "query": qq.expr, "legend": qq.legend, "disabled": False}
                   for i, qq in enumerate(queries)],
        "builder": {"queryData": [], "queryFormulas": []},
        "clickhouse_sql": [dict(_EMPTY_QUERY)],
    }


def _group_key(label: str) -> dict:
    """A group-by key as the query builder stores it; resource attributes have their own context."""
    context = "resource" if label.startswith("service.") else "tag"
    return {"key": label, "dataType": "string", "type": context, "isColumn": False, "isJSON": False,
            "id": f"{label}--string--{context}--false"}


def _builder_query(spec: Builder) -> dict:
    """A widget's query in the v5 query-builder form (SigNoz's own v5 dashboards write the same)."""
    data = []
    for i, bq in enumerate(spec.queries):
        name = chr(ord("A") + i)
        m = METRICS[bq.metric]
        service = "$service_name" if scope(bq.metric) == "app" else "$collector_service"
        for label in bq.by:
            check_label(bq.metric, label)
        labels = [SIGNOZ.label_key(label) for label in bq.by]
        data.append({
            "queryName": name,
            "expression": name,
            "dataSource": "metrics",
            "source": "",
            "aggregations": [{
                "metricName": f"{m.otel}.{bq.part}" if bq.part else m.otel,
                # empty: SigNoz looks the temporality up (ours are all cumulative)
                "temporality": "",
                "timeAggregation": bq.time,
                "spaceAggregation": bq.space,
                "reduceTo": bq.reduce,
            }],
            "filter": {"expression": f"service.name = {service}"},
            "groupBy": [_group_key(label) for label in labels],
            "having": {"expression": ""},
            "functions": [],
            "orderBy": [],
            "limit": None,
            "stepInterval": 60,
            "legend": " ".join("{{" + label + "}}" for label in labels),
            "disabled": bq.hidden,
        })
    formulas = []
    if spec.formula:
        legend = data[0]["legend"]
        formulas.append({"queryName": "F1", "expression": spec.formula, "legend": legend, "disabled": False})
    return {
        "queryType": "builder",
        "promql": [dict(_EMPTY_QUERY)],
        "builder": {"queryData": data, "queryFormulas": formulas},
        "clickhouse_sql": [dict(_EMPTY_QUERY)],
    }


def signoz_dashboard(dash: Dashboard) -> dict:
    widgets: list[dict] = []
    layout: list[dict] = []
    panel_map: dict[str, dict] = {}
    current_row: str | None = None
    x = y = line_h = 0
    for panel in dash.panels:
        if panel.grafana_only:
            continue
        # SigNoz's grid has 12 columns
        w, h = max(1, panel.w // 2), max(2, round(panel.h * 3 / 4))
        widget_id = _id(dash.slug, panel.title, str(len(widgets)))
        if panel.kind == "row" or x + w > 12:
            y += line_h
            x = line_h = 0
        if panel.kind == "row":
            widgets.append({"id": widget_id, "panelTypes": "row", "title": panel.title, "description": ""})
            layout.append({"i": widget_id, "x": 0, "y": y, "w": 12, "h": 1, "minW": 12, "minH": 1, "maxH": 1,
                           "moved": False, "static": False})
            panel_map[widget_id] = {"collapsed": False, "widgets": []}
            current_row = widget_id
            y += 1
            continue
        panel_type = _SIGNOZ_PANEL[panel.kind]
        if panel.signoz is not None:
            query = _builder_query(panel.signoz)
        elif panel_type in SIGNOZ_PROMQL_PANELS:
            assert panel.queries is not None
            query = _promql_query(panel.queries(SIGNOZ))
        else:
            raise ValueError(f"{dash.slug}: {panel.title!r}: a SigNoz {panel_type} panel has no PromQL; give it signoz=Builder(...)")
        query["id"] = _id(dash.slug, panel.title, "query")
        widgets.append({
            "id": widget_id,
            "title": panel.title,
            "description": panel.description,
            "panelTypes": panel_type,
            "query": query,
            "yAxisUnit": _SIGNOZ_UNIT.get(panel.unit, panel.unit),
            "decimalPrecision": panel.decimals if panel.decimals is not None else 2,
            "isStacked": panel.stack,
            "stackedBarChart": False,
            "fillSpans": False,
            "nullZeroValues": "zero",
            "opacity": "1",
            "timePreferance": panel.signoz.window if panel.signoz else "GLOBAL_TIME",
            "softMin": panel.min,
            "softMax": panel.max,
            "thresholds": [],
            "selectedLogFields": [],
            "selectedTracesFields": [],
        })
        item = {"i": widget_id, "x": x, "y": y, "w": w, "h": h, "moved": False, "static": False}
        layout.append(item)
        if current_row is not None:
            panel_map[current_row]["widgets"].append(dict(item))
        x += w
        line_h = max(line_h, h)
    variables = {}
    for order, var in enumerate(v for v in dash.variables if v.signoz):
        assert var.signoz is not None
        var_id = _id(dash.slug, "variable", var.signoz["name"])
        variables[var_id] = {
            "id": var_id,
            "key": var_id,
            "name": var.signoz["name"],
            "description": var.signoz.get("description", ""),
            "type": var.signoz["type"],
            "queryValue": var.signoz.get("queryValue", ""),
            "customValue": "",
            "textboxValue": var.signoz.get("textboxValue", ""),
            "selectedValue": var.signoz.get("selectedValue", ""),
            "multiSelect": False,
            "showALLOption": False,
            "allSelected": False,
            "sort": "ASC",
            "order": order,
            "modificationUUID": _id(dash.slug, "variable", var.signoz["name"], "modification"),
        }
    return {
        "title": dash.title,
        "description": dash.description + " (SigNoz: OpenTelemetry metric names; PromQL widgets, query-builder tables and pies.)",
        "tags": dash.tags,
        "version": SIGNOZ_DASHBOARD_VERSION,
        "uploadedGrafana": False,
        "variables": variables,
        "layout": layout,
        "panelMap": panel_map,
        "widgets": widgets,
    }



# -- alert rules ---------------------------------------------------------------------------------

#: The codes SigNoz's alert editor writes (AlertThresholdOperator / AlertThresholdMatchType).
_OPS = {"above": "1", "below": "2"}
ALL_THE_TIMES = "2"  # the condition held for the whole evalWindow: Prometheus' `for`
#: Re-notification while an alert keeps firing: our Alertmanager's repeat_interval per severity
#: (monitoring/alertmanager/alertmanager.yml).
RENOTIFY = {"critical": "1h", "warning": "4h"}



def signoz_rule(alert: Alert) -> dict:
    """A rule as SigNoz v0.119.0's rule API takes it: version v5 (the query envelope), schema
    v2alpha1 (thresholds, evaluation and notification settings in the rule), what its own
    alert editor writes."""
    condition: dict = {
        "compositeQuery": {
            "queryType": "promql",
            "panelType": "graph",
            "queries": [{"type": "promql", "spec": {"name": "A", "query": alert.value(SIGNOZ), "legend": "", "disabled": False}}],
        },
        "selectedQueryName": "A",
        "thresholds": {"kind": "basic", "spec": [{
            # the threshold's name is also the alert's severity label in SigNoz
            "name": alert.severity,
            "target": alert.target,
            "targetUnit": "",
            "op": _OPS[alert.op],
            "matchType": ALL_THE_TIMES,
            "channels": [],
        }]},
    }
    states = ["firing"]
    if alert.absent_minutes:
        condition["alertOnAbsent"] = True
        condition["absentFor"] = alert.absent_minutes
        states.append("nodata")
    return {
        "alert": alert.name,
        "alertType": "METRIC_BASED_ALERT",
        "ruleType": "promql_rule",
        "version": "v5",
        "schemaVersion": "v2alpha1",
        "condition": condition,
        "evaluation": {"kind": "rolling", "spec": {"evalWindow": alert.signoz_window or alert.for_, "frequency": "1m"}},
        "notificationSettings": {
            "groupBy": [],
            "usePolicy": False,
            "renotify": {"enabled": True, "interval": RENOTIFY[alert.severity], "alertStates": states},
        },
        "labels": {"severity": alert.severity},
        "annotations": {
            "summary": alert.signoz_summary or signoz_text(alert.summary),
            "description": alert.signoz_description,
        },
        "disabled": False,
    }


