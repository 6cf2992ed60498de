"""Ids in list filters and what a merchant sees of a mixed order, on the tiny marketplace of
tests/serving. Each test failed before its fix."""

from __future__ import annotations

from urllib.parse import quote

from commerce.db import transaction
from commerce.services import orders
from commerce.services.checkout import CartLine, checkout
from tests.security.test_round13_attack import _campaign_with_audience, _wide
from tests.serving.conftest import auth
from tests.serving.test_console import sign_in


def _spellings(chosen_id: str) -> list[str]:
    """Other spellings of `chosen_id`, as query values, that the API's URLs read as it."""
    return [quote(_wide(chosen_id)), f"{chosen_id}%20"]


def _items(page) -> list:
    assert page.status_code == 200, page.text
    return page.json()["items"]


def test_a_filter_reads_an_id_as_a_url_does(client, keys, session_factory):
    """`/v1/products/ｐ01` is p01 (`serving.deps.stored_id`), but an id in a list's filter was compared as
    sent: `?merchant_id=ｍ1` on GET /v1/products and /v1/search and `?campaign_id=` on GET /v1/coupons
    answered an empty list, as if the merchant sold nothing or the campaign had no coupons (6 of 6
    look-alike filters, none now). An unknown id is still an empty list."""
    storefront, marketer = auth(keys["storefront"]), auth(keys["marketer"])
    campaign_id = _campaign_with_audience(session_factory)
    coupon = {"kind": "amount_off", "value": "5", "requires_grant": True, "campaign_id": campaign_id}
    made = client.post("/v1/coupons", json=coupon, headers=marketer)
    assert made.status_code == 201, made.text
    lists = {
        "/v1/products?merchant_id=": ("m1", storefront),
        "/v1/search?q=product&merchant_id=": ("m1", storefront),
        "/v1/coupons?campaign_id=": (campaign_id, marketer),
    }
    differing = []
    for url, (chosen_id, key) in lists.items():
        expected = _items(client.get(url + chosen_id, headers=key))
        assert expected, url
        for spelled in _spellings(chosen_id):
            if _items(client.get(url + spelled, headers=key)) != expected:
                differing.append(url + spelled)
        assert _items(client.get(url + "nobody", headers=key)) == [], url
    assert differing == []


def test_a_category_filter_reads_a_category_id_as_a_url_does(client, keys):
    """`?category=` names a category by its id, read as sent by the catalog in memory: `ｂｅａｕｔｙ` or
    `beauty ` listed nothing on GET /v1/products, /v1/rankings and a shopper's recommendations and
    buy-again, and was a 404 `category_not_found` on GET /v1/search (10 of 10 look-alike filters, none
    now: `serving.catalog.CatalogSnapshot.filter_mask` and search's subtree read it with `stored_form`).
    An unknown category is still an empty list, or search's 404."""
    storefront = auth(keys["storefront"])
    lists = [
        "/v1/products?category=",
        "/v1/search?q=product&category=",
        "/v1/rankings?by=popularity&window=all&category=",
        "/v1/shoppers/s1/recommendations?category=",
        "/v1/shoppers/s1/buy-again?category=",
    ]
    differing = []
    for url in lists:
        expected = _items(client.get(url + "beauty", headers=storefront))
        assert expected, url
        for spelled in _spellings("beauty"):
            page = client.get(url + spelled, headers=storefront)
            if page.status_code != 200 or page.json()["items"] != expected:
                differing.append(url + spelled)
        unknown = client.get(url + "nobody", headers=storefront)
        if "search" in url:
            assert unknown.json()["code"] == "category_not_found"
        else:
            assert unknown.json()["items"] == [], url
    assert differing == []


def test_a_page_context_reads_a_product_id_as_a_url_does(client, keys):
    """A shopper's recommendations and coupons for a product page (`?context=product&product_id=`)
    named by `ｐ01` or `p01 ` found no such product and answered as without context, not for p01 (4 of
    4 look-alikes, none now: `CatalogSnapshot.public_context`, which reads every page's context ids in
    memory, and `stored_key` for the coupons' lines)."""
    storefront, url = auth(keys["storefront"]), "/v1/shoppers/s1/recommendations?context=product&product_id="
    expected = _items(client.get(url + "p01", headers=storefront))
    assert expected != _items(client.get(url + "nobody", headers=storefront))
    differing = [s for s in _spellings("p01") if _items(client.get(url + s, headers=storefront)) != expected]
    coupons = "/v1/shoppers/s1/coupons?context=product&product_id="
    expected = client.get(coupons + "p01", headers=storefront).json()["coupons"]
    assert expected != client.get(coupons + "nobody", headers=storefront).json()["coupons"]
    for spelled in _spellings("p01"):
        if client.get(coupons + spelled, headers=storefront).json()["coupons"] != expected:
            differing.append(coupons + spelled)
    assert differing == []


def test_the_audit_log_reads_a_target_id_as_a_url_does(client, keys):
    """`GET /v1/audit-log?target_id=` compared the id as sent: `ｐ01` or `p01 ` found none of product
    p01's entries (2 of 2 look-alikes, none now). Its target may be any kind of row, so the id is read
    against the log itself (`stored_form`: as sent if an entry names it, else its normal form)."""
    changed = client.patch("/v1/products/p01", json={"price": "99.00"}, headers=auth(keys["merchant"]))
    assert changed.status_code == 200, changed.text
    admin, url = auth(keys["admin"]), "/v1/audit-log?target_id="
    expected = _items(client.get(url + "p01", headers=admin))
    assert [e["action"] for e in expected] == ["product.price_changed"]
    differing = [s for s in _spellings("p01") if _items(client.get(url + s, headers=admin)) != expected]
    assert differing == []
    assert _items(client.get(url + "nobody", headers=admin)) == []


def _cancelled_order(session_factory, product_ids: list[str], reason: str) -> int:
    """An order of one of each of `product_ids` for shopper s1, cancelled by the shopper with `reason`."""
    with transaction(session_factory) as s:
        order_id = checkout(s, "s1", [CartLine(p, 1) for p in product_ids]).order_id
        orders.cancel_order(s, order_id, reason)
    return order_id


def test_a_merchant_sees_of_a_mixed_order_only_what_concerns_it(client, keys, session_factory):
    """A merchant's console order page showed the order's whole history with the shopper's own words:
    the cancel or refund reason of an order holding other merchants' goods too (`the p05 serum leaked`:
    m2's goods, shown to m1). The API shows a merchant key no order at all (403
    on GET /v1/orders/{id} and its tracking). `commerce.services.merchant_orders.merchant_order` is the
    one rule of what a merchant sees: its own lines, every status change and carrier scan, and the
    reasons only of an order that is all its own."""
    mixed = _cancelled_order(session_factory, ["p01", "p05"], "the p05 serum leaked")  # m1's and m2's
    own = _cancelled_order(session_factory, ["p02"], "ordered the wrong size")  # m1's alone
    merchant = auth(keys["merchant"])  # bound to m1
    for path in (f"/v1/orders/{mixed}", f"/v1/orders/{mixed}/tracking"):
        assert client.get(path, headers=merchant).status_code == 403, path
    sign_in(client, keys["merchant"])
    page = client.get(f"/console/shop/orders/{mixed}")
    assert page.status_code == 200
    assert "p01" in page.text and "p05" not in page.text
    assert 'id="order-status">cancelled<' in page.text and "<strong>cancelled</strong>" in page.text
    assert "ordered the wrong size" in client.get(f"/console/shop/orders/{own}").text
