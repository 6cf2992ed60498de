"""Round 10: a hostile client against the HTTP API, on the tiny marketplace of tests/serving. Each test
failed before its fix."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from commerce.catalog import Product
from commerce.db import transaction
from commerce.services.logistics import seed_default_partners
from tests.serving.conftest import auth
from tests.serving.test_sessions import session_source  # noqa: F401  (a session model for the visit pages)


def _visits(start: int, count: int, shopper: str = "s1") -> dict:
    now = datetime.now(UTC).isoformat()
    return {
        "events": [
            {"event_id": f"v{i}", "shopper_id": shopper, "event_type": "view", "product_id": "p02", "ts": now}
            for i in range(start, start + count)
        ]
    }


@pytest.fixture
def throttled(make_client, settings):
    """An app whose keys have 5 requests and 1,000 events a minute (the storefront role is unthrottled)."""
    limits = {"event_rate_limit_per_minute": 1_000, "rate_limit_per_minute": 5}
    return make_client(settings=settings.model_copy(update=limits))


@pytest.mark.parametrize("idempotency_key", [None, "retry-1"])
def test_a_spent_event_quota_refuses_the_next_batch_before_its_body_is_parsed(
    throttled, keys, idempotency_key
):
    """With its event quota spent, a key's next batch was still read and parsed (a 1 MB body of 1,000
    events) before the 429: now a body that is not even JSON gets the 429, so it was never parsed."""
    shopper = auth(keys["shopper"])
    assert throttled.post("/v1/events", json=_visits(0, 1_000), headers=shopper).status_code == 202
    headers = {**shopper, "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    refused = throttled.post("/v1/events", content=b'{"events": [' + b"x" * 1000, headers=headers)
    assert refused.status_code == 429, refused.text
    assert refused.headers["ratelimit-policy"] == '"events-per-key";q=1000;w=60'
    assert refused.json()["detail"] == "event quota of 1000 events per minute exceeded (0 left)"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # another key's quota is its own, and a body is parsed as before while the quota has some left
    other = auth(keys["shopper2"])
    assert throttled.post("/v1/events", json=_visits(0, 10, "s2"), headers=other).status_code == 202
    assert throttled.post("/v1/events", content=b"{", headers=other).status_code == 422


def test_a_key_over_its_request_quota_is_refused_before_its_body_is_parsed(throttled, keys):
    """The request quota's 429 came from a dependency, after FastAPI had parsed the body: without an
    Idempotency-Key, a malformed body over the quota got a 422 that cost the parse, not the 429."""
    shopper = {**auth(keys["shopper"]), "Content-Type": "application/json"}
    for _ in range(5):
        throttled.get("/v1/shoppers/s1/orders", headers=shopper)
    refused = throttled.post("/v1/events", content=b"not json", headers=shopper)
    assert refused.status_code == 429 and refused.headers["ratelimit-policy"] == '"per-key";q=5;w=60'


PROBES = (1, 5, 6, 50, 98, 99, 100, 149, 150, 151, 999)


def _probe(client, shopper: dict, quantity: int) -> tuple:
    """What a shopper learns about p05's stock from `quantity` units: the delivery quote's `in_stock`, and
    a cart of that many units (priced 1 fen, so that no customs limit answers first)."""
    delivery = client.get(
        "/v1/products/p05/delivery", params={"region": "Zhejiang", "quantity": quantity}, headers=shopper
    )
    cart = {"lines": [{"product_id": "p05", "quantity": quantity}]}
    quote = client.post("/v1/shoppers/s1/cart/quote", json=cart, headers=shopper)
    split = {"lines": [{"product_id": "p05", "quantity": (quantity + 1) // 2}] * 2}
    merged = client.post("/v1/shoppers/s1/cart/quote", json=split, headers=shopper)
    return (
        delivery.status_code,
        delivery.json().get("in_stock"),
        quote.status_code,
        quote.json().get("code"),
        merged.status_code,
        merged.json().get("code"),
    )


def test_a_shopper_cannot_binary_search_a_products_stock_above_the_public_threshold(
    client, keys, session_factory
):
    """The delivery quote (`?quantity=` up to 999) and the cart (lines of up to 999 units, repeated up to
    100 times) answered "in stock" or 409 for any quantity: ten probes found a rival's exact stock. Now no
    order holds more than MAX_UNITS_PER_PRODUCT of one product, and no probe may ask more, so every stock
    from the threshold up answers every probe alike; below it, the cart's 409 stays (5 left, 6 wanted)."""
    with transaction(session_factory) as s:
        seed_default_partners(s)  # rate cards for the delivery quote
        s.get(Product, "p05").price = Decimal("0.01")
    merchant, shopper = auth(keys["merchant2"]), auth(keys["shopper"])
    answers = {}
    for stock in (5, 150, 4_000):
        put = client.put("/v1/products/p05/stock/wh1", json={"quantity": stock}, headers=merchant)
        assert put.status_code == 200, put.text
        answers[stock] = [_probe(client, shopper, q) for q in PROBES]
    assert answers[150] == answers[4_000]
    low = dict(zip(PROBES, answers[5], strict=True))
    assert low[5][:4] == (200, True, 200, None) and low[6][:4] == (200, False, 409, "out_of_stock")


HIDDEN = ("p09", "p10", "p11")  # listed by a pending merchant, by a suspended one; delisted


def _answers(client, headers: dict, product_id: str) -> list[tuple]:
    """Every answer about one product a storefront caller can ask for: its page, its similar items, its
    delivery quote, a cart quote holding it, and a checkout of it."""
    cart = {"lines": [{"product_id": product_id, "quantity": 1}]}
    responses = [
        client.get(f"/v1/products/{product_id}", headers=headers),
        client.get(f"/v1/products/{product_id}/similar", headers=headers),
        client.get(f"/v1/products/{product_id}/delivery", params={"region": "Zhejiang"}, headers=headers),
        client.post("/v1/shoppers/s1/cart/quote", json=cart, headers=headers),
        client.post("/v1/shoppers/s1/orders", json=cart, headers=headers),
    ]
    return [(r.status_code, r.json().get("code"), r.json().get("detail")) for r in responses]


def test_a_product_that_is_not_public_answers_as_one_that_does_not_exist(client, keys, session_factory):
    """A product that is not public is 404 to all but its owners, yet the page said `not_found` ("no
    product") for it and `product_not_found` ("unknown product") for a made-up id, the delivery quote
    answered 200 for a pending or suspended merchant's listed goods (in stock or not, weight, shipping
    rule), and the cart said `not_sellable` for it and 404 for a made-up id: three ways to learn which ids
    a merchant not yet approved is preparing. Every answer about it is now the made-up id's."""
    with transaction(session_factory) as s:
        seed_default_partners(s)  # rate cards for the delivery quote
    shopper = auth(keys["shopper"])
    for hidden in HIDDEN:
        made_up = "q" + hidden[1:]
        got, expected = _answers(client, shopper, hidden), _answers(client, shopper, made_up)
        renamed = [
            tuple(x.replace(made_up, hidden) if isinstance(x, str) else x for x in answer)
            for answer in expected
        ]
        assert got == renamed, hidden
        assert [status for status, _, _ in got] == [404, 404, 404, 422, 422]
    # its owners (an admin here) still quote it
    owner = auth(keys["admin"])
    quote = client.get("/v1/products/p09/delivery", params={"region": "Zhejiang"}, headers=owner)
    assert quote.status_code == 200 and quote.json()["in_stock"] is True


def test_another_merchants_hidden_product_answers_a_write_as_a_made_up_id(client, keys):
    """A merchant key writing another merchant's product got 403 for one that exists and 404 for a made-up
    id, hidden or not: a rival learnt which ids a pending merchant prepares. A product it may not see is now
    a made-up id's 404; a public one of another merchant stays 403."""
    rival = auth(keys["merchant"])  # m1
    for hidden in ("p09", "p10"):  # m3's (pending), m4's (suspended)
        made_up = "q" + hidden[1:]
        for method, path, body in [
            ("PATCH", "/v1/products/{}", {"price": "1.00"}),
            ("PUT", "/v1/products/{}/stock/wh1", {"quantity": 1}),
        ]:
            got = client.request(method, path.format(hidden), json=body, headers=rival)
            expected = client.request(method, path.format(made_up), json=body, headers=rival)
            assert got.status_code == expected.status_code == 404, (method, hidden, got.text)
            assert got.json()["detail"] == expected.json()["detail"].replace(made_up, hidden)
    public = client.patch("/v1/products/p05", json={"price": "1.00"}, headers=rival)  # m2's, listed
    assert public.status_code == 403


def test_one_address_files_a_few_merchant_applications_an_hour(make_client, settings, keys):
    """Applying needs no key, and the anonymous request quota (60 a minute) let one address file 86,400
    applications a day, each holding a licence number for good (`duplicate_licence`, rejected or not) and
    answering whether one is registered: a competitor could squat a rival's licence, or a range of them.
    Now an address (or a key) files `merchant_applications_per_hour`, refused ones counted too."""
    client = make_client(settings=settings.model_copy(update={"merchant_applications_per_hour": 3}))

    def apply(n: int, headers: dict | None = None):
        body = {"name": f"Squat {n}", "country": "NZ", "licence_no": f"NZ-{n}", "brands": ["Kiwi"]}
        return client.post("/v1/merchants", json=body, headers=headers or {})

    assert [apply(n).status_code for n in (1, 1, 2, 3)] == [201, 409, 201, 429]  # the 409 counts
    refused = apply(4)
    assert refused.json()["code"] == "rate_limited"
    assert refused.headers["ratelimit-policy"] == '"merchant-applications";q=3;w=3600'
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
    # a key has a quota of its own; the storefront role is not throttled
    assert apply(5, auth(keys["shopper"])).status_code == 201
    assert {apply(n, auth(keys["storefront"])).status_code for n in range(6, 11)} == {201}


def test_a_rejected_application_does_not_hold_its_licence(client, keys):
    """A licence number was held for good by the first application naming it, rejected or not: anyone,
    with no key, could apply with a rival's licence, and after the admin rejected that application the
    rival still could not apply (409 `duplicate_licence`). A rejected application holds nothing now
    (migration 0040); a pending or approved merchant still holds its licence."""
    admin = auth(keys["admin"])

    def apply(name: str):
        body = {"name": name, "country": "NZ", "licence_no": "NZ-777", "brands": ["Kiwi"]}
        return client.post("/v1/merchants", json=body)

    squat = apply("Squatter").json()["merchant_id"]
    assert apply("Kiwi Co").json()["code"] == "duplicate_licence"  # pending: still held
    reject = {"decision": "reject", "reason": "not the licence holder"}
    assert client.post(f"/v1/merchants/{squat}/review", json=reject, headers=admin).status_code == 200
    real = apply("Kiwi Co")
    assert real.status_code == 201, real.text
    assert apply("Kiwi Again").json()["code"] == "duplicate_licence"  # the holder's now


def test_a_hidden_product_drives_no_recommendation_page(client, keys):
    """A product page or cart naming a hidden product (p09: a pending merchant's; p11: delisted) got a page
    seeded by it (its category first, what is bought with it), another page than a made-up id's: an
    existence oracle beside the 404 of its own page. Hidden context products are ignored now, on the
    route (a shopper key) and on the fast path (the storefront key) alike."""

    def page(role: str, context: str, product_id: str) -> list[str]:
        params = {"context": context, "product_id": product_id}
        r = client.get("/v1/shoppers/s1/recommendations", params=params, headers=auth(keys[role]))
        assert r.status_code == 200, r.text
        return [item["product_id"] for item in r.json()["items"]]

    for role in ("shopper", "storefront"):
        for context in ("product", "cart"):
            made_up = page(role, context, "q09")
            assert page(role, context, "p09") == page(role, context, "p11") == made_up, (role, context)
            assert page(role, context, "p05") != made_up  # a public product still drives the page


def test_a_hidden_product_in_a_visit_drives_no_session_page(make_client, keys, session_source):  # noqa: F811
    """A visit's clicks are the client's own events, naming any id: a click on a hidden product seeded the
    session page as a click on a public one does (its category first, and listed among the visit's
    items). Hidden clicks are ignored as made-up ids are."""
    client, storefront = make_client(session_model_source=session_source), auth(keys["storefront"])
    pages = {}
    for n, product in enumerate(("p09", "p11", "q09", "p02")):
        session_id = f"visit_{product}_" + "a" * 16
        event = {"event_id": f"v{n}", "ts": datetime.now(UTC).isoformat(), "shopper_id": "s2",
                 "event_type": "view", "product_id": product, "session_id": session_id}  # fmt: skip
        assert client.post("/v1/events", json={"events": [event]}, headers=storefront).status_code == 202
        page = client.get(f"/v1/sessions/{session_id}/recommendations", headers=storefront).json()
        pages[product] = (page["session"]["items"], [item["product_id"] for item in page["items"]])
    assert pages["p09"] == pages["p11"] == pages["q09"] == ([], pages["q09"][1])
    assert pages["p02"][0] == ["p02"]  # a public product still drives the visit's page
