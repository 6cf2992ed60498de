"""Unpaid orders hold stock, the coupon use and (in the annual pre-check) customs quota; they must not
hold them forever. An order left `pending_payment` longer than a TTL expires: it is cancelled and gives
everything back exactly once, and a shopper may hold only a bounded number of open unpaid orders.

Exactly once: expiry is a conditional `UPDATE orders SET status = 'cancelled' WHERE order_id = :id AND
status = 'pending_payment' AND created_at < :cutoff`; only the transaction whose UPDATE changed the row
releases anything, so two sweeps, or a sweep racing a payment or a cancellation, never release twice.
Each order expires in its own short transaction (the lock order of a single cancellation: order -> stock
rows by id -> coupon), so a sweep never holds many rows at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from commerce.db import transaction
from commerce.orders import Order, OrderStatusChange
from commerce.services import coupons as coupon_service
from commerce.services._util import server_bounded
from commerce.services.orders import release_reserved_stock
from commerce.sqltypes import as_utc, utcnow

EXPIRED_REASON = "payment window expired"


@dataclass(frozen=True)
class PendingPolicy:
    """How long an unpaid order may hold goods (`ttl`) and how many a shopper may hold (`max_open`)."""

    ttl: timedelta = timedelta(minutes=30)
    max_open: int = 5

    def __post_init__(self) -> None:
        if self.ttl <= timedelta(0) or self.max_open < 1:
            raise ValueError("ttl must be positive and max_open at least 1")


def expired_order_ids(session: Session, ttl: timedelta, *, now: datetime, limit: int = 1000) -> list[int]:
    cutoff = as_utc(now) - ttl
    return list(
        session.scalars(
            select(Order.order_id)
            .where(Order.status == "pending_payment", Order.created_at < cutoff)
            .order_by(Order.order_id)
            .limit(limit)
        )
    )


def expire_order(session: Session, order_id: int, ttl: timedelta, *, now: datetime) -> bool:
    """Cancel one unpaid order if it is past `ttl`, releasing its stock and coupon use; False when it was
    not (any more) expirable: paid, cancelled or expired by someone else in the meantime."""
    now = as_utc(now)
    done = session.execute(
        update(Order.__table__)
        .where(
            Order.order_id == order_id,
            Order.status == "pending_payment",
            Order.created_at < now - ttl,
        )
        .values(status="cancelled", status_reason=EXPIRED_REASON)
    ).rowcount
    if done != 1:
        return False
    order = session.get(Order, order_id)
    session.refresh(order)
    session.add(
        OrderStatusChange(
            order_id=order_id,
            from_status="pending_payment",
            to_status="cancelled",
            reason=EXPIRED_REASON,
            changed_at=now,
        )
    )
    release_reserved_stock(session, order)
    coupon_service.release(session, order_id, at=now)
    session.flush()
    return True


def expire_pending_orders(
    factory: sessionmaker[Session], ttl: timedelta, *, now: datetime | None = None, limit: int = 1000
) -> list[int]:
    """Expire every unpaid order older than `ttl` (up to `limit`), one transaction each; returns the ids
    this call expired. Safe to run from any number of processes at once. `now` (default this process's
    clock) is bounded by the database server's (`server_bounded`): a replica whose clock jumped an hour
    ahead cancelled every order placed in the last half hour while its shopper was paying."""
    with factory() as session:
        now = server_bounded(session, as_utc(now or utcnow()))
        candidates = expired_order_ids(session, ttl, now=now, limit=limit)
    expired = []
    for order_id in candidates:
        with transaction(factory) as session:
            if expire_order(session, order_id, ttl, now=now):
                expired.append(order_id)
    return expired
