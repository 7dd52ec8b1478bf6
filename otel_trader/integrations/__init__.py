"""Auto-instrumentation, one module per library; each is used only when its library imports."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from typing import Any

from otel_trader.settings import TelemetryConfig

__all__ = ["instrument_libraries"]

logger = logging.getLogger("otel_trader")

#: integration name → (module that must be importable, our integration module)
_LIBRARIES = {
    "httpx": ("httpx", "httpx"),
    "sqlalchemy": ("sqlalchemy", "sqlalchemy"),
    "redis": ("redis", "redis"),
    "aiohttp": ("aiohttp", "aiohttp"),
    "requests": ("requests", "requests"),
    "ccxt": ("ccxt", "ccxt"),
    "websockets": ("websockets", "websockets"),
}
#: Instrumented when their library is first imported (see on_import.py), so only looked up
#: here: importing them to find out would cost every service that has them installed.
_ON_IMPORT = frozenset({"aiohttp", "requests", "ccxt", "websockets"})


def instrument_libraries(
    config: TelemetryConfig, tracer_provider: Any, meter_provider: Any
) -> list[Callable[[], None]]:
    """Instrument every enabled, importable library; return the functions that undo it."""
    # Stable HTTP semantic conventions (url.full, http.request.method, …) for client spans, the
    # same as our server spans; contrib still defaults to the old ones. Read once, at the first
    # instrumentation, so it is set before any; a user's own choice is kept.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    undo: list[Callable[[], None]] = []
    for name, (library, module) in _LIBRARIES.items():
        if not config.integration_enabled(name):
            continue
        try:
            if name in _ON_IMPORT:
                if importlib.util.find_spec(library) is None:
                    continue
            else:
                importlib.import_module(library)
        except (ImportError, ValueError):
            continue
        try:
            integration = importlib.import_module(f"{__name__}.{module}")
            if name in _ON_IMPORT:
                undo.append(integration.instrument(tracer_provider, meter_provider, config))
            else:
                undo.append(integration.instrument(tracer_provider, meter_provider))
        except Exception as exc:  # an integration must never take the application down
            logger.warning("otel-trader: could not instrument %s: %s", name, exc)
    return undo
