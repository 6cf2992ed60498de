"""Ids in list filters and what a merchant sees of a mixed order, on the tiny marketplace of
tests/serving. Each test failed before its fix."""

from __future__ import annotations

from urllib.parse import quote

from tests.security.test_round13_attack import _campaign_with_audience, _wide
from tests.serving.conftest import auth


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
