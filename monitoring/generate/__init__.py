"""otel-trader's generated monitoring assets, from one description each.

    python -m monitoring.generate           # (re)write every generated file ("make dashboards")
    python -m monitoring.generate --check   # exit 1 if a committed file is stale ("make dashboards-check")
    python -m monitoring.generate --out DIR # write under DIR instead of the repository

Writes, relative to the repository root (or DIR):

    monitoring/grafana/dashboards/<slug>.json   Grafana dashboards (Prometheus datasource)       grafana.py
    signoz/dashboards/<slug>.json               SigNoz dashboards (v5: PromQL widgets, builder tables and pies)  signoz.py
    monitoring/prometheus/alerts/<group>.yml    Prometheus alerting rules                        prometheus_rules.py
    signoz/alerts/<slug>.json                   SigNoz alert rules (one v5 PostableRule each)    signoz.py
    docs/DESIGN.md, monitoring/README.md        the metric and alert tables between markers      docs.py

The descriptions: metric names, kinds and labels in ``otel_trader/metric_catalog.py``
(:mod:`.catalog` loads it), panels in :mod:`.dashboards`, alerts in :mod:`.alerts`; every
expression is written once as a function of a :class:`.dialect.Dialect` (our Prometheus' names or
the OTel names SigNoz stores). The SigNoz formats are those SigNoz v0.119.0 accepts (see
signoz/README.md; tests/monitoring/signoz_schema.py checks them against its source).

Plain Python and the standard library only, so the output is deterministic (sorted keys, ids
derived from titles) and tests/monitoring can regenerate it and compare byte for byte.
"""
