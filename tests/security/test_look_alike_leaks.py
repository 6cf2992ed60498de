"""A look-alike refusal (422 `confusable_name`) names the stored row only to a caller who may see it.

A skeleton is looser than a name (`l`/`1`, `rn`/`m`), so "looks like the existing 'p1'" told the sender
the exact spelling of a row it could not otherwise read: another merchant's draft or suspended product,
another merchant's keyword campaign, and to anyone applying (no key needed) the name, brand or id of any
merchant. 6 of the 7 refusals below to a caller who may not see the stored row named it (a location
already did not), 0 now; those to a caller who may see it still name it (`unlike_stored`'s `shown`)."""

from __future__ import annotations

import pytest

from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.services import ads, catalog, merchants


def _merchant(s, merchant_id: str, brand: str, status: str = "approved") -> None:
    application = merchants.MerchantApplication(merchant_id, "JP", f"LIC-{merchant_id}", [brand], merchant_id)
    merchants.apply(s, application)
    if status != "pending":
        merchants.approve(s, merchant_id)
    if status == "suspended":
        merchants.suspend(s, merchant_id, "counterfeit complaints")


def _product(s, merchant_id: str, product_id: str, brand: str = "Acme", **stock: int) -> None:
    data = catalog.ProductInput(
        sku=f"SKU-{merchant_id}-{product_id}",
        merchant_id=merchant_id,
        title="Green tea",
        category_id="food",
        brand=brand,
        origin_country="JP",
        price="10.00",
        fulfillment="bonded",
        product_id=product_id,
        stock=stock or {"HZ-1": 5},
    )
    catalog.create_product(s, data)


def _draft(s, merchant_id: str, product_id: str, brand: str) -> None:
    _product(s, merchant_id, product_id, brand)
    catalog.update_product(s, product_id, status="delisted")


def _campaign(s, merchant_id: str, campaign_id: str, product_id: str = "p_tea") -> None:
    ads.create_campaign(
        s, merchant_id, name=campaign_id, daily_budget="5", product_ids=[product_id], campaign_id=campaign_id
    )


def _other_campaign(s) -> None:
    _merchant(s, "m_two", "Tea")
    _product(s, "m_two", "p_two", "Tea")
    _campaign(s, "m_two", "k1", "p_two")


def _apply(s, name: str = "Newco", brand: str = "Newbrand", merchant_id: str | None = None) -> None:
    merchants.apply(s, merchants.MerchantApplication(name, "NZ", "NZ-1", [brand], merchant_id))


#: case: (what is stored, before the attempt; the attempt; the stored id or name it looks like; shown)
CASES = {
    "suspended merchant's product": (
        lambda s: _product(s, "m_sus", "p1", "Shady"),
        lambda s: _product(s, "m_ok", "pl"),
        "p1",
        False,
    ),
    "another merchant's draft product": (
        lambda s: (_merchant(s, "m_two", "Tea"), _draft(s, "m_two", "p1", "Tea")),
        lambda s: _product(s, "m_ok", "pl"),
        "p1",
        False,
    ),
    "another merchant's keyword campaign": (
        _other_campaign,
        lambda s: _campaign(s, "m_ok", "kl"),
        "k1",
        False,
    ),
    "a merchant's name, to an applicant": (lambda s: None, lambda s: _apply(s, name="rn_ok"), "m_ok", False),
    "a merchant's brand, to an applicant": (
        lambda s: None,
        lambda s: _apply(s, brand="Acrne"),
        "Acme",
        False,
    ),
    "a merchant's id, to an applicant": (
        lambda s: None,
        lambda s: _apply(s, merchant_id="rn_ok"),
        "m_ok",
        False,
    ),
    "another merchant's own location": (
        lambda s: (_merchant(s, "m_two", "Tea"), _product(s, "m_two", "p_two", "Tea", W1=5)),
        lambda s: _product(s, "m_ok", "p_new", Wl=5),
        "W1",
        False,
    ),
    "another merchant's public product": (
        lambda s: (_merchant(s, "m_two", "Tea"), _product(s, "m_two", "p1", "Tea")),
        lambda s: _product(s, "m_ok", "pl"),
        "p1",
        True,
    ),
    "its own draft product": (
        lambda s: _draft(s, "m_ok", "p1", "Acme"),
        lambda s: _product(s, "m_ok", "pl"),
        "p1",
        True,
    ),
    "its own keyword campaign": (
        lambda s: _campaign(s, "m_ok", "k1"),
        lambda s: _campaign(s, "m_ok", "kl"),
        "k1",
        True,
    ),
    "a platform location": (
        lambda s: None,
        lambda s: _product(s, "m_ok", "p_new", **{"HZ-l": 5}),
        "HZ-1",
        True,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_look_alike_is_named_only_to_who_may_see_it(market, case):
    store, attempt, stored, shown = CASES[case]
    with transaction(market) as s:
        store(s)
    with pytest.raises(ValidationError) as refused, transaction(market) as s:
        attempt(s)
    message = refused.value.message
    assert refused.value.code == "confusable_name", message
    if shown:
        assert f"looks like the existing {stored!r}" in message
    else:
        assert stored not in message and "looks like another merchant's own" in message
