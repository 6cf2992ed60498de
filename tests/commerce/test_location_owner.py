"""Stock locations' owners (`commerce.logistics.usable_by`): a location first named for a merchant's product
is that merchant's own; another merchant can neither stock there nor see it, and learns nothing of its
goods from the refusal; platform locations (no owner, the fixture's `HZ-1`) serve every merchant."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from commerce.db import transaction
from commerce.errors import Conflict, Forbidden
from commerce.logistics import Warehouse
from commerce.services import catalog, logistics


def _product(merchant_id: str, brand: str, fulfillment: str, stock: dict) -> catalog.ProductInput:
    return catalog.ProductInput(
        sku=f"SKU-{merchant_id}-{fulfillment}", merchant_id=merchant_id, title="T", category_id="food",
        brand=brand, origin_country="JP", price="10.00", fulfillment=fulfillment, stock=stock,
    )  # fmt: skip


def test_a_merchants_own_location_is_refused_to_another_before_its_mode(market):
    with transaction(market) as s:
        catalog.set_stock(s, "p_tea", "ok-shed", 3)
        assert s.get(Warehouse, "ok-shed").owner_merchant_id == "m_ok"
    for attempt in (
        lambda s: catalog.set_stock(s, "p_bad", "ok-shed", 1),  # m_sus's bonded product
        lambda s: catalog.create_product(s, _product("m_sus", "Shady", "direct_mail", {"ok-shed": 1})),
        lambda s: catalog.create_product(s, _product("m_sus", "Shady", "bonded", {"ok-shed": 1})),
    ):
        with transaction(market) as s, pytest.raises(Forbidden) as refused:
            attempt(s)
        assert refused.value.code == "location_forbidden"
        assert refused.value.message == "location 'ok-shed' is another merchant's own"
    with market() as s:
        assert s.get(catalog.Product, "p_bad").stock[0].location == "HZ-1"  # unchanged, no row added
        assert [
            w.warehouse_id for w in logistics.list_warehouses(s, merchant_id="m_sus") if w.partner_id is None
        ] == ["HZ-1"]
        own = {
            w.warehouse_id for w in logistics.list_warehouses(s, merchant_id="m_ok") if w.partner_id is None
        }
        assert own == {"HZ-1", "HZ-2", "JP-1", "ok-shed"}


def test_a_platform_location_serves_every_merchant(market):
    with transaction(market) as s:
        assert s.get(Warehouse, "HZ-1").owner_merchant_id is None
        assert catalog.set_stock(s, "p_bad", "HZ-1", 7).quantity == 7
        assert catalog.set_stock(s, "p_tea", "HZ-1", 8).quantity == 8


def test_an_owner_is_assigned_only_where_no_other_merchants_goods_are(market):
    with transaction(market) as s:
        with pytest.raises(Conflict) as refused:
            logistics.set_location_owner(s, "HZ-1", "m_ok")  # m_sus's p_bad is stocked there
        assert refused.value.code == "location_in_use"
    with transaction(market) as s:
        assert logistics.set_location_owner(s, "HZ-2", "m_ok")[1] == "m_ok"  # already its own
        warehouse, previous = logistics.set_location_owner(s, "bonded-north", "m_sus")
        assert (warehouse.owner_merchant_id, previous) == ("m_sus", None)
    with transaction(market) as s, pytest.raises(Forbidden):
        catalog.set_stock(s, "p_tea", "bonded-north", 1)
    with transaction(market) as s:
        assert logistics.set_location_owner(s, "bonded-north", None)[0].owner_merchant_id is None
        assert catalog.set_stock(s, "p_tea", "bonded-north", 1).quantity == 1


def test_stock_set_while_an_admin_assigns_the_owner_waits_and_is_refused(market):
    """On PostgreSQL a stock set read the location's owner without a lock: once an admin's assignment had
    locked the location and before it wrote the owner, the stock set read no owner, waited only at its
    insert's foreign-key check (so the admin's count of other merchants' stock missed it) and then stocked
    the goods at what was now another merchant's own location. It reads the owner under a share lock, so
    it waits for the assignment and sees it (SQLite serializes the two writers anyway)."""
    with ThreadPoolExecutor(max_workers=1) as pool, transaction(market) as s:
        s.get(Warehouse, "bonded-north", with_for_update=True)  # `set_location_owner`'s first step
        racer = pool.submit(_set_stock, market, "p_bad", "bonded-north")
        time.sleep(0.5)
        assert not racer.done()  # waits for the admin's transaction
        logistics.set_location_owner(s, "bonded-north", "m_ok")
    with pytest.raises(Forbidden):
        racer.result(timeout=30)
    with market() as s:
        assert [r.location for r in s.get(catalog.Product, "p_bad").stock] == ["HZ-1"]


def _set_stock(factory, product_id: str, location: str) -> None:
    with transaction(factory) as s:
        catalog.set_stock(s, product_id, location, 1)
