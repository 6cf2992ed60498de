"""Merchant review workflow, catalog validation and the sellable-products rule."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from commerce.catalog import Product
from commerce.db import transaction
from commerce.errors import Conflict, InvalidState, NotFound, ValidationError
from commerce.merchants import Merchant
from commerce.services import catalog, merchants


def _product(merchant_id="m_new", **overrides):
    fields = dict(
        sku="SKU-new",
        merchant_id=merchant_id,
        title="Serum",
        category_id="cosmetics",
        brand="Lumi",
        origin_country="kr",
        price="129.00",
        fulfillment="direct_mail",
        stock={"KR-1": 4},
        product_id="p_new",
    )
    return catalog.ProductInput(**{**fields, **overrides})


def test_review_workflow_and_sellable_products(market):
    with transaction(market) as s:
        m = merchants.apply(s, merchants.MerchantApplication("Lumi Co", "kr", "KR-77", ["Lumi"], "m_new"))
        assert (m.status, m.country, [b.brand for b in m.brands]) == ("pending", "KR", ["Lumi"])
        p = catalog.create_product(s, _product())
        assert p.origin_country == "KR" and p.stock[0].available == 4
        assert "p_new" not in catalog.sellable_product_ids(s)  # pending merchant
    with transaction(market) as s:
        merchants.approve(s, "m_new")
        assert "p_new" in catalog.sellable_product_ids(s)
        merchants.suspend(s, "m_new", "expired brand licence")
        assert "p_new" not in catalog.sellable_product_ids(s)
        with pytest.raises(InvalidState):
            merchants.approve(s, "m_new")  # suspended merchants are reinstated, not re-approved
        merchants.reinstate(s, "m_new")
        catalog.update_product(s, "p_new", status="delisted")
        assert "p_new" not in catalog.sellable_product_ids(s)
        catalog.update_product(s, "p_new", status="listed")
        assert [p.product_id for p in catalog.sellable_products(s, ["p_new", "p_bad"])] == ["p_new"]
        history = [(h.from_status, h.to_status) for h in merchants.history(s, "m_new")]
        assert history == [
            (None, "pending"),
            ("pending", "approved"),
            ("approved", "suspended"),
            ("suspended", "approved"),
        ]
    with transaction(market) as s:
        catalog.set_stock(s, "p_tea", "HZ-1", 0)
        catalog.set_stock(s, "p_tea", "HZ-2", 0)
        in_stock = catalog.sellable_product_ids(s, in_stock=True)
        assert "p_tea" not in in_stock and "p_cream" in in_stock


def test_rejection_needs_a_reason_and_is_final(market):
    with transaction(market) as s:
        merchants.apply(s, merchants.MerchantApplication("Fake Co", "US", "US-1", ["Nope"], "m_rej"))
        with pytest.raises(ValidationError):
            merchants.reject(s, "m_rej", "  ")
        m = merchants.reject(s, "m_rej", "licence could not be verified")
        assert (m.status, m.status_reason) == ("rejected", "licence could not be verified")
        with pytest.raises(InvalidState):
            merchants.approve(s, "m_rej")
        page = merchants.list_merchants(s, status="rejected", limit=10)
        assert (page.total, [x.merchant_id for x in page.items]) == (1, ["m_rej"])


BAD_INPUTS = [
    (lambda s: catalog.create_product(s, _product(price="-1")), ValidationError, "invalid_price"),
    (lambda s: catalog.create_product(s, _product(price=1.5)), ValidationError, "invalid_money"),
    (lambda s: catalog.create_product(s, _product(merchant_id="ghost")), NotFound, "merchant_not_found"),
    (lambda s: catalog.create_product(s, _product(brand="Acme")), ValidationError, "brand_not_authorized"),
    (
        lambda s: catalog.create_product(s, _product("m_ok", brand="Acme", category_id="beauty")),
        ValidationError,
        "category_not_leaf",
    ),
    (  # m_ok's own SKU (another merchant's is free: tests/security/test_sku_per_merchant.py)
        lambda s: catalog.create_product(
            s, _product("m_ok", brand="Acme", category_id="food", sku="SKU-p_tea")
        ),
        Conflict,
        "duplicate_sku",
    ),
    (lambda s: catalog.create_product(s, _product(stock={"KR-1": -2})), ValidationError, "invalid_quantity"),
    (
        lambda s: catalog.create_product(s, _product(fulfillment="drone")),
        ValidationError,
        "invalid_fulfillment",
    ),
    (
        lambda s: catalog.create_product(s, _product(self_operated=True)),
        ValidationError,
        "missing_cost_price",
    ),
    (
        lambda s: catalog.create_product(s, _product(origin_country="Korea")),
        ValidationError,
        "invalid_country",
    ),
    (
        lambda s: merchants.apply(s, merchants.MerchantApplication("Dup", "JP", "LIC-m_ok", ["X"])),
        Conflict,
        "duplicate_licence",
    ),
    (
        lambda s: merchants.apply(s, merchants.MerchantApplication("No", "JP", "L", [])),
        ValidationError,
        "missing_brands",
    ),
    (
        lambda s: catalog.create_category(s, catalog.CategoryInput("x", "X", vat_rate=Decimal("1.2"))),
        ValidationError,
        "invalid_rate",
    ),
    (lambda s: catalog.set_stock(s, "p_nope", "HZ-1", 3), NotFound, "product_not_found"),
]


def test_bad_catalog_input_is_refused_and_changes_nothing(market):
    with transaction(market) as s:
        merchants.apply(s, merchants.MerchantApplication("Lumi Co", "KR", "KR-77", ["Lumi"], "m_new"))

    def counts():
        with market() as s:
            return s.scalar(select(func.count()).select_from(Product)), s.scalar(
                select(func.count()).select_from(Merchant)
            )

    before = counts()
    for action, error, code in BAD_INPUTS:
        with pytest.raises(error) as err, transaction(market) as s:
            action(s)
        assert err.value.code == code
        assert counts() == before, code


def test_stock_cannot_drop_below_reserved_units(market):
    from commerce.services.checkout import CartLine, checkout
    from tests.commerce.conftest import NOW

    with transaction(market) as s:
        checkout(s, "s0", [CartLine("p_cream", 3)], at=NOW)
    with pytest.raises(Conflict), transaction(market) as s:
        catalog.set_stock(s, "p_cream", "HZ-1", 2)
    with transaction(market) as s:
        assert catalog.set_stock(s, "p_cream", "HZ-1", 3).available == 0
        assert catalog.category_paths(s)["cosmetics"] == ("root", "beauty", "cosmetics")
        assert catalog.category_subtree(s, "beauty") == {"beauty", "cosmetics"}
        page = catalog.list_products(s, category_id="beauty", limit=5)
        assert [p.product_id for p in page.items] == ["p_cream"]


def test_leaf_categories_are_those_create_product_accepts(market):
    """The console's new-product form offers these; a category with children is refused by create_product."""
    with transaction(market) as s:
        leaves = [c.category_id for c in catalog.leaf_categories(s)]
        assert "root" not in leaves and "beauty" not in leaves and {"cosmetics", "food"} <= set(leaves)
        with pytest.raises(ValidationError, match="leaf categories"):
            catalog.create_product(s, _product("m_ok", brand="Acme", category_id="beauty"))
