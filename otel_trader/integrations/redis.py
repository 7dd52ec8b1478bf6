"""Redis command spans (sync and asyncio); arguments are sanitised to ``SET ? ?`` upstream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["instrument"]


def instrument(tracer_provider: Any, meter_provider: Any) -> Callable[[], None]:
    """Instrument redis-py clients; return the undo function."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    return instrumentor.uninstrument
