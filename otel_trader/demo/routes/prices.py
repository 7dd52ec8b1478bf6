"""``/ws/prices``: a bounded stream of random-walk price ticks over WebSocket."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from otel_trader import trading
from otel_trader.demo.routes.context import ApiContext

__all__ = ["prices_router"]


def prices_router(ctx: ApiContext) -> APIRouter:
    """The ``/ws/prices`` WebSocket; each tick moves that symbol's price in ``ctx.prices``."""
    router = APIRouter()

    @router.websocket("/ws/prices")
    async def prices_ws(websocket: WebSocket, count: int = 50, interval: float = 0.1) -> None:
        """Stream ``count`` price ticks (bounded: at most 10 000), one every ``interval`` seconds."""
        await websocket.accept()
        with trading.websocket_connection():
            try:
                for _ in range(max(1, min(count, 10_000))):
                    symbol = ctx.rng.choice(list(ctx.prices))
                    ctx.prices[symbol] *= 1.0 + ctx.rng.gauss(0.0, 0.001)
                    await websocket.send_json({"symbol": symbol, "price": round(ctx.prices[symbol], 8)})
                    await asyncio.sleep(max(0.01, interval))
                await websocket.close()
            except WebSocketDisconnect:
                pass

    return router
