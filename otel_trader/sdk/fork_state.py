"""Empty metric state in a process forked after configuration.

A parent that recorded metrics and then forks (gunicorn ``--preload``, multiprocessing) hands
every child a copy of the SDK's aggregations. Without a reset each child exports the parent's
accumulated values under its own ``service.instance.id``, so a sum over instances counts the
parent once per child. The SDK (1.45) re-creates the provider's locks and resource after a fork but keeps
the aggregations, so this module empties them.

Instruments user code already holds keep working: they record through the provider's
measurement consumer, which stays the same object; only the per-attribute aggregations behind
it are dropped, and the next measurement creates a fresh one. A fresh aggregation takes its
start time when it is created, so cumulative series in the child start at the child's first
measurement, not at the parent's. Observable instruments stay registered and are read again
at the next collection.

This reaches into SDK internals (``MeterProvider._measurement_consumer._reader_storages`` →
``_instrument_view_instrument_matches`` → ``_attributes_aggregation``); a different layout is
reported at debug level and changes nothing, and tests/core/test_fork.py asserts
the child's values, so an SDK upgrade that moves them fails there.

otel-trader's own state goes too: the attribute sets each metric helper counted against its
cardinality limit, and the trading positions, PnL and websocket count (label limits are kept).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["reset_metric_state"]

logger = logging.getLogger("otel_trader")


def reset_metric_state(meter_provider: Any) -> bool:
    """Drop every aggregation of ``meter_provider`` and what its readers collected but did not hand out.

    Call in a forked child only (``os.register_at_fork(after_in_child=...)``), before user code
    runs: the export threads the SDK's own after-fork hooks restarted wait an export interval
    before they collect. The SDK's locks are replaced too, since a parent thread may have held
    one at the moment of the fork. Returns ``True`` when the state was reset, ``False`` when the
    SDK's layout was not the expected one (logged at debug level; nothing is changed then).
    """
    _reset_own_state()
    if meter_provider is None:
        return True
    try:
        consumer = meter_provider._measurement_consumer
        storages = list(consumer._reader_storages.values())
        matches = [
            match
            for storage in storages
            for instrument_matches in storage._instrument_view_instrument_matches.values()
            for match in instrument_matches
        ]
        if not all(isinstance(m._attributes_aggregation, dict) and hasattr(m, "_lock") for m in matches):
            raise TypeError("unexpected _ViewInstrumentMatch layout")
    except Exception:
        logger.debug("could not reset the SDK's metric state after fork", exc_info=True)
        return False
    consumer._lock = threading.Lock()
    for storage in storages:
        storage._lock = threading.RLock()
    for match in matches:
        match._lock = threading.Lock()
        match._attributes_aggregation = {}
    for reader in getattr(meter_provider, "_metric_readers", ()):
        _reset_reader(reader)
    return True


def _reset_own_state() -> None:
    """otel-trader's own per-process metric state: helper attribute sets, trading values."""
    from otel_trader import trading
    from otel_trader.sdk import metric_helpers as metrics

    try:
        metrics.reset_series()
        # Positions, PnL and websocket counts are read by observable instruments: the parent's
        # would be reported again under the child's identity. The label limits are kept.
        trading.reset_state()
    except Exception:
        logger.debug("could not reset otel-trader's metric state after fork", exc_info=True)


def _reset_reader(reader: Any) -> None:
    """Forget data a reader collected before the fork and would hand out at its next read."""
    try:
        collector = getattr(reader, "_collector", None)  # PrometheusMetricReader
        pending = getattr(collector, "_metrics_datas", None)
        if pending is not None:
            pending.clear()
        if collector is not None and hasattr(collector, "_collect_lock"):  # a parent thread may hold it
            collector._collect_lock = threading.Lock()
        if hasattr(reader, "_metrics_data"):  # InMemoryMetricReader
            reader._metrics_data = None
            reader._lock = threading.RLock()
        if hasattr(reader, "_export_lock"):  # PeriodicExportingMetricReader, held during an export
            reader._export_lock = threading.Lock()
    except Exception:
        logger.debug("could not reset a metric reader after fork", exc_info=True)
