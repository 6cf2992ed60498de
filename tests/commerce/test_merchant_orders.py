"""A merchant's shipped orders (`commerce.services.merchant_orders.shipped_orders`, the console's Shipments
page): each with its parcel's latest scan by when it happened, in a number of statements that does not
grow with the page (reading each parcel's events was one query per order)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select

from commerce.db import transaction
from commerce.logistics import Shipment, TrackingEvent
from commerce.services import orders
from commerce.services.checkout import CartLine, checkout
from commerce.services.merchant_orders import shipped_orders
from tests.commerce.conftest import NOW


def _ship(factory, count: int, first: int) -> None:
    """`count` shipped orders of p_tea (m_ok's), each scanned twice: the later scan recorded first, as an
    importer may (a scan added now is dated after the last step: `orders._after_last_step`)."""
    with transaction(factory) as s:
        for i in range(first, first + count):
            shopper = f"s{i % 3}"
            order_id = checkout(s, shopper, [CartLine("p_tea", 1)], at=NOW).order_id
            orders.pay_order(s, order_id, f"pay-{i}", at=NOW)
            orders.clear_customs(s, order_id, at=NOW + timedelta(hours=1))
            orders.ship_order(s, order_id, f"TRK-{i}", at=NOW + timedelta(hours=2))
            shipment = s.scalar(select(Shipment).where(Shipment.order_id == order_id))
            later, earlier = NOW + timedelta(hours=9), NOW + timedelta(hours=5)
            s.add(TrackingEvent(shipment_id=shipment.id, status=f"hub-{i}", occurred_at=later))
            s.add(TrackingEvent(shipment_id=shipment.id, status="departed", occurred_at=earlier))


def _statements(factory, limit: int = 25) -> tuple[int, list]:
    seen: list[str] = []
    with transaction(factory) as s:
        listen = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(s.get_bind(), "before_cursor_execute", listen)
        try:
            page = shipped_orders(s, "m_ok", limit=limit)
            latest = [(item.shipment.tracking_no, item.latest and item.latest.status) for item in page.items]
        finally:
            event.remove(s.get_bind(), "before_cursor_execute", listen)
    return len(seen), latest


def test_shipped_orders_read_a_page_in_a_fixed_number_of_statements(market):
    _ship(market, 3, 0)
    few, latest = _statements(market)
    assert sorted(latest) == sorted((f"TRK-{i}", f"hub-{i}") for i in range(3))  # by time, not by id
    _ship(market, 27, 3)
    many, latest = _statements(market)
    assert len(latest) == 25 and all(status == f"hub-{no[4:]}" for no, status in latest)
    assert many == few, (few, many)
