"""Revenue by source and period, sponsored placements, shipment tracking and delivery estimates."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from commerce.db import transaction
from commerce.errors import InvalidState, NotFound, ValidationError
from commerce.services import logistics, orders, revenue
from commerce.services.checkout import CartLine, checkout
from tests.commerce.conftest import NOW


def test_revenue_report_by_source_and_month(market):
    with transaction(market) as s:
        a = checkout(s, "s0", [CartLine("p_cream", 1)], at=NOW)  # marketplace: 300 x 8% = 24.00
        orders.pay_order(s, a.order_id, "pa", at=NOW)
        b = checkout(s, "s0", [CartLine("p_self", 2)], at=NOW)  # self-operated: 400 - 240 = 160.00
        orders.pay_order(s, b.order_id, "pb", at=NOW + timedelta(days=31))
        c = checkout(s, "s0", [CartLine("p_tea", 1)], at=NOW)  # refunded: earns nothing
        orders.pay_order(s, c.order_id, "pc", at=NOW)
        orders.refund_order(s, c.order_id, "damaged")
        checkout(s, "s1", [CartLine("p_tea", 1)], at=NOW)  # unpaid: earns nothing
        revenue.buy_placement(s, "m_ok", "p_tea", "home-banner", NOW, NOW + timedelta(days=7), "1500.00")
    with market() as s:
        rows = revenue.revenue_report(s, NOW - timedelta(days=1), NOW + timedelta(days=60))
    got = {(r.period, r.source): r.amount for r in rows}
    assert got == {
        ("2026-06", "commission"): Decimal("24.00"),
        ("2026-06", "self_operated_margin"): Decimal("0"),
        ("2026-06", "promotion"): Decimal("1500.00"),
        ("2026-07", "commission"): Decimal("0"),
        ("2026-07", "self_operated_margin"): Decimal("160.00"),
        ("2026-07", "promotion"): Decimal("0"),
        ("2026-06", "search_ads"): Decimal("0"),
        ("2026-07", "search_ads"): Decimal("0"),
    }


def test_placements_are_validated(market):
    with transaction(market) as s:
        with pytest.raises(ValidationError) as err:
            revenue.buy_placement(s, "m_sus", "p_bad", "x", NOW, NOW + timedelta(days=1), "1")
        assert err.value.code == "merchant_not_approved"
        with pytest.raises(ValidationError) as err:
            revenue.buy_placement(s, "m_ok", "p_bad", "x", NOW, NOW + timedelta(days=1), "1")
        assert err.value.code == "not_own_product"
        with pytest.raises(ValidationError):
            revenue.buy_placement(s, "m_ok", "p_tea", "x", NOW, NOW, "1")
        with pytest.raises(ValidationError):
            revenue.revenue_report(s, NOW, NOW, period="week")


def test_order_is_traceable_end_to_end(market):
    with transaction(market) as s:
        partners = [p.partner_id for p in logistics.list_partners(s, "direct_mail")]
        assert partners == ["dhl-express", "cainiao-global", "ems-intl"]  # fastest first
        order = checkout(s, "s0", [CartLine("p_mail", 1)], partner_id="ems-intl", at=NOW)
        assert (order.delivery_earliest, order.delivery_latest) == (
            NOW + timedelta(days=5),
            NOW + timedelta(days=7),
        )
        with pytest.raises(ValidationError):
            checkout(s, "s0", [CartLine("p_mail", 1)], partner_id="sf-bonded", at=NOW)
        with pytest.raises(NotFound):
            checkout(s, "s0", [CartLine("p_mail", 1)], partner_id="dhl", at=NOW)
    with transaction(market) as s:
        with pytest.raises(InvalidState):
            orders.ship_order(s, order.order_id, "EMS1")  # not paid, not cleared
    steps = [
        lambda s: orders.pay_order(s, order.order_id, "p", at=NOW + timedelta(hours=1)),
        lambda s: orders.clear_customs(s, order.order_id, at=NOW + timedelta(days=1)),
        lambda s: orders.ship_order(s, order.order_id, "EMS1", location="Osaka", at=NOW + timedelta(days=2)),
        lambda s: orders.add_tracking_event(
            s, order.order_id, "arrived_hub", location="Shanghai", at=NOW + timedelta(days=4)
        ),
        lambda s: orders.deliver_order(s, order.order_id, at=NOW + timedelta(days=6)),
        lambda s: orders.complete_order(s, order.order_id, at=NOW + timedelta(days=7)),
    ]
    for step in steps:
        with transaction(market) as s:
            step(s)
    with market() as s:
        trace = [(t.kind, t.status) for t in orders.trace_order(s, order.order_id, shopper_id="s0")]
        with pytest.raises(NotFound):
            orders.get_order(s, order.order_id, shopper_id="s1")  # someone else's order looks absent
    assert trace == [
        ("status", "pending_payment"),
        ("status", "paid"),
        ("status", "customs_cleared"),
        ("status", "shipped"),
        ("tracking", "shipped"),
        ("tracking", "arrived_hub"),
        ("status", "delivered"),
        ("tracking", "delivered"),
        ("status", "completed"),
    ]


def test_the_trace_keeps_recording_order_when_a_replica_clock_is_behind(market):
    with transaction(market) as s:
        order = checkout(s, "s0", [CartLine("p_mail", 1)], partner_id="ems-intl", at=NOW)
        orders.pay_order(s, order.order_id, "p", at=NOW + timedelta(hours=1))
        orders.clear_customs(s, order.order_id, at=NOW + timedelta(days=1))
        orders.ship_order(s, order.order_id, "EMS1", at=NOW + timedelta(days=2))
        behind = NOW + timedelta(days=1, hours=2)  # the next steps recorded by a replica a day behind
        orders.add_tracking_event(s, order.order_id, "arrived_hub", at=behind)
        orders.deliver_order(s, order.order_id, at=behind + timedelta(hours=1))
        trace = orders.trace_order(s, order.order_id)
    assert [(t.kind, t.status) for t in trace][-4:] == [  # was: arrived_hub and delivered before shipped
        ("tracking", "shipped"),
        ("tracking", "arrived_hub"),
        ("status", "delivered"),
        ("tracking", "delivered"),
    ]
    assert all(a.at < b.at for a, b in zip(trace, trace[1:], strict=False))  # never before what it follows
