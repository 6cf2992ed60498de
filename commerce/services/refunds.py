"""Cancelling and refunding at the buyer's request: unpaid orders cancel at once, paid ones go through a
refund request that the back office completes (or rejects), so every undone sale leaves a record."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from commerce.errors import Conflict, InvalidState, NotFound
from commerce.orders import Order
from commerce.refunds import RefundRequest
from commerce.services import orders as order_service
from commerce.services._util import required_text
from commerce.sqltypes import as_utc, utcnow

REFUNDABLE = ("paid", "customs_cleared", "shipped", "delivered", "completed")


def cancel_unpaid_order(
    session: Session, order_id: int, reason: str, *, shopper_id: str | None = None, at: datetime | None = None
) -> Order:
    """The buyer's cancellation: only an unpaid order cancels directly; a paid one needs a refund request.
    With `shopper_id`, someone else's order is not found."""
    order = order_service.get_order(session, order_id, shopper_id=shopper_id)
    if order.status in REFUNDABLE:
        raise InvalidState(
            f"order {order_id} is {order.status}: paid orders are undone by a refund request",
            code="refund_required",
        )
    return order_service.cancel_order(session, order_id, reason, at=at)


def request_refund(
    session: Session, order_id: int, reason: str, *, shopper_id: str | None = None, at: datetime | None = None
) -> RefundRequest:
    """Open the refund request of a paid order (one per order)."""
    reason = required_text(reason, "reason", 2000)
    order = order_service.get_order(session, order_id, shopper_id=shopper_id)
    if order.status not in REFUNDABLE:
        raise InvalidState(
            f"order {order_id} is {order.status}; only paid orders are refunded", code="not_refundable"
        )
    if session.scalar(select(RefundRequest.id).where(RefundRequest.order_id == order_id)) is not None:
        raise Conflict(f"order {order_id} already has a refund request", code="refund_already_requested")
    request = RefundRequest(
        order_id=order_id, shopper_id=order.shopper_id, reason=reason, requested_at=as_utc(at or utcnow())
    )
    session.add(request)
    session.flush()
    return request


def get_refund_request(session: Session, request_id: int, *, shopper_id: str | None = None) -> RefundRequest:
    request = session.get(RefundRequest, request_id)
    if request is None or (shopper_id is not None and request.shopper_id != shopper_id):
        raise NotFound(f"unknown refund request {request_id}", code="refund_request_not_found")
    return request


def _resolve(session: Session, request_id: int, to: str, note: str | None, at: datetime) -> RefundRequest:
    request = get_refund_request(session, request_id)
    done = session.execute(
        update(RefundRequest.__table__)
        .where(RefundRequest.id == request_id, RefundRequest.status == "requested")
        .values(status=to, resolved_at=at, resolution_note=note)
    ).rowcount
    if done != 1:
        raise InvalidState(f"refund request {request_id} is already {request.status}", code="refund_resolved")
    session.refresh(request)
    return request


def complete_refund(
    session: Session, request_id: int, note: str | None = None, *, at: datetime | None = None
) -> RefundRequest:
    """The back office refunds: the order becomes `refunded` (stock, coupon and quota given back)."""
    at = as_utc(at or utcnow())
    request = _resolve(session, request_id, "completed", note, at)
    order_service.refund_order(session, request.order_id, request.reason, at=at)
    return request


def reject_refund(
    session: Session, request_id: int, note: str, *, at: datetime | None = None
) -> RefundRequest:
    return _resolve(
        session, request_id, "rejected", required_text(note, "note", 2000), as_utc(at or utcnow())
    )
