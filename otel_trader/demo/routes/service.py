"""The service's own endpoints: the index, a random-latency endpoint and an unhandled error."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from otel_trader.demo.routes.context import ApiContext

__all__ = ["service_router"]


def service_router(ctx: ApiContext) -> APIRouter:
    """``GET /random_sleep`` (up to ``ctx.max_sleep`` seconds), ``GET /test-error`` (a 500), ``GET /``."""
    router = APIRouter()

    @router.get("/random_sleep", summary="Sleep a random time, up to DEMO_MAX_SLEEP seconds")
    async def random_sleep() -> dict[str, float]:
        slept = ctx.rng.uniform(0.0, ctx.max_sleep)
        await asyncio.sleep(slept)
        return {"slept": round(slept, 4)}

    @router.get("/test-error", summary="Raise an unhandled exception (a 500, recorded on the server span)")
    async def test_error() -> None:
        raise RuntimeError("test error from /test-error")

    @router.get("/", summary="Where to look")
    async def root() -> dict[str, Any]:
        return {
            "service": "otel-trader demo trading API",
            "endpoints": ["/orders", "/positions", "/pnl", "/ws/prices", "/random_sleep", "/test-error"],
            "health": "/health",
            "metrics": "/metrics",
            "docs": "/docs",
        }

    return router
