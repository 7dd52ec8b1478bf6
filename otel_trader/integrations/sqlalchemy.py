"""SQLAlchemy spans: statements with placeholders, never bound parameter values.

Engines are traced when created after telemetry is configured (``create_engine`` is patched).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["instrument"]


def instrument(tracer_provider: Any, meter_provider: Any) -> Callable[[], None]:
    """Trace every engine created from now on; return the undo function."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # sqlalchemy.ext.asyncio binds `create_engine` when it is first imported. Imported after the
    # patch below it binds the patched one, so every create_async_engine() engine gets two
    # tracers and one span per statement is never ended (opentelemetry-python-contrib#2149).
    # Importing it first keeps one tracer per engine.
    with contextlib.suppress(ImportError):
        import sqlalchemy.ext.asyncio  # noqa: F401

    instrumentor = SQLAlchemyInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, enable_commenter=False
    )
    return instrumentor.uninstrument
