"""Grafana dashboard JSON (Grafana 10.4 / 11, ``schemaVersion`` 39) from a :class:`~.model.Dashboard`."""

from __future__ import annotations

from .dialect import PROM
from .model import DATASOURCE, Dashboard, Panel

#: Grafana 10.4 / 11 dashboard JSON.
SCHEMA_VERSION = 39


def _layout(panels: list[Panel]) -> list[tuple[Panel, dict]]:
    """Left-to-right, top-to-bottom on Grafana's 24-column grid; a row starts a new line."""
    placed = []
    x = y = line_h = 0
    for panel in panels:
        if panel.kind == "row" or x + panel.w > 24:
            y += line_h
            x = line_h = 0
        placed.append((panel, {"h": panel.h, "w": panel.w, "x": x, "y": y}))
        if panel.kind == "row":
            y += panel.h
        else:
            x += panel.w
            line_h = max(line_h, panel.h)
    return placed


def _field_config(panel: Panel) -> dict:
    defaults: dict = {
        "unit": panel.unit,
        "color": {"mode": "thresholds" if panel.kind in ("stat", "gauge", "bargauge") else "palette-classic"},
        "thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in panel.thresholds]},
        "mappings": list(panel.mappings),
    }
    for key in ("min", "max", "decimals"):
        if getattr(panel, key) is not None:
            defaults[key] = getattr(panel, key)
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stack else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
    return {"defaults": defaults, "overrides": []}


_REDUCE = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def _options(panel: Panel) -> dict:
    if panel.kind == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"}}
    if panel.kind == "stat":
        return {"reduceOptions": _REDUCE, "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                "orientation": "auto", "textMode": "auto"}
    if panel.kind == "gauge":
        return {"reduceOptions": _REDUCE, "orientation": "auto", "showThresholdLabels": False, "showThresholdMarkers": True}
    if panel.kind == "bargauge":
        return {"reduceOptions": _REDUCE, "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True}
    if panel.kind == "piechart":
        return {"reduceOptions": _REDUCE, "pieType": "pie",
                "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["value", "percent"]},
                "tooltip": {"mode": "single", "sort": "none"}}
    raise ValueError(panel.kind)


def grafana_dashboard(dash: Dashboard) -> dict:
    panels = []
    for number, (panel, grid) in enumerate(_layout(dash.panels), start=1):
        if panel.kind == "row":
            panels.append({"id": number, "type": "row", "title": panel.title, "collapsed": False, "gridPos": grid, "panels": []})
            continue
        assert panel.queries is not None
        instant = panel.kind in ("piechart", "bargauge")
        targets = []
        for ref, query in enumerate(panel.queries(PROM)):
            targets.append({
                "refId": chr(ord("A") + ref),
                "datasource": DATASOURCE,
                "editorMode": "code",
                "expr": query.expr,
                "legendFormat": query.legend or "__auto",
                "range": not instant,
                "instant": instant,
            })
        panels.append({
            "id": number,
            "type": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "datasource": DATASOURCE,
            "gridPos": grid,
            "targets": targets,
            "fieldConfig": _field_config(panel),
            "options": _options(panel),
        })
    return {
        "id": None,
        "uid": dash.uid,
        "title": dash.title,
        "description": dash.description,
        "tags": dash.tags,
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": dash.refresh,
        "time": {"from": dash.time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [v.grafana for v in dash.variables]},
        "panels": panels,
    }


