"""The order state machine after checkout: payment, customs, shipping, delivery, cancellation and refunds.

    pending_payment -> paid -> customs_cleared -> shipped -> delivered -> completed
    pending_payment | paid -> cancelled;   paid .. completed -> refunded

Every transition is a conditional UPDATE on the current status, so two concurrent calls cannot both apply.
Rows are always locked in one order (order -> stock rows by id -> coupon -> annual counter), the order
checkout uses too, so concurrent transactions queue instead of deadlocking.
Payment adds the order's goods value to the buyer's annual counter with `UPDATE annual_spend SET
amount = round(amount + v, 2) WHERE ... AND round(amount + v, 2) <= 26000`: the annual limit holds under
concurrent payments. Cancelling or refunding takes it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from commerce.bulk import insert_ignore
from commerce.catalog import Stock
from commerce.coupons import Coupon
from commerce.errors import InvalidState, LimitExceeded, NotFound, ValidationError
from commerce.logistics import Shipment, TrackingEvent
from commerce.orders import ORDER_STATUSES, AnnualSpend, Order, OrderLine, OrderStatusChange
from commerce.services import coupons as coupon_service
from commerce.services._util import required_text
from commerce.services.checkout import customs_year
from commerce.services.events import record_events
from commerce.services.pagination import Page, paginate
from commerce.sqltypes import as_utc, utcnow
from commerce.tax import ANNUAL_LIMIT

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending_payment": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"customs_cleared", "cancelled", "refunded"}),
    "customs_cleared": frozenset({"shipped", "refunded"}),
    "shipped": frozenset({"delivered", "refunded"}),
    "delivered": frozenset({"completed", "refunded"}),
    "completed": frozenset({"refunded"}),
    "cancelled": frozenset(),
    "refunded": frozenset(),
}


def can_transition(current: str, to: str) -> bool:
    return to in TRANSITIONS.get(current, frozenset())


def get_order(session: Session, order_id: int, *, shopper_id: str | None = None) -> Order:
    """Load an order; with `shopper_id`, someone else's order is reported as not found (no existence leak)."""
    order = session.get(Order, order_id)
    if order is None or (shopper_id is not None and order.shopper_id != shopper_id):
        raise NotFound(f"unknown order {order_id}", code="order_not_found")
    return order


def list_orders(
    session: Session,
    *,
    shopper_id: str | None = None,
    merchant_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Order]:
    """Newest first, each order's lines read for the whole page in one query: read order by order, a
    page of 100 orders (a shopper's cancelled ones count) took 103 statements where one took 6."""
    stmt = select(Order).options(selectinload(Order.lines)).order_by(Order.order_id.desc())
    if shopper_id is not None:
        stmt = stmt.where(Order.shopper_id == shopper_id)
    if merchant_id is not None:
        stmt = stmt.where(
            Order.order_id.in_(select(OrderLine.order_id).where(OrderLine.merchant_id == merchant_id))
        )
    if status is not None:
        if status not in ORDER_STATUSES:
            raise ValidationError(f"unknown order status {status!r}", code="invalid_status")
        stmt = stmt.where(Order.status == status)
    return paginate(session, stmt, limit=limit, offset=offset)


def _move(
    session: Session, order_id: int, to: str, *, reason: str | None = None, at: datetime, **values
) -> Order:
    order = get_order(session, order_id)
    current = order.status
    if not can_transition(current, to):
        raise InvalidState(f"order {order_id} is {current}; it cannot become {to}")
    done = session.execute(
        update(Order.__table__)
        .where(Order.order_id == order_id, Order.status == current)
        .values(status=to, status_reason=reason, **values)
    ).rowcount
    if done != 1:
        raise InvalidState(f"order {order_id} changed status concurrently; reload and retry")
    at = _after_last_step(session, order_id, at)
    session.add(
        OrderStatusChange(order_id=order_id, from_status=current, to_status=to, reason=reason, changed_at=at)
    )
    session.flush()
    session.refresh(order)
    return order


def _after_last_step(session: Session, order_id: int, at: datetime) -> datetime:
    """`at`, or just after the order's latest status change or carrier scan when `at` is not later. The
    trace is sorted by these times: a step recorded by a replica whose clock was behind (a backward
    jump) was listed before the steps it followed ("arrived at hub" before "shipped")."""
    changed = select(func.max(OrderStatusChange.changed_at)).where(OrderStatusChange.order_id == order_id)
    scanned = (
        select(func.max(TrackingEvent.occurred_at))
        .join(Shipment, Shipment.id == TrackingEvent.shipment_id)
        .where(Shipment.order_id == order_id)
    )
    latest = [as_utc(t) for t in (session.scalar(changed), session.scalar(scanned)) if t is not None]
    return at if not latest or at > max(latest) else max(latest) + timedelta(microseconds=1)


def _adjust_stock(session: Session, order: Order, *, reserved: int, quantity: int) -> None:
    """Move units per warehouse row: reserved += reserved*q, quantity += quantity*q (signs say direction).

    Each allocation (a line's units in one warehouse) is moved once, rows in id order: checkout's lock
    order, so no deadlocks; a split line gives back to every warehouse it drew from.
    """
    allocations = sorted((a for line in order.lines for a in line.allocations), key=lambda a: a.stock_id)
    for allocation in allocations:
        q = allocation.quantity
        done = session.execute(
            update(Stock.__table__)
            .where(Stock.id == allocation.stock_id, Stock.reserved + reserved * q >= 0)
            .values(reserved=Stock.reserved + reserved * q, quantity=Stock.quantity + quantity * q)
        ).rowcount
        if done != 1:
            raise InvalidState(f"stock row {allocation.stock_id} is inconsistent with order {order.order_id}")


def release_reserved_stock(session: Session, order: Order) -> None:
    """Give an unpaid order's reserved units back (its cancellation or expiry)."""
    _adjust_stock(session, order, reserved=-1, quantity=0)


def _count_annual(session: Session, order: Order, year: int, sign: int) -> None:
    value = order.goods_value
    insert_ignore(
        session,
        AnnualSpend.__table__,
        [{"identity_digest": order.identity_digest, "year": year, "amount": Decimal(0)}],
    )
    stmt = update(AnnualSpend.__table__).where(
        AnnualSpend.identity_digest == order.identity_digest, AnnualSpend.year == year
    )
    if sign > 0:
        stmt = stmt.where(func.round(AnnualSpend.amount + value, 2) <= ANNUAL_LIMIT)
    new_amount = func.round(AnnualSpend.amount + sign * value, 2)
    if session.execute(stmt.values(amount=new_amount)).rowcount != 1:
        raise LimitExceeded(
            f"paying order {order.order_id} ({value} CNY) would pass the {ANNUAL_LIMIT} CNY annual limit",
            code="annual_limit_exceeded",
        )


def pay_order(session: Session, order_id: int, payment_ref: str, *, at: datetime | None = None) -> Order:
    """Confirm payment: count toward the annual limit, take reserved units out, log purchases."""
    at = as_utc(at or utcnow())
    ref = required_text(payment_ref, "payment_ref", 100)
    order = _move(session, order_id, "paid", at=at, paid_at=at, payment_ref=ref)
    _adjust_stock(session, order, reserved=-1, quantity=-1)
    _count_annual(session, order, customs_year(at), +1)
    events = [
        {
            "event_id": f"purchase:{order.order_id}:{line.line_no}",
            "ts": at,
            "shopper_id": order.shopper_id,
            "product_id": line.product_id,
            "event_type": "purchase",
            "quantity": line.quantity,
            "value": float(line.net),
        }
        for line in order.lines
    ]
    if order.coupon_id is not None:
        coupon = session.get(Coupon, order.coupon_id)
        events.append(
            {
                "event_id": f"redeem:{order.order_id}",
                "ts": at,
                "shopper_id": order.shopper_id,
                "event_type": "coupon_redeem",
                "quantity": 0,
                "coupon_id": coupon.coupon_id,
                "campaign_id": coupon.campaign_id,
            }
        )
    record_events(session, events)
    return order


def clear_customs(session: Session, order_id: int, *, at: datetime | None = None) -> Order:
    return _move(session, order_id, "customs_cleared", at=as_utc(at or utcnow()))


def ship_order(
    session: Session,
    order_id: int,
    tracking_no: str,
    *,
    location: str | None = None,
    at: datetime | None = None,
) -> Order:
    """Hand the parcel to the order's logistics partner and open its tracking record."""
    at = as_utc(at or utcnow())
    tracking_no = required_text(tracking_no, "tracking_no", 64)
    order = _move(session, order_id, "shipped", at=at)
    at = _after_last_step(session, order_id, at)
    shipment = Shipment(
        order_id=order.order_id, partner_id=order.partner_id, tracking_no=tracking_no, created_at=at
    )
    shipment.events.append(TrackingEvent(status="shipped", location=location, occurred_at=at))
    session.add(shipment)
    session.flush()
    return order


def add_tracking_event(
    session: Session,
    order_id: int,
    status: str,
    *,
    location: str | None = None,
    note: str | None = None,
    at: datetime | None = None,
) -> TrackingEvent:
    """Record a carrier scan (in transit, arrived at hub...) for a shipped order."""
    shipment = session.scalar(select(Shipment).where(Shipment.order_id == order_id))
    if shipment is None:
        raise InvalidState(f"order {order_id} has not shipped", code="not_shipped")
    event = TrackingEvent(
        shipment_id=shipment.id,
        status=required_text(status, "status", 64),
        location=location,
        note=note,
        occurred_at=_after_last_step(session, order_id, as_utc(at or utcnow())),
    )
    session.add(event)
    session.flush()
    return event


def deliver_order(session: Session, order_id: int, *, at: datetime | None = None) -> Order:
    at = as_utc(at or utcnow())
    order = _move(session, order_id, "delivered", at=at)
    add_tracking_event(session, order_id, "delivered", at=at)
    return order


def complete_order(session: Session, order_id: int, *, at: datetime | None = None) -> Order:
    return _move(session, order_id, "completed", at=as_utc(at or utcnow()))


def cancel_order(session: Session, order_id: int, reason: str, *, at: datetime | None = None) -> Order:
    """Cancel before shipping: unreserve or restock units, return the coupon use and annual quota."""
    at = as_utc(at or utcnow())
    reason = required_text(reason, "reason", 2000)
    was = get_order(session, order_id).status
    order = _move(session, order_id, "cancelled", reason=reason, at=at)
    if was == "pending_payment":
        release_reserved_stock(session, order)
    else:
        _adjust_stock(session, order, reserved=0, quantity=+1)
    coupon_service.release(session, order.order_id, at=at)
    if was == "paid":
        _count_annual(session, order, customs_year(order.paid_at), -1)
    return order


def refund_order(session: Session, order_id: int, reason: str, *, at: datetime | None = None) -> Order:
    """Refund a paid order. Units return to stock only if they never left (refund from `paid`).

    The annual quota and the coupon use (usage counter, the shopper's use, budget spent) are given
    back, as on cancellation: the sale did not stand, so the promotion paid for nothing.
    """
    at = as_utc(at or utcnow())
    reason = required_text(reason, "reason", 2000)
    was = get_order(session, order_id).status
    order = _move(session, order_id, "refunded", reason=reason, at=at)
    if was == "paid":
        _adjust_stock(session, order, reserved=0, quantity=+1)
    coupon_service.release(session, order.order_id, at=at)
    _count_annual(session, order, customs_year(order.paid_at), -1)
    return order


@dataclass(frozen=True)
class TraceStep:
    at: datetime
    kind: str  # "status" or "tracking"
    status: str
    detail: str | None


def trace_order(session: Session, order_id: int, *, shopper_id: str | None = None) -> list[TraceStep]:
    """Every status change and carrier scan of an order, in time order."""
    order = get_order(session, order_id, shopper_id=shopper_id)
    steps = [TraceStep(h.changed_at, "status", h.to_status, h.reason) for h in order.history]
    shipment = session.scalar(select(Shipment).where(Shipment.order_id == order_id))
    if shipment is not None:
        steps += [
            TraceStep(e.occurred_at, "tracking", e.status, e.location or e.note) for e in shipment.events
        ]
    return sorted(steps, key=lambda s: (s.at, s.kind == "tracking"))


def annual_spend(session: Session, identity_digest: str, year: int) -> Decimal:
    """Goods value a person has paid for in a customs year (paid and later, net of cancellations/refunds)."""
    return session.scalar(
        select(AnnualSpend.amount).where(
            AnnualSpend.identity_digest == identity_digest, AnnualSpend.year == year
        )
    ) or Decimal(0)
