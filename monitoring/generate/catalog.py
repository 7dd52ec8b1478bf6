"""The metric catalog (``otel_trader/metric_catalog.py``), loaded by path, and the views the generators use.

By path, not ``import otel_trader``: the package's ``__init__`` imports the OpenTelemetry SDK,
and the catalog itself is pure data, so generating needs nothing beyond the standard library.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
_NAME = "_otel_trader_metric_catalog"


def _load() -> ModuleType:
    module = sys.modules.get(_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(_NAME, ROOT / "otel_trader" / "metric_catalog.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return module


catalog = _load()
#: Prometheus name -> catalog entry (``Metric``: ``prom``, ``otel``, ``prom_type``, ``labels`` …).
METRICS = catalog.by_prom()
COLLECTOR = catalog.COLLECTOR
#: Labels every series has in our Prometheus besides its own: the scrape's target labels.
TARGET_LABELS = frozenset({"job", "instance", "via"})

#: Prometheus label -> the key SigNoz stores: resource attributes for the target labels, and the
#: OpenTelemetry attribute keys the catalog names where they differ (``error_type`` -> ``error.type``).
SIGNOZ_LABELS = {
    "job": "service.name",
    "instance": "service.instance.id",
    **{
        label.name: label.attribute
        for metric in catalog.CATALOG
        if metric.source != COLLECTOR
        for label in metric.labels
        if label.attribute and metric.prom != "target_info"
    },
}


def scope(metric: str) -> str:
    """``app`` or ``collector``: which dashboard variables filter the metric."""
    return "collector" if METRICS[metric].source == COLLECTOR else "app"


def check_label(metric: str, label: str, value: str | None = None, op: str = "=") -> None:
    """Fail the generation when a panel or alert uses a label (or a fixed value) the metric lacks."""
    if label in TARGET_LABELS or label == "__name__":
        return
    if label == "le" and METRICS[metric].prom_type == "histogram":
        return
    spec = METRICS[metric].label(label)
    # value "" matches series without the label, which every label allows
    if value and op == "=" and spec.values and value not in spec.values:
        raise ValueError(f"{metric}{{{label}={value!r}}}: {label} is one of {spec.values}")
