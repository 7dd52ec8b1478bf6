"""The tables of docs/DESIGN.md (metrics, from the catalog) and monitoring/README.md (alerts).

Each table sits between two markers; only that part of the file is generated, the prose around
it is edited by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .alerts import ALERTS
from .catalog import catalog

DESIGN = Path("docs/DESIGN.md")
MONITORING_README = Path("monitoring/README.md")
_SIGNALS = re.compile(r"^(otelcol_.+_)(spans|metric_points|log_records)(_total)?$")


def _code(text: str) -> str:
    return f"`{text}`"


def _label(label: Any) -> str:  # a catalog Label (the module is loaded by path)
    text = _code(label.name)
    if label.values:
        text += " (" + ", ".join(label.values) + ")"
    elif label.note:
        text += f" ({label.note})"
    return text


def _prom_name(metric: Any) -> str:
    return _code(f"{metric.prom}_{{bucket,sum,count}}" if metric.prom_type == "histogram" else metric.prom)


def _rows(metrics: list) -> list[list]:
    """Metrics in table order; the collector's per-signal counters as one row each."""
    rows: list[list] = []
    for metric in metrics:
        found = _SIGNALS.match(metric.prom)
        last = rows[-1][0] if rows else None
        if found and last is not None and _SIGNALS.match(last.prom) and _SIGNALS.match(last.prom).group(1) == found.group(1):
            rows[-1].append(metric)
        else:
            rows.append([metric])
    return rows


def metric_table() -> str:
    lines = []
    groups = list(dict.fromkeys(m.group for m in catalog.CATALOG))
    for group in groups:
        metrics = [m for m in catalog.CATALOG if m.group == group]
        shared = {m.when for m in metrics}
        common = shared.pop() if len(shared) == 1 else ""
        lines += [f"**{group}**" + (f": only {common}." if common else ""), "",
                  "| Prometheus name | OTel instrument | labels | meaning |", "|---|---|---|---|"]
        for row in _rows(metrics):
            metric = row[0]
            if len(row) > 1:
                stem = _SIGNALS.match(metric.prom)
                signals = ",".join(_SIGNALS.match(m.prom).group(2) for m in row)
                prom = _code(f"{stem.group(1)}{{{signals}}}{stem.group(3) or ''}")
                otel = _code(f"{stem.group(1)}{{{signals}}}")
            else:
                prom, otel = _prom_name(metric), _code(metric.otel)
            # the instrument's name only where the exposition changes it
            instrument = metric.kind + (f" {otel}" if metric.otel != metric.prom else "")
            if metric.unit:
                instrument += f", unit {_code(metric.unit)}"
            if metric.buckets:
                instrument += ", buckets " + " ".join(f"{b:g}" for b in metric.buckets)
            meaning = metric.description.rstrip(".") + "."
            if metric.notes:
                meaning += f" {metric.notes[0].upper()}{metric.notes[1:]}."
            if metric.when and not common:
                meaning += f" Only {metric.when}."
            labels = ", ".join(_label(label) for label in metric.labels) or "—"
            lines.append(f"| {prom} | {instrument} | {labels} | {meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def alert_table() -> str:
    lines = ["| alert | severity | fires when (for) | first check |", "|---|---|---|---|"]
    for alert in ALERTS:
        lines.append(f"| `{alert.name}` | {alert.severity} | {alert.fires_when} ({alert.for_}) | {alert.runbook} |")
    return "\n".join(lines)


TABLES = {DESIGN: ("metric-catalog", metric_table), MONITORING_README: ("alert-table", alert_table)}


def splice(text: str, name: str, table: str) -> str:
    """``text`` with the part between ``<!-- name:start ... -->`` and ``<!-- name:end -->`` replaced."""
    start = re.compile(rf"<!-- {name}:start[^>]*-->\n")
    end = f"<!-- {name}:end -->"
    found = start.search(text)
    if found is None or end not in text[found.end():]:
        raise ValueError(f"no <!-- {name}:start --> … {end} markers")
    tail = text.index(end, found.end())
    return text[:found.end()] + table + "\n" + text[tail:]


def documents(source: Path) -> dict[Path, str]:
    """Relative path -> the document under ``source`` with its generated table brought up to date."""
    return {rel: splice((source / rel).read_text(encoding="utf-8"), name, make()) for rel, (name, make) in TABLES.items()}
