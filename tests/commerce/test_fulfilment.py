"""Stock per warehouse: which warehouse serves a line, splitting a line, and release/payment/refund per
warehouse row; split fulfilment never oversells under 50 concurrent checkouts (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from commerce.catalog import Stock
from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.logistics import lane_zone
from commerce.orders import LineAllocation, Order
from commerce.services import catalog, orders
from commerce.services.checkout import CartLine, checkout
from commerce.services.logistics import (
    DeliveryWindow,
    StockSource,
    allocate_line,
)
from commerce.services.pending import expire_order
from tests.commerce.conftest import NOW
from tests.commerce.test_concurrency import WORKERS, _add_shoppers, run_concurrently

WAREHOUSES = ("bonded-default", "bonded-south", "bonded-north")  # Zhejiang, Guangdong, Tianjin


def _source(warehouse, available, cost, promise, stock_id=None):
    return StockSource(
        stock_id or hash(warehouse) % 1000,
        warehouse,
        available,
        "east",
        Decimal(cost),
        DeliveryWindow(1, promise, promise),
    )


def test_one_warehouse_serves_the_line_when_one_can_soonest_by_default_cheapest_within_the_rule():
    near = _source("near", 10, "20", 1.5, 1)
    far = _source("far", 10, "8", 3.0, 2)
    small_fast = _source("tiny", 2, "5", 1.0, 3)
    # no rule: the soonest warehouse that holds every unit; the faster one cannot, and no split is needed
    assert allocate_line([near, far, small_fast], 5, None) == [(near, 5)]
    # "within 3 days": the cheapest that promises it; "within 2": only the near one can
    assert allocate_line([near, far, small_fast], 5, 3) == [(far, 5)]
    assert allocate_line([near, far, small_fast], 5, 2) == [(near, 5)]
    # nobody promises a day: the soonest, as for partners
    assert allocate_line([near, far], 5, 1) == [(near, 5)]


def test_a_line_is_split_only_when_no_warehouse_holds_every_unit():
    a, b, c = _source("a", 3, "9", 1.0, 1), _source("b", 4, "6", 2.0, 2), _source("c", 5, "5", 4.0, 3)
    assert allocate_line([a, b, c], 5, None) == [(c, 5)]
    assert allocate_line([a, b, c], 6, None) == [(a, 3), (b, 3)]  # soonest first, then the next
    assert allocate_line([a, b, c], 12, None) == [(a, 3), (b, 4), (c, 5)]
    assert allocate_line([a, b, c], 9, 5) == [(c, 5), (b, 4)]  # all promise 5 days: cheapest first
    with pytest.raises(ValueError, match="not enough stock"):
        allocate_line([a, b, c], 13, None)
    with pytest.raises(ValueError, match="not enough stock"):
        allocate_line([_source("empty", 0, "1", 1.0)], 1, None)


def test_lane_zone_is_the_east_china_lane_of_the_same_length():
    assert lane_zone("bonded", "Zhejiang", "Sichuan") == "west"  # East China origin: the destination zone
    assert lane_zone("bonded", None, "Beijing") == "north"
    assert lane_zone("bonded", "Guangdong", "Fujian") == "east"  # same zone: a local lane
    assert lane_zone("bonded", "Guangdong", "Shanghai") == "central"  # one step
    assert lane_zone("bonded", "Guangdong", "Beijing") == "west"  # two steps
    assert lane_zone("bonded", "Tianjin", "Xinjiang") == "remote"
    assert lane_zone("direct_mail", None, "Guangdong") == "south"  # from abroad: flat by destination


def _stock(factory, product_id, units):
    """Move the product's stock to the partners' three bonded zones (the fixture's own locations empty)."""
    with transaction(factory) as s:
        for location in s.scalars(select(Stock.location).where(Stock.product_id == product_id)).all():
            catalog.set_stock(s, product_id, location, 0)
        for warehouse, qty in zip(WAREHOUSES, units, strict=True):
            catalog.set_stock(s, product_id, warehouse, qty)


def _rows(factory, product_id):
    with factory() as s:
        rows = s.scalars(select(Stock).where(Stock.product_id == product_id, Stock.location.in_(WAREHOUSES)))
        return {r.location: (r.quantity, r.reserved) for r in rows}


def _days_by_zone(lanes, at):
    """A stand-in delivery model: the local lane is fastest, farther lanes slower."""
    days = {"east": 1.0, "central": 2.0, "north": 2.0, "south": 2.0, "west": 3.5, "remote": 6.0}
    return [DeliveryWindow(days[lane.zone] - 0.5, days[lane.zone], days[lane.zone] + 0.5) for lane in lanes]


def test_checkout_ships_from_the_nearest_warehouse_and_splits_a_line_when_needed(market):
    _stock(market, "p_tea", (2, 5, 5))
    with transaction(market) as s:
        # the shoppers live in Zhejiang: Hangzhou is local, Guangzhou and Tianjin one step away
        one = checkout(s, "s0", [CartLine("p_tea", 2)], at=NOW, estimator=_days_by_zone)
        assert [(a.stock_id, a.quantity) for a in one.lines[0].allocations] == [
            (_id(s, "p_tea", "bonded-default"), 2)
        ]
        assert (one.delivery_earliest, one.delivery_latest) == (
            NOW + timedelta(days=0.5),
            NOW + timedelta(days=1.5),
        )
        split = checkout(s, "s1", [CartLine("p_tea", 7)], at=NOW, estimator=_days_by_zone)
        got = {a.stock_id: a.quantity for a in split.lines[0].allocations}
        # none holds 7: Tianjin and Guangzhou are both one step away, alike in days and price
        assert got == {_id(s, "p_tea", "bonded-north"): 5, _id(s, "p_tea", "bonded-south"): 2}
        assert split.delivery_latest == NOW + timedelta(days=2.5)  # the slower parcel sets the window
    assert _rows(market, "p_tea") == {
        "bonded-default": (2, 2),
        "bonded-south": (5, 2),
        "bonded-north": (5, 5),
    }


def test_release_payment_and_refund_move_each_warehouse_row_once(market):
    _stock(market, "p_cream", (0, 2, 2))
    with transaction(market) as s:
        first = checkout(s, "s0", [CartLine("p_cream", 3)], at=NOW).order_id
    assert sorted(_rows(market, "p_cream").values()) == [(0, 0), (2, 1), (2, 2)]
    ttl = timedelta(minutes=30)
    for _ in range(2):  # a second sweep releases nothing more
        with transaction(market) as s:
            expire_order(s, first, ttl, now=NOW + timedelta(hours=1))
    assert _rows(market, "p_cream") == {
        "bonded-default": (0, 0),
        "bonded-south": (2, 0),
        "bonded-north": (2, 0),
    }
    with transaction(market) as s:
        paid = checkout(s, "s1", [CartLine("p_cream", 3)], at=NOW).order_id
        orders.pay_order(s, paid, "pay-1", at=NOW)
    assert sorted(_rows(market, "p_cream").values()) == [(0, 0), (0, 0), (1, 0)]
    with transaction(market) as s:
        orders.refund_order(s, paid, "changed mind", at=NOW)  # refunded before shipping: units return
    assert _rows(market, "p_cream") == {
        "bonded-default": (0, 0),
        "bonded-south": (2, 0),
        "bonded-north": (2, 0),
    }


def test_bonded_goods_are_never_held_in_an_overseas_warehouse(market):
    with transaction(market) as s, pytest.raises(ValidationError) as err:
        catalog.set_stock(s, "p_cream", "overseas-us", 5)
    assert err.value.code == "warehouse_mode"
    with transaction(market) as s, pytest.raises(ValidationError):
        catalog.set_stock(s, "p_mail", "bonded-south", 5)


def _id(s, product_id, location):
    return s.scalar(select(Stock.id).where(Stock.product_id == product_id, Stock.location == location))


def test_fifty_concurrent_split_checkouts_never_oversell(market):
    """12 units over three warehouses (4 each), 50 buyers of 3: every order after the first few needs a
    split; exactly 4 orders fit, and each row ends with reserved <= quantity, sold out after payment."""
    _add_shoppers(market, WORKERS)
    _stock(market, "p_cream", (4, 4, 4))

    def buy(i):
        with transaction(market) as s:
            order = checkout(s, f"c{i}", [CartLine("p_cream", 3)], at=NOW, estimator=_days_by_zone)
            orders.pay_order(s, order.order_id, f"pay-{i}", at=NOW)
            return order.order_id

    ok, refused = run_concurrently(buy)
    assert len(ok) == 4 and set(refused) == {"out_of_stock"}
    assert _rows(market, "p_cream") == {
        "bonded-default": (0, 0),
        "bonded-south": (0, 0),
        "bonded-north": (0, 0),
    }
    with market() as s:
        allocated = s.scalar(select(func.sum(LineAllocation.quantity)))
        assert allocated == 12 and s.scalar(select(func.count()).select_from(Order)) == 4
        splits = s.scalar(select(func.count()).select_from(LineAllocation))
        assert splits > 4  # some lines drew on two warehouses
