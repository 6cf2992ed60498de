"""A merchant's orders: those waiting to ship (paid or cleared through customs) and those shipped, with
their parcel's carrier and latest scan; an order is a merchant's when one of its lines is that merchant's
goods. Read-only: the order state machine is `commerce.services.orders`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from commerce.catalog import Product
from commerce.errors import NotFound
from commerce.logistics import LogisticsPartner, Shipment, TrackingEvent
from commerce.orders import Order, OrderLine
from commerce.services.orders import TraceStep, trace_order
from commerce.services.pagination import Page, paginate

TO_SHIP = ("paid", "customs_cleared")


def _mine(merchant_id: str):
    return select(OrderLine.order_id).where(OrderLine.merchant_id == merchant_id)


@dataclass(frozen=True)
class OrderToShip:
    """An order waiting to ship as the merchant's list shows it: `total` is its own lines' (goods less
    discount, plus tax). The order's whole total told a merchant what the others in a mixed order sold."""

    order: Order
    total: Decimal


def orders_to_ship(session: Session, merchant_id: str, *, limit: int = 25) -> list[OrderToShip]:
    """Oldest first (first paid, first shipped), at most `limit`; one query through the lines' merchant
    index, no count."""
    stmt = (
        select(Order, func.sum(OrderLine.total))
        .join(OrderLine, OrderLine.order_id == Order.order_id)
        .where(OrderLine.merchant_id == merchant_id, Order.status.in_(TO_SHIP))
        .group_by(Order.order_id)
        .order_by(Order.order_id)
        .limit(limit)
    )
    return [OrderToShip(order, total) for order, total in session.execute(stmt)]


@dataclass(frozen=True)
class ShippedOrder:
    """A shipped order as the merchant's list shows it: its parcel, carrier and latest scan."""

    order: Order
    shipment: Shipment
    carrier: str
    latest: TrackingEvent | None


def latest_scans(session: Session, shipment_ids: list[int]) -> dict[int, TrackingEvent]:
    """Each parcel's most recent scan by when it happened (scans may be reported out of order), in one
    query for the whole page: reading each parcel's events cost one query per order listed."""
    newest_first = (TrackingEvent.occurred_at.desc(), TrackingEvent.id.desc())
    rank = func.row_number().over(partition_by=TrackingEvent.shipment_id, order_by=newest_first)
    ranked = (
        select(TrackingEvent.id, rank.label("rank"))
        .where(TrackingEvent.shipment_id.in_(shipment_ids))
        .subquery()
    )
    stmt = select(TrackingEvent).join(ranked, TrackingEvent.id == ranked.c.id).where(ranked.c.rank == 1)
    return {event.shipment_id: event for event in session.scalars(stmt)}


def shipped_orders(
    session: Session, merchant_id: str, *, limit: int = 25, offset: int = 0
) -> Page[ShippedOrder]:
    """Orders with the merchant's goods that left the warehouse (they have a shipment), the most recently
    shipped first: delivered, completed and refunded-after-shipping ones too. A fixed number of queries
    whatever the page's size."""
    stmt = (
        select(Shipment)
        .where(Shipment.order_id.in_(_mine(merchant_id)))
        .order_by(Shipment.created_at.desc(), Shipment.id.desc())
    )
    page = paginate(session, stmt, limit=limit, offset=offset)
    orders = {
        o.order_id: o
        for o in session.scalars(select(Order).where(Order.order_id.in_([s.order_id for s in page.items])))
    }
    names = dict(session.execute(select(LogisticsPartner.partner_id, LogisticsPartner.name)).all())
    latest = latest_scans(session, [s.id for s in page.items])
    items = [
        ShippedOrder(orders[s.order_id], s, names.get(s.partner_id, s.partner_id), latest.get(s.id))
        for s in page.items
    ]
    return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)


@dataclass(frozen=True)
class MerchantOrder:
    """One order as its merchant sees it: only its own lines, the parcel (None before shipping), its
    carrier's name and the order's steps (`merchant_order` says which)."""

    order: Order
    lines: list[OrderLine]
    shipment: Shipment | None
    carrier: str
    titles: dict[str, str]  # product_id -> title, for its lines
    steps: list[TraceStep]


def merchant_order(session: Session, merchant_id: str, order_id: int) -> MerchantOrder:
    """An order holding the merchant's goods; any other order is reported as not found (no existence
    leak, as for a shopper's orders). The one rule of what a merchant sees of an order: its own lines,
    every status change and carrier scan (the order moves as a whole), and the reasons given for them
    (a shopper's cancel or refund words) only when every line is its own: in a mixed order they may be
    about another merchant's goods."""
    order = session.get(Order, order_id)
    lines = [line for line in order.lines if line.merchant_id == merchant_id] if order is not None else []
    if not lines:
        raise NotFound(f"unknown order {order_id}", code="order_not_found")
    shipment = session.scalar(select(Shipment).where(Shipment.order_id == order_id))
    partner = session.get(LogisticsPartner, order.partner_id)
    ids = {line.product_id for line in lines}
    titles = dict(
        session.execute(select(Product.product_id, Product.title).where(Product.product_id.in_(ids))).all()
    )
    carrier = partner.name if partner is not None else order.partner_id
    steps = trace_order(session, order_id)
    if len(lines) < len(order.lines):
        steps = [replace(s, detail=None) if s.kind == "status" else s for s in steps]
    return MerchantOrder(order, lines, shipment, carrier, titles, steps)
