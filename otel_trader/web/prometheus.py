"""The in-process Prometheus endpoint.

OTel metrics are read by the SDK's ``PrometheusMetricReader`` into prometheus_client's default
registry, so ``/metrics`` shows them next to any metrics the application defines with
prometheus_client itself (an app's own ``Counter``/``Gauge`` keep working, and so does a
plain ``make_asgi_app()`` mount). prometheus_client's own process/GC/platform collectors are replaced
by OTel instruments of the same names (see ``runtime_metrics``), so the collector's Prometheus
endpoint shows them too and ``/metrics`` never lists a name twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

__all__ = ["MetricsEndpoint", "build_prometheus_reader", "forget_target_info"]

logger = logging.getLogger("otel_trader")

_defaults_removed = False


class _DeduplicatingCollector:
    """The OTel reader's collector, minus families a prometheus_client metric of the app also names.

    prometheus_client refuses a second metric of the same name, but not one that the OTel
    collector (which declares no names up front) emits at scrape time; the exposition would then
    list the family twice, which Prometheus and promtool reject or mix up. The application's own
    metric is kept (it is what its code updates), ours is dropped, and that is warned once per name.
    """

    def __init__(self, inner: Any, registry: Any) -> None:
        self._inner = inner
        self._registry = registry
        self._warned: set[str] = set()
        # The reader's collector drains one queue per collection: two collections at once (a
        # scrape and the multi-worker snapshot thread) would split or repeat its data.
        self._collect_lock = threading.Lock()

    def describe(self) -> list[Any]:
        """No names up front (like the reader's own collector): registering must not collect."""
        return []

    def __getattr__(self, name: str) -> Any:
        # The reader hands collected data to its ``_collector`` (this object).
        return getattr(self._inner, name)

    def forget_target_info(self) -> None:
        """Build ``target_info`` anew at the next collection (the process's identity changed)."""
        # The SDK's collector builds it once from the first collection's resource and keeps it.
        if hasattr(self._inner, "_target_info"):
            self._inner._target_info = None

    def _taken(self) -> set[str]:
        # prometheus_client's map of names declared by describe()-capable collectors (ours declares none).
        names = getattr(self._registry, "_names_to_collectors", {})
        return {name for name, collector in dict(names).items() if collector is not self}

    def collect(self) -> Any:
        taken = self._taken()
        with self._collect_lock:
            families = list(self._inner.collect())
        for family in families:
            if family.name in taken or f"{family.name}_total" in taken:
                if family.name not in self._warned:
                    self._warned.add(family.name)
                    logger.warning(
                        "otel-trader: the application defines its own prometheus_client metric %r, "
                        "which otel-trader also emits; /metrics serves the application's and leaves "
                        "out otel-trader's. Remove or rename the application's metric to get "
                        "otel-trader's (and the collector's, which has only otel-trader's)",
                        family.name,
                    )
                continue
            yield family


def clashing_names(registry: Any, names: Any) -> list[str]:
    """Those of ``names`` (Prometheus family names otel-trader emits) that the app's own metrics already take."""
    taken = set(getattr(registry, "_names_to_collectors", {}))
    return sorted(
        n for n in names if n in taken or f"{n}_total" in taken or n.removesuffix("_total") in taken
    )


def _remove_default_collectors(registry: Any) -> None:
    global _defaults_removed
    if _defaults_removed:
        return
    import prometheus_client

    for collector in (
        prometheus_client.PROCESS_COLLECTOR,
        prometheus_client.GC_COLLECTOR,
        prometheus_client.PLATFORM_COLLECTOR,
    ):
        with contextlib.suppress(KeyError):  # already removed by the application
            registry.unregister(collector)
    _defaults_removed = True


def build_prometheus_reader() -> tuple[Any, Any]:
    """A PrometheusMetricReader on prometheus_client's default registry, and that registry."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import REGISTRY

    _remove_default_collectors(REGISTRY)
    reader = PrometheusMetricReader(registry=REGISTRY)
    inner = reader._collector
    REGISTRY.unregister(inner)
    # The reader unregisters its ``_collector`` at shutdown: make that the wrapper.
    reader._collector = _DeduplicatingCollector(inner, REGISTRY)  # type: ignore[assignment]
    REGISTRY.register(reader._collector)
    return reader, REGISTRY


def forget_target_info(reader: Any) -> None:
    """Make ``reader`` (from :func:`build_prometheus_reader`) rebuild ``target_info`` at its next scrape.

    A scrape before a fork would otherwise leave the child showing the parent's identity.
    """
    collector = getattr(reader, "_collector", None)
    if isinstance(collector, _DeduplicatingCollector):
        collector.forget_target_info()


class MetricsEndpoint:
    """ASGI app serving the Prometheus text exposition of ``registry``.

    A class (not a function) so Starlette's ``Route`` treats it as an ASGI app.
    """

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, make_asgi_app

        self._app = make_asgi_app(registry if registry is not None else REGISTRY)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)
