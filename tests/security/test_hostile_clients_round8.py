"""Round 8 of attacking the API as a hostile client, on SQLite and PostgreSQL (the bilingual shop of
tests/search). Each test failed before its fix."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from commerce.errors import ValidationError
from commerce.sqltypes import to_money, to_rate
from tests.search.conftest import api, keys, shop  # noqa: F401  (the bilingual shop on SQLite and PostgreSQL)
from tests.serving.conftest import auth

RACE_ROUNDS = 6
RACERS = 4
#: The service's own code for a duplicate found before the INSERT (the race's loser gets `already_exists`).
DUPLICATE = {
    "coupon": "duplicate_coupon",
    "merchant": "duplicate_licence",
    "product": "duplicate_sku",
    "keyword": "duplicate_keyword",
}


def _race(api, requests: list[tuple[str, str, dict]]) -> list:  # noqa: F811
    """Send `requests` at once (threads released together by a barrier); their responses."""
    barrier = threading.Barrier(len(requests))

    def send(request):
        method, url, kwargs = request
        barrier.wait()
        return api.request(method, url, **kwargs)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


def _creates(keys, n: int, campaign: str) -> dict[str, tuple[str, str, dict]]:  # noqa: F811
    """One create per unique thing, round `n`: a coupon id, a merchant's licence, a product's SKU, a
    keyword of keyword campaign `campaign`."""
    return {
        "keyword": (
            "POST",
            f"/v1/keyword-campaigns/{campaign}/keywords",
            {
                "json": {"keyword": f"race {n}", "match_type": "exact", "bid": "0.50"},
                "headers": auth(keys["m1"]),
            },
        ),
        "coupon": (
            "POST",
            "/v1/coupons",
            {
                "json": {"coupon_id": f"RACE{n}", "kind": "amount_off", "value": "5"},
                "headers": auth(keys["admin"]),
            },
        ),
        "merchant": (
            "POST",
            "/v1/merchants",
            {"json": {"name": f"Race {n}", "country": "JP", "licence_no": f"LIC-RACE-{n}", "brands": ["Ra"]}},
        ),
        "product": (
            "POST",
            "/v1/merchants/M1/products",
            {
                "json": {
                    "sku": f"SKU-RACE-{n}",
                    "title": f"Karimi race {n}",
                    "category_id": "C01-02",
                    "brand": "Karimi",
                    "origin_country": "JP",
                    "price": "10.00",
                    "fulfillment": "bonded",
                },
                "headers": auth(keys["m1"]),
            },
        ),
    }


@pytest.mark.parametrize("thing", ["coupon", "merchant", "product", "keyword"])
def test_a_lost_creation_race_is_a_409(api, keys, thing):  # noqa: F811
    """Two creates of one unique thing at once both passed the service's "already exists?" read on
    PostgreSQL; the loser's INSERT hit the unique constraint, an IntegrityError answered 500. It is the
    409 `already_exists` problem; exactly one create wins each round."""
    api._transport.raise_server_exceptions = False
    body = {"name": "race", "daily_budget": "100.00", "product_ids": ["P1"]}
    made = api.post("/v1/merchants/M1/keyword-campaigns", json=body, headers=auth(keys["m1"]))
    assert made.status_code == 201, made.text
    for n in range(RACE_ROUNDS):
        request = _creates(keys, n, made.json()["campaign_id"])[thing]
        responses = _race(api, [request] * RACERS)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * (RACERS - 1), (thing, n, [r.text for r in responses])
        for lost in (r for r in responses if r.status_code == 409):
            assert lost.headers["content-type"] == "application/problem+json"
            assert lost.json()["code"] in ("already_exists", DUPLICATE[thing])


def test_negative_zero_money_is_zero(api, keys):  # noqa: F811
    """`min_spend: "-0"` passes `ge=0` and was stored and answered as `-0.00` (and a product's admin-only
    cost price alike): every amount is parsed by one `to_money`, which now gives plain 0.00. (Each
    spelling makes a coupon of its own, so one shop serves them all.)"""
    for zero in ("-0", "-0.00", "-0.0000", "-0E+3"):
        made = api.post(
            "/v1/coupons",
            json={"kind": "amount_off", "value": "5", "min_spend": zero},
            headers=auth(keys["admin"]),
        )
        assert made.status_code == 201, made.text
        assert made.json()["min_spend"] == "0.00", zero
        again = api.get(f"/v1/coupons/{made.json()['coupon_id']}", headers=auth(keys["admin"]))
        assert again.json()["min_spend"] == "0.00", zero


def test_my_shop_lists_no_other_merchants_locations(api, keys):  # noqa: F811
    """The new-product form's location list was every warehouse: partners' and each merchant's own, so
    M1's page named M2's private stock location (where it keeps goods, and how many it has made). A
    merchant sees the locations it may use only (`commerce.logistics.usable_by`): partners', platform and
    its own."""
    from tests.serving.test_console import sign_in

    for product, location, key in (("P3", "m2-secret-depot", "m2"), ("P1", "m1-own-shed", "m1")):
        url = f"/v1/products/{product}/stock/{location}"
        put = api.put(url, json={"quantity": 3}, headers=auth(keys[key]))
        assert put.status_code == 200, put.text
    sign_in(api, keys["m1"])
    page = api.get("/console/shop")
    assert page.status_code == 200, page.text
    assert "m2-secret-depot" not in page.text
    assert 'value="m1-own-shed"' in page.text and 'value="bonded-default"' in page.text


#: Query strings crafted where a parser can differ: blank and repeated values, percent-encoding, `+`,
#: bytes that are no UTF-8, a `;`, names differing by case.
CRAFTED_QUERIES = [
    "n=",
    "n=3&n=",
    "n=&n=3",
    "n=3&n=4",
    "n=%33",
    "n=+3",
    "n=%2B3",
    "n=3%00",
    "n=%FF",
    "N=3",
    "n=3;n=4",
    "category=",
    "category=C01+01",
    "category=C01%2001",
    "category=%FF%FE",
    "fulfillment=",
    "fulfillment=bonded&fulfillment=",
    "context=",
    "context=cart&product_id=",
    "context=cart&product_id=P1&product_id=&product_id=P2",
    "context=cart&product_id=P1&product_id=P1",
    "context=cart&product_id=%50%31",
    "session_id=",
    "&&&",
    "=&=3",
    "n",
]


async def _declined(self, scope):
    return None


def test_the_fast_path_reads_a_query_as_the_route_does(api, keys, monkeypatch):  # noqa: F811
    """The recommendation fast path parsed the query itself and dropped blank values: `?n=` was the
    default page there and a 422 from the route, `?n=3&n=` three products there and a 422 from the route,
    `?session_id=` a page without the visit there and a 422 from the route. It now reads the query with
    the parser the route's framework uses, blank values kept, lists and repeats taken the same way."""
    from serving import fastpath

    storefront = auth(keys["storefront"])
    answered = []
    original = fastpath.RecommendationFastPath.answer

    async def spy(self, scope):
        answered.append(await original(self, scope))
        return answered[-1]

    for path in ("/v1/shoppers/s1/recommendations", "/v1/sessions/" + "a" * 16 + "/recommendations"):
        assert api.get(path, headers=storefront).status_code == 200  # key cached: the fast path may answer
        for query in CRAFTED_QUERIES:
            url = f"{path}?{query}"
            monkeypatch.setattr(fastpath.RecommendationFastPath, "answer", spy)
            fast = api.get(url, headers=storefront)
            monkeypatch.setattr(fastpath.RecommendationFastPath, "answer", _declined)
            routed = api.get(url, headers=storefront)
            assert (fast.status_code, fast.json()) == (routed.status_code, routed.json()), (path, query)
        assert api.get(path, headers=storefront).status_code == 200
    assert sum(body is not None for body in answered) >= 10  # the fast path did answer


#: Numbers as text that Python's Decimal or pydantic's int read, and no client writes: Arabic-Indic and
#: full-width digits, a digit group `_`, spaces (a no-break space too) and line breaks around them.
LENIENT_NUMBERS = ["١٢", "１２.５", "1_000", " 12", "12 ", "12\n", "\u00a012", "1\u066b5"]


def _product(price: str, stock: dict | None = None) -> dict:
    return {
        "sku": f"SKU-N-{price.encode().hex()}",
        "title": "Karimi number",
        "category_id": "C01-02",
        "brand": "Karimi",
        "origin_country": "JP",
        "price": price,
        "fulfillment": "bonded",
        "stock": stock or {},
    }


def test_a_number_is_written_in_ascii_digits(api, keys):  # noqa: F811
    """`"price": "١٢"` listed a product at 12.00, `"１２.５"` at 12.50 and `"1_000"` at 1,000.00, and
    `"quantity": "1_0"` set 10 units: Python's Decimal and pydantic read any Unicode digit, `_` groups and
    surrounding spaces, so an amount a reviewer, a log search or another system reads differently (or
    not at all) was stored as a number. A number sent as text is ASCII digits with an optional sign, point
    and exponent (`commerce.sqltypes.NUMBER`), in every request body (422) and wherever money is parsed.
    (A refused request writes nothing, so one shop serves every number.)"""
    m1 = auth(keys["m1"])
    for number in LENIENT_NUMBERS:
        listed = api.post("/v1/merchants/M1/products", json=_product(number), headers=m1)
        assert listed.status_code == 422, (number, listed.text)
        stocked = api.post("/v1/merchants/M1/products", json=_product("5.00", {"HZ-1": number}), headers=m1)
        assert stocked.status_code == 422, (number, stocked.text)
        quantity = api.put("/v1/products/P1/stock/HZ-1", json={"quantity": number}, headers=m1)
        assert quantity.status_code == 422, (number, quantity.text)
        coupon = {"kind": "amount_off", "value": "5", "min_spend": number}
        assert api.post("/v1/coupons", json=coupon, headers=auth(keys["admin"])).status_code == 422, number
        with pytest.raises(ValidationError):
            to_money(number)


def test_plain_numbers_still_pass(api, keys):  # noqa: F811
    m1 = auth(keys["m1"])
    for price, stored in (("12", "12.00"), ("12.5", "12.50"), ("+12.50", "12.50"), ("1.2e1", "12.00")):
        listed = api.post("/v1/merchants/M1/products", json=_product(price, {"HZ-1": "3"}), headers=m1)
        assert listed.status_code == 201, listed.text
        assert listed.json()["price"] == stored
    assert api.post("/v1/merchants/M1/products", json=_product("7.25"), headers=m1).json()["price"] == "7.25"
    assert to_money(" 12 ".strip()) == Decimal("12.00")


def test_the_console_coupon_value_is_in_ascii_digits(api, keys):  # noqa: F811
    """The console's coupon forms read the value with Decimal before the API's schema saw it, so `١٥` was
    a coupon of 15.00 off there while the API refuses it."""
    from tests.serving.test_console import sign_in

    token = sign_in(api, keys["admin"])
    for value, coupon_id in (("١٥", "ar-15"), ("1_5", "us-15"), (" 5 ", "ok-5")):
        body = {"kind": "amount_off", "value": value, "coupon_id": coupon_id, "csrf_token": token}
        made = api.post("/console/coupons/new", data=body, follow_redirects=False)
        assert made.status_code == (303 if coupon_id == "ok-5" else 422), (value, made.status_code)
    assert api.get("/v1/coupons/ok-5", headers=auth(keys["admin"])).json()["value"] == "5.0000"


def test_the_console_stock_quantity_is_in_ascii_digits(api, keys):  # noqa: F811
    """The console's stock form took its quantity as FastAPI reads an int form field: `1_0` set 10 units
    and ` 7` 7, numbers the API's own body refuses. The quantity goes through the API's schema."""
    from tests.serving.test_console import sign_in

    token = sign_in(api, keys["m1"])
    for quantity, status in (("1_0", 422), ("٧", 422), ("7", 303)):
        form = {"location": "HZ-1", "quantity": quantity, "csrf_token": token}
        done = api.post("/console/shop/products/P1/stock", data=form, follow_redirects=False)
        assert done.status_code == status, (quantity, done.status_code)
    stock = api.get("/v1/products/P1", headers=auth(keys["m1"])).json()["stock"]
    assert [(s["location"], s["quantity"]) for s in stock] == [("HZ-1", 7)]


def test_the_console_experiment_form_reads_numbers_as_the_api(api, keys):  # noqa: F811
    """The console's new-experiment form read traffic, weights and planned units with Python's float and
    int: `٠.٥` was half the traffic, `1_5` 15 units per variant. They go to the API's schema as typed."""
    from tests.serving.test_console import sign_in

    token = sign_in(api, keys["admin"])
    base = {"csrf_token": token, "primary_metric": "conversion", "variant0_name": "control",
            "variant0_weight": "1", "variant1_name": "treatment", "variant1_weight": "1"}  # fmt: skip
    for i, odd in enumerate(({"traffic": "٠.٥"}, {"planned_units": "1_5"}, {"variant1_weight": " 2"})):
        made = api.post("/console/experiments/new", data={**base, "name": f"num-{i}", **odd})
        assert made.status_code == 422, (odd, made.status_code)
    fine = {**base, "name": "num-ok", "traffic": "0.5", "planned_units": "15"}
    assert api.post("/console/experiments/new", data=fine, follow_redirects=False).status_code == 303
    made = api.get("/v1/experiments/num-ok", headers=auth(keys["admin"])).json()
    assert (made["traffic_end"] - made["traffic_start"], made["planned_units_per_variant"]) == (0.5, 15)


def test_a_campaign_share_of_negative_zero_is_zero(api, keys):  # noqa: F811
    """`control_share: "-0"` passes `ge=0`; the created campaign answered `-0` (stored as 0.0000, so read
    back otherwise). A share is parsed as money is (`commerce.sqltypes.to_rate`): 0.0000 both times."""
    body = {"name": "zero holdout", "channel": "email", "budget": "10", "control_share": "-0",
            "starts_at": "2027-01-01T00:00:00Z", "ends_at": "2027-02-01T00:00:00Z"}  # fmt: skip
    made = api.post("/v1/campaigns", json=body, headers=auth(keys["admin"]))
    assert made.status_code == 201, made.text
    again = api.get(f"/v1/campaigns/{made.json()['campaign_id']}", headers=auth(keys["admin"]))
    assert made.json()["control_share"] == again.json()["control_share"] == "0.0000"
    for share in ("-0", "-0.0000", "0.1", "NaN", "١"):
        if share in ("NaN", "١"):
            with pytest.raises(ValidationError):
                to_rate(share, field="control_share")
        else:
            assert str(to_rate(share, field="control_share")) in ("0.0000", "0.1000")


def test_a_commission_of_negative_zero_is_zero(api, keys):  # noqa: F811
    """A category's commission (and tax rates) of `-0` was answered `-0` and audited as `-0`; the rates
    are parsed by `to_rate` too."""
    admin = auth(keys["admin"])
    done = api.put("/v1/categories/C01-02/commission", json={"commission_rate": "-0"}, headers=admin)
    assert done.status_code == 200, done.text
    assert done.json()["commission_rate"] == "0.0000"
    again = api.put("/v1/categories/C01-02/commission", json={"commission_rate": "0.05"}, headers=admin)
    assert again.json()["previous_rate"] == "0.0000" and again.json()["commission_rate"] == "0.0500"


def test_a_season_discount_of_negative_zero_is_zero(shop):  # noqa: F811
    from datetime import UTC, datetime, timedelta

    from commerce.db import transaction
    from commerce.services import pricing

    start = datetime(2027, 1, 1, tzinfo=UTC)
    with transaction(shop) as s:
        season = pricing.create_season(s, "zero", "Zero", start, start + timedelta(days=1), discount="-0")
        assert str(season.discount) == "0.0000"
