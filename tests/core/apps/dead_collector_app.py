"""A FastAPI app instrumented explicitly with otel_trader.instrument_app; the tests point its
OTLP endpoint at a port nothing listens on (or use TELEMETRY_EXPORTER=none as the baseline)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

import otel_trader

app = FastAPI()


@app.get("/quote/{symbol}")
async def quote(symbol: str) -> dict[str, str]:
    """Makes a span, a metric and a log record per request, so every signal has data to send."""
    otel_trader.record_counter("quotes_total", attributes={"symbol": symbol})
    logging.getLogger("app").warning("quote %s", symbol)
    return {"symbol": symbol}


otel_trader.instrument_app(app)
