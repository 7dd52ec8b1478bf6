"""``/orders``: market orders through the exchange client, stored with their fills; read back by id or as a list."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from otel_trader import trading
from otel_trader.demo.routes.context import EXCHANGE_NAME, ApiContext
from otel_trader.demo.routes.storage import OrderRow, PositionRow, apply_fill
from otel_trader.integrations.ccxt import classify

__all__ = ["OrderRequest", "orders_router", "venue_message"]


class OrderRequest(BaseModel):
    """A market order."""

    symbol: str = Field(pattern=r"^[A-Z0-9]{2,10}-[A-Z0-9]{2,10}$", examples=["BTC-USDT"])
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0, le=1_000_000)
    strategy: str = Field("demo", pattern=r"^[a-z0-9_-]{1,32}$")


def venue_message(exc: BaseException) -> str:
    """The venue's own message in a ccxt error (``mock {"code":-2010,"msg":"…"}``, ``mock Market is closed.``)."""
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(text[start:]).get("msg")
            if message:
                return str(message)[:200]
    return text.removeprefix(f"{EXCHANGE_NAME} ")[:200]


def orders_router(ctx: ApiContext) -> APIRouter:
    """The order routes.

    ``POST /orders``: 201 with the order, filled or rejected by the venue (``reason`` is the venue's
    message); 502 when the venue cannot be reached. ``GET /orders/{order_id}``: Redis first, then the
    database; 404 for an unknown id. ``GET /orders?limit=``: the newest first, 1 to 100 of them.
    """
    router = APIRouter()

    @router.post("/orders", status_code=201, summary="Place a market order")
    async def place_order(order: OrderRequest) -> dict[str, Any]:
        client_order_id = str(uuid.uuid4())
        price: float | None = None
        reason: str | None = None
        exchange_order_id: str | None = None
        try:
            venue = ctx.exchange()
            await ctx.check_clock()
            async with trading.order(
                strategy=order.strategy, side=order.side, exchange=EXCHANGE_NAME, symbol=order.symbol
            ) as placed:
                try:
                    reply = await venue.create_order(
                        order.symbol.replace("-", "/"),
                        "market",
                        order.side,
                        order.quantity,
                        params={"newClientOrderId": client_order_id},
                    )
                except Exception as exc:
                    if classify(exc)[0] != "rejected":
                        raise
                    # The venue answered and refused this order (halted market, balance, symbol).
                    placed.set_status("rejected")
                    reason = venue_message(exc)
                else:
                    placed.set_status("filled")
                    price = float(reply.get("average") or reply.get("price"))
                    exchange_order_id = str(reply["id"])
        except Exception as exc:
            # Counted as status="error" by trading.order; the client sees a gateway error.
            raise HTTPException(502, f"exchange unavailable: {type(exc).__name__}") from exc
        status = "filled" if price is not None else "rejected"
        row = OrderRow(
            id=client_order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            strategy=order.strategy,
            status=status,
            price=price,
            reason=reason,
            exchange_order_id=exchange_order_id,
            created_at=datetime.now(timezone.utc),
        )
        async with ctx.write_lock, ctx.sessions() as session, session.begin():
            session.add(row)
            if price is not None:
                position = await session.get(PositionRow, (order.strategy, order.symbol))
                if position is None:
                    position = PositionRow(
                        strategy=order.strategy,
                        symbol=order.symbol,
                        quantity=0.0,
                        avg_price=0.0,
                        realized_pnl=0.0,
                    )
                    session.add(position)
                realized = apply_fill(position, order.side, order.quantity, price)
                ctx.prices[order.symbol] = price
                if realized:
                    trading.add_realized_pnl(order.symbol, realized)
                trading.set_open_positions(
                    order.symbol, 1 if position.quantity else 0, strategy=order.strategy
                )
        result = row.to_dict()
        await ctx.cache_set(f"order:{row.id}", result)
        return result

    @router.get("/orders/{order_id}", summary="One order (Redis cache, then the database)")
    async def get_order(order_id: str) -> dict[str, Any]:
        cached = await ctx.cache_get(f"order:{order_id}")
        if cached is not None:
            return {**cached, "cached": True}
        async with ctx.sessions() as session:
            row = await session.get(OrderRow, order_id)
        if row is None:
            raise HTTPException(404, "order not found")
        return {**row.to_dict(), "cached": False}

    @router.get("/orders", summary="Recent orders")
    async def list_orders(limit: int = 20) -> list[dict[str, Any]]:
        async with ctx.sessions() as session:
            rows = await session.execute(
                select(OrderRow).order_by(OrderRow.created_at.desc()).limit(max(1, min(limit, 100)))
            )
            return [r.to_dict() for r in rows.scalars()]

    return router
