"""Round 14: a hostile client against how the API reads a request (its framing, its credential, its
numbers), on the tiny marketplace of tests/serving. Each test failed before its fix."""

from __future__ import annotations

import socket
from types import UnionType
from typing import Annotated, Union, get_args, get_origin

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ValidationError

from commerce.db import transaction
from commerce.services.access import create_api_key
from commerce.services.coupons import CouponInput, create_coupon
from serving.field_access import nested_models
from serving.http import HeaderTimeoutH11Protocol, server_options
from serving.schemas.base import _numeric_fields
from tests.resilience.conftest import running_server
from tests.search.conftest import api, shop  # noqa: F401  (the bilingual shop on SQLite and PostgreSQL)
from tests.security.test_hostile_clients_round4 import _ad_token, _keys, _keyword_campaign
from tests.serving.conftest import auth, grant_only_campaign

PORT = 18791  # this helper's range (18790-18799)


def _head_of_answer(request: bytes) -> bytes:
    """The status line and headers the server answers `request` (raw bytes on a new connection) with."""
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer and (data := conn.recv(65536)):
            answer += data
    return answer.partition(b"\r\n\r\n")[0]


def test_a_body_framed_two_ways_is_refused(make_client, settings, keys):
    """h11 (`crosscart serve`'s protocol where httptools is not installed) reads a body sent with both
    `Content-Length` and `Transfer-Encoding: chunked` as chunked, while the body-size limit believed the
    length: `Content-Length: 1` let any chunked body through it (an anonymous 100 MB POST took the
    server 221 MiB more), and with an Idempotency-Key the request ran. Such a request is a 400 now and
    its connection is closed, as the httptools parser already answered it."""
    client = make_client(settings=settings.model_copy(update={"max_body_bytes": 1_000}))
    admin = auth(keys["admin"])
    made = client.post("/v1/api-keys", json={"role": "storefront"}, headers=admin).json()
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (3_000, b"x" * 3_000)  # three times the limit
    request = (
        b"DELETE /v1/api-keys/%d HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer %s\r\n"
        b"Idempotency-Key: two-framings\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n%s"
    ) % (made["id"], keys["admin"].encode(), body)
    options = {**server_options(5, "", 20), "http": HeaderTimeoutH11Protocol}
    with running_server(client.app, PORT, lifespan="off", **options):
        head = _head_of_answer(request)
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"\r\nconnection: close" in head.lower()
    listed = client.get("/v1/api-keys", params={"role": "storefront"}, headers=admin).json()["items"]
    assert [k["revoked_at"] for k in listed if k["id"] == made["id"]] == [None]


def _body_models(app) -> set[type[BaseModel]]:
    """Every request body model of the app's routes, and the models nested in them."""
    found: set[type[BaseModel]] = set()
    todo = [
        model
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and context.original_route.body_field is not None
        for model in nested_models(context.original_route.body_field.field_info.annotation)
    ]
    while todo:
        model = todo.pop()
        if model not in found:
            found.add(model)
            todo += [m for field in model.model_fields.values() for m in nested_models(field.annotation)]
    return found


def _true_in(annotation):
    """A body value that puts JSON `true` where a field of type `annotation` holds a number."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _true_in(args[0])
    if origin in (Union, UnionType):
        return _true_in(next(kind for kind in args if kind is not type(None)))
    if origin in (list, tuple, set, frozenset):
        return [_true_in(args[0])]
    if origin is dict:
        return {"wh1": _true_in(args[1])}
    return True


def test_a_boolean_is_not_a_number(client, keys):
    """Pydantic's int and float read JSON `true` as 1 and `false` as 0 (its Decimal refuses both): a
    merchant key's `{"quantity": true}` set p01's stock to 1 unit and `false` to none, a coupon's
    `"usage_limit": true` (read as "limited") allowed one use, an event's `"value": true` was worth 1.
    20 of 38 number fields of the request bodies took a boolean; none does now (422)."""
    merchant = auth(keys["merchant"])
    for value in (True, False):
        r = client.put("/v1/products/p01/stock/wh1", json={"quantity": value}, headers=merchant)
        assert r.status_code == 422 and "quantity: a number" in r.json()["detail"], r.text
    stock = client.get("/v1/products/p01", headers=merchant).json()["stock"]
    assert [s["quantity"] for s in stock if s["location"] == "wh1"] == [4]  # as seeded (5, one sold)
    marketer = auth(keys["marketer"])
    coupon = {
        "coupon_id": "c-bool",
        "kind": "amount_off",
        "value": "1",
        "min_spend": "0",
        "usage_limit": True,
    }
    assert client.post("/v1/coupons", json=coupon, headers=marketer).status_code == 422
    assert client.get("/v1/coupons/c-bool", headers=marketer).status_code == 404
    fields = [(m, name, kind) for m in _body_models(client.app) for name, kind in _numeric_fields(m)]
    assert len(fields) >= 30 and ("StockSet", "quantity") in {(m.__name__, n) for m, n, _ in fields}
    took = []
    for model, name, kind in fields:
        try:
            model.model_validate({name: _true_in(kind)})
        except ValidationError as exc:
            if all(e["type"] == "missing" for e in exc.errors()):  # refused only for the fields left out
                took.append(f"{model.__name__}.{name}")
        else:
            took.append(f"{model.__name__}.{name}")
    assert not took, f"{len(took)} of {len(fields)} number fields take a boolean: {sorted(took)}"


def test_a_retry_is_one_caller_however_it_spells_its_key(client, keys):
    """The Idempotency-Key was scoped to a hash of the `Authorization` header as sent, though the API
    reads `bearer K`, `BEARER K` and `Bearer  K` as `Bearer K`: a checkout retried with the header spelt
    another way (a proxy, another client library) was another caller's request and ran again, 4 orders
    for 4 spellings. They are one caller now: one order, replayed 3 times."""
    key, cart = keys["shopper"], {"lines": [{"product_id": "p02", "quantity": 1}]}
    answers = [
        client.post(
            "/v1/shoppers/s1/orders",
            json=cart,
            headers={"Authorization": spelling, "Idempotency-Key": "checkout-1"},
        )
        for spelling in (f"Bearer {key}", f"bearer {key}", f"BEARER {key}", f"Bearer   {key}")
    ]
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.json()["order_id"] for a in answers}) == 1
    assert [a.headers.get("idempotent-replayed") for a in answers] == [None, "true", "true", "true"]
    orders = client.get("/v1/shoppers/s1/orders", headers=auth(key)).json()
    assert [o["status"] for o in orders["items"]].count("pending_payment") == 1


def test_a_window_reaching_past_the_calendar_ends_there(api, shop):  # noqa: F811
    """A keyword report's attributed orders are looked for up to 7 days after its `end`, and its default
    `start` is 30 days before `end`: an `end` in the calendar's last 7 days (once a shopper had clicked)
    or first 30 days overflowed, a 500 on both databases (3 of 3 reports). The window now stops at the
    calendar's first or last instant (`commerce.sqltypes.shifted`)."""
    api._transport.raise_server_exceptions = False
    keys = _keys(shop)
    campaign = _keyword_campaign(api, keys["m1"])
    click = api.post(
        "/v1/search/clicks", json={"token": _ad_token(api, keys["shopper"])}, headers=auth(keys["shopper"])
    )
    assert click.status_code == 200, click.text
    windows = [
        {"start": "2020-01-01T00:00:00Z", "end": "9999-12-31T23:59:59.999999Z"},
        {"start": "2020-01-01T00:00:00Z", "end": "9999-12-25T00:00:00Z"},
        {"end": "0001-01-05T00:00:00Z"},
    ]
    for window in windows:
        r = api.get(f"/v1/keyword-campaigns/{campaign}/report", params=window, headers=auth(keys["m1"]))
        assert r.status_code == 200, (window, r.status_code, r.text)
        assert r.json()["clicks"] == (0 if window["end"].startswith("0001") else 1)


def test_a_campaign_at_the_calendar_ends_is_planned(client, keys, session_factory):
    """Planning (and scheduling) a campaign counts each candidate's contacts by other campaigns within 28
    days of its start: a campaign starting in the calendar's first or last 28 days (any marketer key may
    create one) made its plan a 500 (2 of 2). The contact window stops at the calendar's ends."""
    marketer = auth(keys["marketer"])
    grant_only_campaign(client, marketer, session_factory, "Shoppers", "c-shoppers")  # and s4-s40
    client._transport.raise_server_exceptions = False
    windows = [
        ("0001-01-01T00:00:00Z", "0001-01-08T00:00:00Z"),
        ("9999-12-24T00:00:00Z", "9999-12-31T23:59:59Z"),
    ]
    for n, (starts_at, ends_at) in enumerate(windows):
        body = {"name": f"Edge {n}", "channel": "email", "budget": "500.00", "control_share": "0.5",
                "starts_at": starts_at, "ends_at": ends_at}  # fmt: skip
        made = client.post("/v1/campaigns", json=body, headers=marketer)
        assert made.status_code == 201, made.text
        campaign = made.json()["campaign_id"]
        with transaction(session_factory) as s:
            coupon = CouponInput(
                kind="amount_off", value="20", min_spend="100", campaign_id=campaign, requires_grant=True,
                coupon_id=f"c-edge-{n}",
            )  # fmt: skip
            create_coupon(s, coupon)
        candidates = [
            {"shopper_id": f"s{i}", "coupon_id": f"c-edge-{n}", "p_control": 0.1, "p_treated": 0.1 + i / 200,
             "spend_control": 150.0, "spend_treated": 160.0}
            for i in range(1, 41)
        ]  # fmt: skip
        plan = client.post(
            f"/v1/campaigns/{campaign}/plan", json={"candidates": candidates}, headers=marketer
        )
        assert plan.status_code == 200, (starts_at, plan.status_code, plan.text)
        scheduled = client.post(f"/v1/campaigns/{campaign}/schedule", headers=marketer)
        assert scheduled.status_code == 200, (starts_at, scheduled.status_code, scheduled.text)


def _cream_campaign(api, key: str, merchant: str, product: str, bid: str, *more: str) -> None:  # noqa: F811
    """A campaign of `merchant` promoting `product`, bidding `bid` on "cream" and the `more` keywords."""
    keywords = [{"keyword": w, "match_type": "broad", "bid": bid} for w in ("cream", *more)]
    body = {"name": "cream", "daily_budget": "10000.00", "product_ids": [product], "keywords": keywords}
    made = api.post(f"/v1/merchants/{merchant}/keyword-campaigns", json=body, headers=auth(key))
    assert made.status_code == 201, made.text


def test_clicking_ones_own_ad_in_a_loop_does_not_lift_it(api, shop):  # noqa: F811
    """An ad's rank is its bid times its click rate, and the click rate counted every click recorded,
    repeats that round 4 stopped billing included: M1, bidding 0.80 against M3's 1.50 for "cream", had
    its own shopper account search and click its ad 60 times (one click billed, 0.30) and took the first
    slot from M3 for 30 days (its click rate 60 of 61 impressions). An ad's clicks count once per shopper
    (or anonymous client) and day, as they are billed: M3 keeps the first slot."""
    keys = _keys(shop)
    with transaction(shop) as s:
        keys["m3"] = create_api_key(s, "merchant", merchant_id="M3")[1]
    _cream_campaign(api, keys["m1"], "M1", "P1", "0.80")
    _cream_campaign(api, keys["m3"], "M3", "P6", "1.50")
    service = api.app.state.search
    service.refresh_ads()

    def sponsored() -> list[dict]:
        params = {"q": "cream", "shopper_id": "s1"}
        return api.get("/v1/search", params=params, headers=auth(keys["shopper"])).json()["sponsored"]

    assert [ad["product_id"] for ad in sponsored()] == ["P6", "P1"]
    for _ in range(60):
        token = next(ad["impression_token"] for ad in sponsored() if ad["product_id"] == "P1")
        click = api.post("/v1/search/clicks", json={"token": token}, headers=auth(keys["shopper"]))
        assert click.status_code == 200, click.text
    service.impressions.flush()
    service.refresh_ads()
    assert [ad["product_id"] for ad in sponsored()] == ["P6", "P1"]


@pytest.mark.parametrize("viewer", ["shopper", "anonymous"])
def test_searching_a_rivals_keyword_in_a_loop_does_not_sink_it(api, shop, viewer):  # noqa: F811
    """Every search showing an ad counted an impression, so its click rate fell with each search that
    showed it unclicked: one viewer (M1's shopper account, or an anonymous caller) searching "night",
    a keyword only M3 bids on, 200 times without clicking took M3's rate from the 2% prior to about 1%
    and its "cream" slot went to M1, bidding about half as much. An ad's impressions count once per
    viewer (shopper, or anonymous client) and day, as its clicks do: M3 keeps the first slot."""
    keys = _keys(shop)
    with transaction(shop) as s:
        keys["m3"] = create_api_key(s, "merchant", merchant_id="M3")[1]
    _cream_campaign(api, keys["m1"], "M1", "P1", "0.80")
    _cream_campaign(api, keys["m3"], "M3", "P6", "1.50", "night")
    service = api.app.state.search
    service.refresh_ads()
    shopper = {"params": {"shopper_id": "s1"}, "headers": auth(keys["shopper"])}
    ask = shopper if viewer == "shopper" else {"params": {}}

    def sponsored(q: str, ask: dict) -> list[str]:
        body = api.get("/v1/search", params={"q": q} | ask["params"], headers=ask.get("headers")).json()
        return [ad["product_id"] for ad in body["sponsored"]]

    assert sponsored("cream", shopper) == ["P6", "P1"]
    for _ in range(200):
        assert sponsored("night", ask) == ["P6"]
    service.impressions.flush()
    service.refresh_ads()
    assert sponsored("cream", shopper) == ["P6", "P1"]
