"""A merchant's orders waiting to ship: paid or cleared through customs, with one of its goods."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.orders import Order, OrderLine

TO_SHIP = ("paid", "customs_cleared")


def orders_to_ship(session: Session, merchant_id: str, *, limit: int = 25) -> list[Order]:
    """Oldest first (first paid, first shipped), at most `limit`; one query through the lines' merchant
    index, no count."""
    mine = select(OrderLine.order_id).where(OrderLine.merchant_id == merchant_id)
    stmt = (
        select(Order)
        .where(Order.order_id.in_(mine), Order.status.in_(TO_SHIP))
        .order_by(Order.order_id)
        .limit(limit)
    )
    return list(session.scalars(stmt))
