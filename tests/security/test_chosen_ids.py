"""Ids a client chooses (merchant, product, campaign, keyword campaign, category and shopper ids) are one
id per look: `ｐ1` (full width) and
`p1 ` are stored and found as `p1`, `p1` + U+200B is refused (`invalid_id`), and a Cyrillic `р1` or a
`pl` beside `p1` is refused as a look-alike (`confusable_name`), also when both are created at the same
moment on PostgreSQL. Events stamped beyond `max_event_age_days` are refused (`ts_too_old`).

The kinds live in tables of their own and look-alikes are looked for per column, so a test goes through
every kind in one marketplace, naming the kind that fails (a marketplace per kind and database was 120
setups, 70 s of the suite); the creation races keep one each."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select

from commerce.ads import KeywordCampaign, KeywordCampaignProduct
from commerce.campaigns import Campaign
from commerce.catalog import Category, Product
from commerce.db import transaction
from commerce.errors import Conflict, DomainError, ValidationError
from commerce.events import BehaviorEvent
from commerce.merchants import Merchant
from commerce.services import ads, campaigns, catalog, coupons, merchants, shoppers
from commerce.services._util import lookup_name, stored_key
from commerce.services.access import create_api_key
from commerce.services.events import record_events
from commerce.shoppers import Shopper
from commerce.sqltypes import SKELETON, skeleton
from tests.serving.conftest import NOW, auth

CYRILLIC_P1 = "\u04401"  # р1
# Outside `CHOSEN_ID_PATTERN` (an empty id is no choice: one is generated); a soft hyphen passes the
# pattern and is refused as invisible (`visible_text`).
NOT_IDS = [(b, "invalid_id") for b in ("p1\u200b", "p\u202e1", "-p1", "=1+1", "a/b", " ", "x" * 65)]
NOT_IDS += [("p1\u00ad", "invisible_character")]


def _campaign(campaign_id: str | None) -> campaigns.CampaignInput:
    start = datetime(2026, 7, 1, tzinfo=UTC)
    return campaigns.CampaignInput(
        "Summer", "email", "100", start, start + timedelta(days=7), "0.1", campaign_id
    )


def _product(product_id: str | None, sku: str = "SKU-x") -> catalog.ProductInput:
    return catalog.ProductInput(
        sku=sku,
        merchant_id="m_ok",
        title="Green tea",
        category_id="food",
        brand="Acme",
        origin_country="JP",
        price="10.00",
        fulfillment="bonded",
        product_id=product_id,
    )


def _merchant(merchant_id: str | None, n: int = 1) -> merchants.MerchantApplication:
    return merchants.MerchantApplication(f"Seller {n}", "JP", f"LIC-new-{n}", [f"Brand{n}"], merchant_id)


def _keyword_campaign(s, campaign_id: str | None) -> str:
    campaign = ads.create_campaign(
        s, "m_ok", name="Tea", daily_budget="10", product_ids=["p_tea"], campaign_id=campaign_id
    )
    # ended at once: a product is in one campaign not ended, and a test here makes several over it
    ads.update_campaign(s, campaign.campaign_id, status="ended")
    return campaign.campaign_id


#: kind: (create one with id `i`, the n-th of the test; its id column; the lookup by id)
KINDS = {
    "campaign": (
        lambda s, i, n: campaigns.create_campaign(s, _campaign(i)).campaign_id,
        Campaign.campaign_id,
        campaigns.get_campaign,
    ),
    "product": (
        lambda s, i, n: catalog.create_product(s, _product(i, f"SKU-{n}")).product_id,
        Product.product_id,
        catalog.get_product,
    ),
    "merchant": (
        lambda s, i, n: merchants.apply(s, _merchant(i, n)).merchant_id,
        Merchant.merchant_id,
        merchants.get_merchant,
    ),
    "keyword campaign": (
        lambda s, i, n: _keyword_campaign(s, i),
        KeywordCampaign.campaign_id,
        lambda s, i: s.get(KeywordCampaign, stored_key(s, KeywordCampaign, i)),  # as the API's URLs
    ),
    "category": (
        lambda s, i, n: catalog.create_category(s, catalog.CategoryInput(i, f"Cat {n}")).category_id,
        Category.category_id,
        catalog.get_category,
    ),
    "shopper": (
        lambda s, i, n: shoppers.create_shopper(s, i, "Zhejiang").shopper_id,
        Shopper.shopper_id,
        shoppers.get_shopper,
    ),
}
GENERATED = {"campaign", "product", "merchant", "keyword campaign"}  # an id left out is generated


def _create(s, kind: str, chosen: str | None, n: int = 1) -> str:
    return KINDS[kind][0](s, chosen, n)


def _skeletons(s, kind: str) -> list[tuple[str, str]]:
    column = KINDS[kind][1]
    return s.execute(select(column, getattr(column.class_, column.key + SKELETON))).all()


def test_a_chosen_id_is_stored_in_its_one_form_and_found_by_any(market):
    for kind in KINDS:
        with transaction(market) as s:
            assert _create(s, kind, "\uff501 ") == "p1", kind  # ｐ1, full width, a space after
            with pytest.raises(Conflict):  # the same id typed again
                _create(s, kind, "p1", 2)
            assert ("p1", skeleton("p1")) in _skeletons(s, kind), kind
        column, get = KINDS[kind][1:]
        with market() as s:
            assert all(getattr(get(s, i), column.key) == "p1" for i in ("\uff501", " p1", "p1")), kind


def test_an_id_outside_the_pattern_is_refused(market):
    """Every NOT_IDS entry in one marketplace: a refused create writes nothing (a marketplace per id was
    96 PostgreSQL and SQLite setups, a third of this module's time)."""
    for kind in KINDS:
        codes = {}
        for bad, _ in NOT_IDS:
            with pytest.raises(ValidationError) as err, transaction(market) as s:
                _create(s, kind, bad)
            codes[bad] = err.value.code
        assert codes == dict(NOT_IDS), kind


def test_a_look_alike_of_a_stored_id_is_refused(market):
    for kind in KINDS:
        with transaction(market) as s:
            _create(s, kind, "p1")
        for look_alike in (CYRILLIC_P1, "pl", "pI"):  # refused, so each meets the same stored p1
            with pytest.raises(ValidationError) as err, transaction(market) as s:
                _create(s, kind, look_alike, 2)
            assert err.value.code == "confusable_name", (kind, look_alike)
        with pytest.raises(ValidationError) as mixed, transaction(market) as s:
            _create(s, kind, "p\u0440", 3)  # Latin p, Cyrillic р in one word
        assert mixed.value.code == "mixed_script", kind
        with transaction(market) as s:  # ids that read differently are fine, generated ones too
            assert _create(s, kind, "p2", 4) == "p2", kind
            assert kind not in GENERATED or _create(s, kind, None, 5) != "p2", kind


@pytest.mark.parametrize("ids", [("p1", "\uff501"), ("p1", CYRILLIC_P1)], ids=["full-width", "cyrillic"])
@pytest.mark.parametrize("kind", KINDS)
def test_look_alikes_created_at_once_make_one_row(market, kind, ids):
    """Two transactions create `p1` and its look-alike at the same moment: exactly one is stored, the
    other is refused (409 duplicate or 422 look-alike), never an error of the database. On PostgreSQL
    the look-alike check waits for the other's transaction (`unlike_stored`); SQLite's BEGIN IMMEDIATE
    runs them one after the other."""
    start = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def create(n: int) -> None:
        start.wait()
        try:
            with transaction(market) as s:
                outcomes[n] = _create(s, kind, ids[n], n + 1)
        except DomainError as exc:
            outcomes[n] = exc
        except Exception as exc:  # a database error: the failure this test is for
            outcomes[n] = repr(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    won = [o for o in outcomes if isinstance(o, str)]
    lost = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert won[0] == lookup_name(won[0]) and won[0] in {lookup_name(i) for i in ids}
    assert isinstance(lost[0], Conflict) or lost[0].code == "confusable_name", lost[0]
    with market() as s:
        assert [k for _, k in _skeletons(s, kind) if k == skeleton("p1")] == ["pl"]


# Ids stored before they were normalised: full width, a space after, an en dash, two spaces.
OLD_IDS = ["\uff501", "p1 ", "p\u20131", "p  1"]


def _as_sent(monkeypatch) -> None:
    """Ids stored as the client sent them, as before `chosen_id` normalised them."""
    for module in (ads, campaigns, catalog, merchants, shoppers):
        monkeypatch.setattr(module, "chosen_id", lambda session, value, *_: value)


@pytest.mark.parametrize("old", OLD_IDS)
def test_a_row_stored_before_ids_were_normalised_is_found_by_its_id(market, monkeypatch, old):
    for kind in KINDS:
        with monkeypatch.context() as m, transaction(market) as s:
            _as_sent(m)
            assert _create(s, kind, old) == old, kind
            assert _create(s, kind, lookup_name(old), 2) == lookup_name(old), kind
        column, get = KINDS[kind][1:]
        with market() as s:
            assert getattr(get(s, old), column.key) == old, kind  # the exact id first
            assert getattr(get(s, lookup_name(old)), column.key) == lookup_name(old), kind
            normal = getattr(get(s, " " + lookup_name(old)), column.key)
            assert normal == lookup_name(old), kind  # else its normal form


def test_ids_a_request_names_are_read_as_lookups_read_them(market):
    """A product's category and merchant, a keyword campaign's products, a coupon's scope and campaign
    named in a look-alike form (full width, a space after) are the stored rows, and stored by their ids:
    they were a 404."""
    with transaction(market) as s:
        product = catalog.create_product(
            s,
            replace(
                _product("p2", "SKU-w"), merchant_id="\uff4d_ok", category_id="\uff46\uff4f\uff4f\uff44 "
            ),
        )
        assert (product.merchant_id, product.category_id) == ("m_ok", "food")
        kc = ads.create_campaign(
            s, "m_ok ", name="Tea", daily_budget="10", product_ids=["\uff50_\uff54\uff45\uff41", "p_tea "]
        )
        promoted = s.scalars(
            select(KeywordCampaignProduct.product_id).where(
                KeywordCampaignProduct.campaign_id == kc.campaign_id
            )
        )
        assert (kc.merchant_id, sorted(promoted)) == ("m_ok", ["p_tea"])
        campaigns.create_campaign(s, _campaign("cmp1"))
        terms = dict(kind="amount_off", value="5", requires_grant=True, campaign_id="\uff43mp1 ")
        coupon = coupons.create_coupon(
            s, coupons.CouponInput(scope_type="product", scope_id="p2\u3000", **terms)
        )
        assert (coupon.scope_id, coupon.campaign_id) == ("p2", "cmp1")


def test_an_id_that_is_not_text_is_a_422(market):
    """A library caller's or a file's number as an id is refused as `invalid_id`, when creating and when
    looking up: it was a TypeError (a 500 through the API)."""
    for kind in KINDS:
        with pytest.raises(ValidationError) as created, transaction(market) as s:
            _create(s, kind, 7)
        with pytest.raises(ValidationError) as found, market() as s:
            KINDS[kind][2](s, 7)
        assert created.value.code == found.value.code == "invalid_id", kind
        assert "7 is not text but int" in created.value.message, kind


def test_an_event_stamped_too_long_ago_is_refused(market):
    old = {"event_id": "e-old", "ts": datetime.now(UTC) - timedelta(days=31), "shopper_id": "s0"}
    event = {**old, "event_type": "view", "product_id": "p_tea"}
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        record_events(
            s, [{**event, "event_id": "e-new", "ts": datetime.now(UTC)}, event], max_age=timedelta(30)
        )
    assert err.value.code == "ts_too_old"
    with transaction(market) as s:  # nothing of the batch was stored; without a bound any age is taken
        assert record_events(s, [event]) == 1


# Through the API (tests/serving's marketplace: products p01.., merchants m1 and m2).


def test_urls_find_ids_in_any_of_their_forms(client, keys):
    admin, marketer = auth(keys["admin"]), auth(keys["marketer"])
    assert (
        client.get("/v1/products/\uff50\uff10\uff15", headers=admin).json()["product_id"] == "p05"
    )  # ｐ０５
    assert client.get("/v1/products/p05%20", headers=admin).json()["product_id"] == "p05"
    assert client.get("/v1/merchants/\uff4d1", headers=admin).json()["merchant_id"] == "m1"
    assert client.get(f"/v1/products/{CYRILLIC_P1}05", headers=admin).status_code == 404  # another id
    body = {"name": "Summer", "channel": "email", "budget": "100"}
    body |= {"starts_at": NOW.isoformat(), "ends_at": (NOW + timedelta(days=7)).isoformat()}
    cid = client.post("/v1/campaigns", json=body, headers=marketer).json()["campaign_id"]
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in cid)
    assert client.get(f"/v1/campaigns/{wide}", headers=marketer).json()["campaign_id"] == cid


def test_the_api_refuses_events_older_than_the_setting(make_client, settings, keys):
    client = make_client(settings=settings.model_copy(update={"max_event_age_days": 30}))
    event = {"event_id": "old-1", "shopper_id": "s1", "event_type": "view", "product_id": "p05"}
    old = client.post(
        "/v1/events",
        json={"events": [{**event, "ts": (NOW - timedelta(days=31)).isoformat()}]},
        headers=auth(keys["storefront"]),
    )
    assert (old.status_code, old.json()["code"]) == (422, "ts_too_old")
    recent = {**event, "ts": (NOW - timedelta(days=29)).isoformat()}
    ok = client.post("/v1/events", json={"events": [recent]}, headers=auth(keys["storefront"]))
    assert ok.status_code == 202


def test_urls_reach_rows_stored_before_ids_were_normalised(client, keys, session_factory, monkeypatch):
    old = "s\u20131 "  # an en dash and a space after: stored so before ids were normalised
    with monkeypatch.context() as m, transaction(session_factory) as s:
        _as_sent(m)
        shoppers.create_shopper(s, old, "Zhejiang")
        product = replace(_product("p  05", "SKU-old"), merchant_id="m1", category_id="beauty", brand="B")
        catalog.create_product(s, product)  # two spaces
        key = create_api_key(s, "shopper", shopper_id=old)[1]
    admin = auth(keys["admin"])
    assert client.get(f"/v1/products/{quote('p  05')}", headers=admin).json()["product_id"] == "p  05"
    assert client.get("/v1/products/p05", headers=admin).json()["product_id"] == "p05"
    assert client.get(f"/v1/products/{quote('p 05')}", headers=admin).status_code == 404  # no such id
    orders = client.get(f"/v1/shoppers/{quote(old)}/orders", headers=auth(key))
    assert (orders.status_code, orders.json()["total"]) == (200, 0)  # was a 403: the URL read as `s-1`
    cart = {"lines": [{"product_id": "p05", "quantity": 1}]}
    placed = client.post(f"/v1/shoppers/{quote(old)}/orders", json=cart, headers=auth(key))
    assert placed.status_code not in (403, 404), placed.json()


def test_an_event_posted_in_a_look_alike_form_names_the_stored_rows(client, keys, session_factory):
    event = {"event_id": "wide-1", "ts": NOW.isoformat(), "event_type": "view"}
    event |= {"shopper_id": "\uff531", "product_id": "\uff50\uff10\uff15"}  # ｓ1, ｐ０５
    posted = client.post("/v1/events", json={"events": [event]}, headers=auth(keys["storefront"]))
    assert posted.status_code == 202, posted.json()
    with session_factory() as s:
        stored = s.execute(
            select(BehaviorEvent.shopper_id, BehaviorEvent.product_id).where(
                BehaviorEvent.event_id.endswith(":wide-1")
            )
        ).one()
    assert tuple(stored) == ("s1", "p05")
