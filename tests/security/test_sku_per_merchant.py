"""A SKU is the merchant's own code (migration 0046), on SQLite and PostgreSQL (the bilingual shop of
tests/search). Unique across merchants, a SKU told a merchant which codes its rivals use (409
`duplicate_sku` for a pending merchant's hidden product too) and let it take one first to keep a rival
from listing under it."""

from __future__ import annotations

from tests.search.conftest import api, keys, shop  # noqa: F401  (the bilingual shop on SQLite and PostgreSQL)
from tests.security.test_hostile_clients_round8 import RACE_ROUNDS, _race
from tests.serving.conftest import auth

BRAND = {"M1": ("Karimi", "C01-02"), "M2": ("Velmar", "C06-01")}


def _product(keys, merchant: str, sku: str) -> tuple[str, str, dict]:  # noqa: F811
    brand, category = BRAND[merchant]
    body = {"sku": sku, "title": f"{brand} {sku}", "category_id": category, "brand": brand,
            "origin_country": "JP", "price": "10.00", "fulfillment": "bonded"}  # fmt: skip
    return (
        "POST",
        f"/v1/merchants/{merchant}/products",
        {"json": body, "headers": auth(keys[merchant.lower()])},
    )


def test_a_rivals_sku_is_free_and_ones_own_is_taken(api, keys):  # noqa: F811
    """M2 lists under M1's SKU (and M1 under M2's); only a merchant's own SKU is refused, and the refusal
    says it is the merchant's own."""
    for merchant, sku in (("M2", "SKU-P1"), ("M1", "SKU-P3")):
        method, url, kwargs = _product(keys, merchant, sku)
        made = api.request(method, url, **kwargs)
        assert made.status_code == 201, made.text
        assert made.json()["sku"] == sku
    method, url, kwargs = _product(keys, "M1", "SKU-P1")
    taken = api.request(method, url, **kwargs)
    assert taken.status_code == 409, taken.text
    assert taken.json()["code"] == "duplicate_sku"
    assert taken.json()["detail"] == "merchant 'M1' already uses sku 'SKU-P1'"


def test_two_merchants_racing_for_one_sku_each_get_it_once(api, keys):  # noqa: F811
    """Two creates of one SKU by each of two merchants at once: one 201 per merchant, the merchant's other
    create a 409 (the service's `duplicate_sku` or, losing the race for the INSERT, `already_exists`)."""
    api._transport.raise_server_exceptions = False
    for n in range(RACE_ROUNDS):
        sku = f"SKU-BOTH-{n}"
        requests = [_product(keys, merchant, sku) for merchant in ("M1", "M2", "M1", "M2")]
        responses = _race(api, requests)
        for merchant in ("M1", "M2"):
            mine = [r for (_, url, _), r in zip(requests, responses, strict=True) if f"/{merchant}/" in url]
            assert sorted(r.status_code for r in mine) == [201, 409], (n, merchant, [r.text for r in mine])
            lost = next(r for r in mine if r.status_code == 409)
            assert lost.json()["code"] in ("duplicate_sku", "already_exists")
