"""SQLAlchemy spans: statements with placeholders, never bound parameter values.

Engines are traced when created after telemetry is configured (``create_engine`` is patched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["instrument"]


def instrument(tracer_provider: Any, meter_provider: Any) -> Callable[[], None]:
    """Trace every engine created from now on; return the undo function."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, enable_commenter=False
    )
    return instrumentor.uninstrument

