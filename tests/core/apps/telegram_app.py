"""A FastAPI app with telemetry and Telegram error reporting, both configured from the environment.

The lifespan starts the reporter and stops it, as the README shows; ``instrument_app`` adds the
telemetry flush after it. ``/fail/{kind}`` reports the error it catches and answers 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

import otel_trader

reporter = otel_trader.get_error_reporter()
assert reporter is not None, "set TELEGRAM_ERROR_REPORTING_ENABLED, TELEGRAM_TOKEN and TELEGRAM_CHAT_IDS"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    assert reporter is not None
    await reporter.initialize()
    yield
    await reporter.shutdown()


app = FastAPI(lifespan=lifespan)


@app.get("/fail/{kind}")
async def fail(kind: str) -> JSONResponse:
    """Fails: a span, RED metrics and an error report per request."""
    assert reporter is not None
    try:
        raise RuntimeError(f"order book {kind} is gone")
    except RuntimeError as exc:
        await reporter.report_error(exc, additional_context={"kind": kind})
    return JSONResponse({"error": "order book is gone"}, status_code=500)


otel_trader.instrument_app(app)
