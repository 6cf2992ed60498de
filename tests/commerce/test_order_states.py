"""The order state machine, property-based against a real database: any sequence of actions either follows
the transition table or is refused with InvalidState and changes nothing; stock and the annual counter
always match a simple model of what should have happened."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from commerce.catalog import Stock
from commerce.db import transaction
from commerce.errors import InvalidState
from commerce.orders import COUNTED_STATUSES, ORDER_STATUSES, Order
from commerce.services import orders
from commerce.services.checkout import CartLine, checkout
from tests.commerce.conftest import NOW

ACTIONS = {
    "paid": lambda s, oid: orders.pay_order(s, oid, "ref", at=NOW),
    "customs_cleared": lambda s, oid: orders.clear_customs(s, oid, at=NOW),
    "shipped": lambda s, oid: orders.ship_order(s, oid, f"TRK{oid}", at=NOW),
    "delivered": lambda s, oid: orders.deliver_order(s, oid, at=NOW),
    "completed": lambda s, oid: orders.complete_order(s, oid, at=NOW),
    "cancelled": lambda s, oid: orders.cancel_order(s, oid, "test", at=NOW),
    "refunded": lambda s, oid: orders.refund_order(s, oid, "test", at=NOW),
}


def test_transition_table_is_closed_and_terminal_states_are_final():
    assert set(orders.TRANSITIONS) == set(ORDER_STATUSES)
    assert all(targets <= set(ORDER_STATUSES) for targets in orders.TRANSITIONS.values())
    assert not orders.TRANSITIONS["cancelled"] and not orders.TRANSITIONS["refunded"]
    assert orders.can_transition("pending_payment", "cancelled") and orders.can_transition(
        "paid", "cancelled"
    )
    assert not orders.can_transition("shipped", "cancelled")
    assert not orders.can_transition("pending_payment", "refunded")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(sorted(ACTIONS)), min_size=1, max_size=8))
def test_any_action_sequence_follows_the_table(market, steps):
    factory = market
    with transaction(factory) as s:
        order = checkout(s, "s1", [CartLine("p_self", 1)], at=NOW)
        stock_id, value, digest = (
            order.lines[0].allocations[0].stock_id,
            order.goods_value,
            order.identity_digest,
        )
        base_annual = orders.annual_spend(s, digest, 2026)
        base = s.get(Stock, stock_id)
        quantity, reserved = base.quantity, base.reserved  # after this order's reservation
    status, applied = "pending_payment", 1
    for to in steps:
        legal = orders.can_transition(status, to)
        try:
            with transaction(factory) as s:
                ACTIONS[to](s, order.order_id)
        except InvalidState:
            assert not legal
        else:
            assert legal
            if to == "paid":
                quantity, reserved = quantity - 1, reserved - 1
            elif to == "cancelled" and status == "pending_payment":
                reserved -= 1
            elif to in ("cancelled", "refunded") and status == "paid":
                quantity += 1
            status, applied = to, applied + 1
        with factory() as s:
            stored = s.get(Order, order.order_id)
            assert stored.status == status
            row = s.get(Stock, stock_id)
            assert (row.quantity, row.reserved) == (quantity, reserved)
            counted = value if status in COUNTED_STATUSES else Decimal(0)
            assert orders.annual_spend(s, digest, 2026) - base_annual == counted
            trace = orders.trace_order(s, order.order_id)
            assert [t.status for t in trace if t.kind == "status"][-1] == status
            assert sum(t.kind == "status" for t in trace) == applied
    # leave the shared stock as the next example expects: release anything still reserved
    with transaction(factory) as s:
        if s.scalar(select(Order.status).where(Order.order_id == order.order_id)) == "pending_payment":
            orders.cancel_order(s, order.order_id, "cleanup", at=NOW)
