"""aiohttp client spans (ccxt's async transport): one CLIENT span per request, URL scrubbed.

Stable HTTP semantic conventions (``http.request.method``, ``url.full``, ``server.address``,
``server.port``, ``http.response.status_code``, ``error.type``), span name ``{method}
{url.template}``, trace context only to our own hosts (see :mod:`.http_client`). Request and
response bodies and headers are never recorded. Sessions created after aiohttp is imported are
traced; aiohttp is not imported here (see :mod:`.on_import`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otel_trader.integrations.http_client import (
    PropagationPolicy,
    instrument_when_imported,
    name_client_span,
    skip_propagation,
)

__all__ = ["instrument", "request_hook"]


def request_hook(policy: PropagationPolicy) -> Callable[[Any, Any], None]:
    """The instrumentation's request hook: names the span, scrubs its URL, gates propagation."""

    def hook(span: Any, params: Any) -> None:
        url = params.url
        if not policy.allows(url.host):
            skip_propagation(params.headers)
        name_client_span(span, params.method, str(url))

    return hook


def instrument(tracer_provider: Any, meter_provider: Any, config: Any = None) -> Callable[[], None]:
    """Trace every aiohttp ``ClientSession`` created from now on; return the undo function."""

    def make_instrumentor() -> Any:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

        return AioHttpClientInstrumentor()

    return instrument_when_imported(
        "aiohttp", make_instrumentor, request_hook, tracer_provider, meter_provider, config
    )
