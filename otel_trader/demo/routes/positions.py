"""``/positions`` and ``/pnl``: the net positions and realized PnL the database holds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from otel_trader.demo.routes.context import ApiContext
from otel_trader.demo.routes.storage import PositionRow

__all__ = ["positions_router"]


def positions_router(ctx: ApiContext) -> APIRouter:
    """``GET /positions`` (the non-zero ones, per strategy and symbol), ``GET /pnl`` (realized, per symbol and total)."""
    router = APIRouter()

    @router.get("/positions", summary="Open positions")
    async def positions() -> list[dict[str, Any]]:
        async with ctx.sessions() as session:
            rows = (await session.execute(select(PositionRow).where(PositionRow.quantity != 0))).scalars()
            return [
                {"strategy": r.strategy, "symbol": r.symbol, "quantity": r.quantity, "avg_price": r.avg_price}
                for r in rows
            ]

    @router.get("/pnl", summary="Realized PnL per symbol")
    async def pnl() -> dict[str, Any]:
        async with ctx.sessions() as session:
            rows = (await session.execute(select(PositionRow))).scalars().all()
        per_symbol: dict[str, float] = {}
        for r in rows:
            per_symbol[r.symbol] = per_symbol.get(r.symbol, 0.0) + r.realized_pnl
        return {"realized": per_symbol, "total": sum(per_symbol.values())}

    return router
