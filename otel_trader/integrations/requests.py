"""requests client spans (ccxt's sync transport): one CLIENT span per request, URL scrubbed.

The same conventions as :mod:`.aiohttp`: stable HTTP attributes, span name ``{method}
{url.template}``, ``url.full`` scrubbed in the process, trace context only to our own hosts,
no bodies or headers recorded. requests is not imported here (see :mod:`.on_import`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from otel_trader.integrations.http_client import (
    PropagationPolicy,
    instrument_when_imported,
    name_client_span,
    skip_propagation,
)

__all__ = ["instrument", "request_hook"]


def request_hook(policy: PropagationPolicy) -> Callable[[Any, Any], None]:
    """The instrumentation's request hook: names the span, scrubs its URL, gates propagation."""

    def hook(span: Any, request: Any) -> None:
        url = request.url or ""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if not policy.allows(host):
            skip_propagation(request.headers)
        name_client_span(span, request.method or "GET", url)

    return hook


def instrument(tracer_provider: Any, meter_provider: Any, config: Any = None) -> Callable[[], None]:
    """Trace every requests call (``Session.send``); return the undo function."""

    def make_instrumentor() -> Any:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        return RequestsInstrumentor()

    return instrument_when_imported(
        "requests", make_instrumentor, request_hook, tracer_provider, meter_provider, config
    )
