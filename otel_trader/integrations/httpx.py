"""httpx client spans with W3C context propagation to downstream services, URLs redacted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otel_trader.redaction import redact_url

__all__ = ["instrument"]


_URL_ATTRIBUTES = ("url.full", "http.url")  # stable and old semantic conventions


def _redact(span: Any, request: Any) -> None:
    # The instrumentation has already set the URL attribute; overwrite it with secrets removed.
    if span.is_recording():
        url = redact_url(str(request.url))
        attributes = getattr(span, "attributes", None) or {}
        for key in _URL_ATTRIBUTES:
            if key in attributes:
                span.set_attribute(key, url)


async def _redact_async(span: Any, request: Any) -> None:
    _redact(span, request)


def instrument(tracer_provider: Any, meter_provider: Any) -> Callable[[], None]:
    """Instrument every httpx client (existing and future); return the undo function."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        request_hook=_redact,
        async_request_hook=_redact_async,
    )
    return instrumentor.uninstrument
