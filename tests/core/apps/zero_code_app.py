"""A plain FastAPI app that knows nothing about otel-trader: the zero-code tests serve it
under ``opentelemetry-instrument uvicorn zero_code_app:app``."""

from __future__ import annotations

import os

import httpx
from fastapi import FastAPI

app = FastAPI()
sub = FastAPI()


@app.get("/orders/{symbol}")
async def get_order(symbol: str) -> dict[str, str]:
    """A templated route: the metric's ``path`` label must be the template."""
    return {"symbol": symbol}


@app.get("/fanout")
async def fanout() -> dict[str, int]:
    """Calls this same server once through httpx: one CLIENT span, one more SERVER span."""
    port = os.environ["APP_PORT"]
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/orders/ETH")
    return {"status": response.status_code}


@sub.get("/ping")
async def ping() -> dict[str, bool]:
    """Served through a mount: counted once, by the root app's middleware."""
    return {"pong": True}


app.mount("/sub", sub)
