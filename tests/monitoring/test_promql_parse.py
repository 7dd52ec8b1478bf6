"""Every PromQL expression in the dashboards and alert rules parses.

* Prometheus-side expressions (Grafana panels and variables, alert rules) go to a real
  Prometheus 2.42 over its HTTP API (/api/v1/query against an empty TSDB): a parse error is
  HTTP 400 ``bad_data``. promtool 2.42 has no parse-only command.
* SigNoz expressions use the UTF-8 syntax for OTel names (``{"a.b"}``, ``"service.name"=``),
  which 2.42 rejects; they go through Prometheus 3's parser (tests/monitoring/promqlparse).
  The Prometheus-side ones do too, so a move to Prometheus 3 would not break them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_server import PrometheusError, PrometheusServer
from promql import GRAFANA_DASHBOARDS, ROOT, SIGNOZ_ALERTS, SIGNOZ_DASHBOARDS, extract_all, parse_v3

EXPRESSIONS = extract_all()
PROMETHEUS_SIDE = [e for e in EXPRESSIONS if e.dialect == "prometheus"]
SIGNOZ_SIDE = [e for e in EXPRESSIONS if e.dialect == "signoz"]


def _walk(node: object, key: str) -> list[str]:
    """Every string value of `key` anywhere in a JSON tree."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                found.append(v)
            found += _walk(v, key)
    elif isinstance(node, list):
        for item in node:
            found += _walk(item, key)
    return found


def _count_key(node: object, key: str) -> int:
    """How many objects anywhere in a JSON tree have `key`."""
    if isinstance(node, dict):
        return (key in node) + sum(_count_key(v, key) for v in node.values())
    if isinstance(node, list):
        return sum(_count_key(item, key) for item in node)
    return 0


def test_extractor_finds_every_expression() -> None:
    """Counted independently: every "expr" in the Grafana JSON, every non-empty "query" in SigNoz
    promql lists and rules, every SigNoz query-builder query (an object with "aggregations"); a
    nested or new place the extractor did not know would differ."""
    grafana = sum(len(_walk(json.loads(p.read_text()), "expr")) for p in GRAFANA_DASHBOARDS.glob("*.json"))
    assert grafana == sum(1 for e in EXPRESSIONS if e.source == "grafana")
    signoz = builder_queries = 0
    for path in [*SIGNOZ_DASHBOARDS.glob("*.json"), *SIGNOZ_ALERTS.glob("*.json")]:
        doc = json.loads(path.read_text())
        signoz += len([q for q in _walk(doc, "query") if q.strip() and not q.startswith("SELECT")])
        builder_queries += _count_key(doc, "aggregations")
    assert builder_queries == sum(1 for e in SIGNOZ_SIDE if e.builder) > 0
    assert signoz + builder_queries == len(SIGNOZ_SIDE)
    rules = sum(
        line.strip().startswith("- alert:")
        for path in (ROOT / "monitoring" / "prometheus" / "alerts").glob("*.yml")
        for line in path.read_text().splitlines()
    )
    assert sum(1 for e in EXPRESSIONS if e.source == "prometheus-rule") == rules >= 15
    assert len(EXPRESSIONS) > 150


@pytest.mark.parametrize("expr", PROMETHEUS_SIDE, ids=str)
def test_prometheus_expression_parses(empty_prometheus: PrometheusServer, expr) -> None:
    rendered = expr.rendered()
    status, body = empty_prometheus.api("query", query=rendered)
    assert status == 200 and body["status"] == "success", f"{expr}\n{rendered}\n{body.get('error')}"


def test_the_prometheus_check_can_fail(empty_prometheus: PrometheusServer) -> None:
    for broken in ("rate(http_requests_total[5m]", "decrease(websocket_connections_total[5m]) > 10",
                   '{"otel.sdk.processor.span.processed"}'):
        status, body = empty_prometheus.api("query", query=broken)
        assert status == 400 and body["errorType"] == "bad_data", broken
    with pytest.raises(PrometheusError):
        empty_prometheus.query("sum by (job (x)")


def test_signoz_expressions_parse(v3_parser: Path) -> None:
    results = parse_v3(v3_parser, [e.rendered() for e in SIGNOZ_SIDE])
    errors = [f"{e}: {r['error']}\n  {e.rendered()}" for e, r in zip(SIGNOZ_SIDE, results, strict=True) if "error" in r]
    assert not errors, "\n".join(errors)
    assert len(SIGNOZ_SIDE) > 60


def test_prometheus_expressions_parse_with_prometheus_3_too(v3_parser: Path) -> None:
    results = parse_v3(v3_parser, [e.rendered() for e in PROMETHEUS_SIDE])
    errors = [f"{e}: {r['error']}" for e, r in zip(PROMETHEUS_SIDE, results, strict=True) if "error" in r]
    assert not errors, "\n".join(errors)


def test_the_v3_check_can_fail(v3_parser: Path) -> None:
    results = parse_v3(v3_parser, ['rate({"http_request_duration_seconds.bucket"}[5m]',
                                   'sum by ("service.name" (x)', '{"a.b", "service.name"="x"}'])
    assert "error" in results[0] and "error" in results[1]
    assert results[2]["selectors"][0]["name"] == "a.b"
