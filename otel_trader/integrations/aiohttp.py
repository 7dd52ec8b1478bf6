"""aiohttp client spans (ccxt's async transport): one CLIENT span per request, URL scrubbed.

Stable HTTP semantic conventions (``http.request.method``, ``url.full``, ``server.address``,
``server.port``, ``http.response.status_code``, ``error.type``), span name ``{method}
{url.template}``, trace context only to our own hosts (see :mod:`.http_client`). Request and
response bodies and headers are never recorded. Sessions created after aiohttp is imported are
traced; aiohttp is not imported here (see :mod:`.on_import`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from .http_client import (
    PropagationPolicy,
    install_propagation_gate,
    name_client_span,
    policy_from,
    shared_meter_provider,
    skip_propagation,
)
from .on_import import when_imported

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
    policy = policy_from(config)
    undo: list[Callable[[], None]] = []

    def on_import(_module: ModuleType) -> None:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

        instrumentor = AioHttpClientInstrumentor()
        instrumentor.instrument(
            tracer_provider=tracer_provider,
            meter_provider=shared_meter_provider(meter_provider),
            request_hook=request_hook(policy),
        )
        undo.append(install_propagation_gate())
        undo.append(instrumentor.uninstrument)

    cancel = when_imported("aiohttp", on_import)

    def uninstrument() -> None:
        cancel()
        while undo:
            undo.pop()()

    return uninstrument
