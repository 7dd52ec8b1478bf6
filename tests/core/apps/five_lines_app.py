"""The guides' five lines, nothing else: telemetry and Telegram reporting from the environment."""

from __future__ import annotations

from fastapi import FastAPI

import otel_trader

app = FastAPI()
otel_trader.instrument_app(app)


@app.get("/test-error")
async def test_error() -> None:
    raise RuntimeError("order book for BTC-USDT is gone")


@app.get("/ok")
async def ok() -> dict[str, bool]:
    return {"ok": True}
