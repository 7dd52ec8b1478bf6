"""Outcome counts of one reporter: the two metrics, and the same numbers for ``stats``.

Counted per error occurrence reported while the reporter runs, each in exactly one outcome, so
sent + failed + suppressed + dropped = errors reported. ``sent``: delivered to at least one chat;
``failed``: to none (refused, or not sent by the shutdown deadline); ``suppressed``: folded into a
dedup follow-up; ``dropped``: the intake was full. Follow-ups are messages, not occurrences, and
are not counted.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry import metrics

__all__ = ["ReportCounters"]


class ReportCounters:
    """``otel_trader_error_reports_total{level,result}`` and ``otel_trader_error_reports_dropped_total``.

    Thread-safe: the intake counts on the caller's thread, delivery on the event loop. The
    instruments come from the global MeterProvider, so they are no-ops without telemetry.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = {"sent": 0, "failed": 0, "suppressed": 0, "dropped": 0}
        meter = metrics.get_meter("otel_trader.telegram")
        self._reports = meter.create_counter(
            "otel_trader_error_reports_total",
            unit="{report}",
            description="Error reports by outcome: sent, suppressed (dedup) or failed.",
        )
        self._dropped = meter.create_counter(
            "otel_trader_error_reports_dropped_total",
            unit="{report}",
            description="Error reports dropped because the reporter's queue was full.",
        )
        # One attributes dict per (level, result): no allocation per report.
        self._labels: dict[tuple[int, str], dict[str, str]] = {}

    def count(self, level: int, result: str) -> None:
        """Count one report of ``level`` as ``sent``, ``failed`` or ``suppressed``."""
        key = (level, result)
        labels = self._labels.get(key)
        if labels is None:
            labels = self._labels[key] = {"level": str(logging.getLevelName(level)), "result": result}
        self._reports.add(1, labels)
        with self._lock:
            self._stats[result] += 1

    def count_dropped(self) -> None:
        """Count one report that did not fit in the intake."""
        self._dropped.add(1)
        with self._lock:
            self._stats["dropped"] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by outcome."""
        with self._lock:
            return dict(self._stats)
