"""The demo API's tables (orders, net positions per strategy and symbol) and the fill arithmetic."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "OrderRow", "PositionRow", "apply_fill", "async_database_url"]


class Base(DeclarativeBase):
    pass


class OrderRow(Base):
    __tablename__ = "demo_orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[float] = mapped_column(Float)
    strategy: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    exchange_order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "strategy": self.strategy,
            "status": self.status,
            "price": self.price,
            "reason": self.reason,
            "exchange_order_id": self.exchange_order_id,
            "created_at": self.created_at.isoformat(),
        }


class PositionRow(Base):
    __tablename__ = "demo_positions"

    strategy: Mapped[str] = mapped_column(String(32), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[float] = mapped_column(Float, default=0.0)
    avg_price: Mapped[float] = mapped_column(Float, default=0.0)
    realized_pnl: Mapped[float] = mapped_column(Float, default=0.0)


def async_database_url(url: str | None) -> str:
    """DATABASE_URL as an async SQLAlchemy URL (aiosqlite / psycopg); a temp SQLite file if unset."""
    if not url:
        path = os.path.join(tempfile.gettempdir(), f"otel-trader-demo-{os.getpid()}.db")
        return f"sqlite+aiosqlite:///{path}"
    for prefix, replacement in (
        ("postgres://", "postgresql+psycopg://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(prefix):
            return replacement + url[len(prefix) :]
    return url


def apply_fill(position: PositionRow, side: str, quantity: float, price: float) -> float:
    """Apply a fill to a net position (average-cost method); return the PnL it realizes."""
    signed = quantity if side == "buy" else -quantity
    current = position.quantity or 0.0
    realized = 0.0
    if current == 0 or (current > 0) == (signed > 0):
        total = abs(current) + abs(signed)
        position.avg_price = ((position.avg_price or 0.0) * abs(current) + price * abs(signed)) / total
    else:
        closed = min(abs(signed), abs(current))
        realized = closed * (price - position.avg_price) * (1 if current > 0 else -1)
        if abs(signed) > abs(current):  # flipped: the rest opens a position at this price
            position.avg_price = price
    position.quantity = current + signed
    if abs(position.quantity) < 1e-12:
        position.quantity = 0.0
        position.avg_price = 0.0
    position.realized_pnl = (position.realized_pnl or 0.0) + realized
    return realized
