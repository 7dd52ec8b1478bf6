"""The in-process Prometheus endpoint.

OTel metrics are read by the SDK's ``PrometheusMetricReader`` into prometheus_client's default
registry, so ``/metrics`` shows them next to any metrics the application defines with
prometheus_client itself (the seed-000 style keeps working, and so does a plain
``make_asgi_app()`` mount). prometheus_client's own process/GC/platform collectors are replaced
by OTel instruments of the same names (see ``runtime_metrics``), so the collector's Prometheus
endpoint shows them too and ``/metrics`` never lists a name twice.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["MetricsEndpoint", "build_prometheus_reader"]

_defaults_removed = False


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
    return PrometheusMetricReader(registry=REGISTRY), REGISTRY


class MetricsEndpoint:
    """ASGI app serving the Prometheus text exposition of ``registry``.

    A class (not a function) so Starlette's ``Route`` treats it as an ASGI app.
    """

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, make_asgi_app

        self._app = make_asgi_app(registry if registry is not None else REGISTRY)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)
