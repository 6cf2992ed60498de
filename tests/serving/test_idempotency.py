"""Idempotency-Key: a retried checkout or key creation has one effect, also when the retries race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import func, select, update

from commerce.access import ApiKey
from commerce.catalog import Stock
from commerce.db import transaction
from commerce.idempotency import IdempotentRequest
from commerce.orders import Order
from commerce.services import idempotency
from commerce.sqltypes import utcnow
from tests.serving.conftest import auth

CART = {"lines": [{"product_id": "p05", "quantity": 1}]}


def _orders(factory) -> int:
    with transaction(factory) as s:
        return s.scalar(select(func.count()).select_from(Order))


def _stock(factory, product="p05") -> tuple[int, int]:
    with transaction(factory) as s:
        row = s.scalar(select(Stock).where(Stock.product_id == product))
        return row.quantity, row.reserved


def test_a_retried_checkout_is_placed_once_and_replays_the_first_response(client, keys, session_factory):
    shopper = {**auth(keys["shopper"]), "Idempotency-Key": "order-7f3a"}
    before = _orders(session_factory)
    first = client.post("/v1/shoppers/s1/orders", json=CART, headers=shopper)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    second = client.post("/v1/shoppers/s1/orders", json=CART, headers=shopper)
    assert second.status_code == 201 and second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert _orders(session_factory) == before + 1
    assert _stock(session_factory) == (5, 1)  # one unit reserved, not two
    # without the header a second checkout is a second order
    assert client.post("/v1/shoppers/s1/orders", json=CART, headers=auth(keys["shopper"])).status_code == 201
    assert _orders(session_factory) == before + 2


def test_the_same_key_for_another_request_is_refused(client, keys):
    headers = {**auth(keys["shopper"]), "Idempotency-Key": "k-1"}
    assert client.post("/v1/shoppers/s1/orders", json=CART, headers=headers).status_code == 201
    other = {"lines": [{"product_id": "p06", "quantity": 1}]}
    r = client.post("/v1/shoppers/s1/orders", json=other, headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"


def test_keys_are_scoped_to_the_caller(client, keys, session_factory):
    before = _orders(session_factory)
    client.post(
        "/v1/shoppers/s1/orders", json=CART, headers={**auth(keys["shopper"]), "Idempotency-Key": "same"}
    )
    admin = {**auth(keys["admin"]), "Idempotency-Key": "same"}
    r = client.post("/v1/shoppers/s1/orders", json=CART, headers=admin)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert _orders(session_factory) == before + 2


def test_racing_retries_create_one_key_and_all_get_its_response(client, keys, session_factory):
    headers = {**auth(keys["admin"]), "Idempotency-Key": "new-key-race"}
    with transaction(session_factory) as s:
        before = s.scalar(select(func.count()).select_from(ApiKey))
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: client.post("/v1/api-keys", json={"role": "storefront"}, headers=headers), range(8)
            )
        )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["key"] for a in answers}) == 1  # the same secret, shown to every retry
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    with transaction(session_factory) as s:
        assert s.scalar(select(func.count()).select_from(ApiKey)) == before + 1


def test_keys_expire_after_a_day(client, keys, session_factory):
    headers = {**auth(keys["shopper"]), "Idempotency-Key": "old"}
    before = _orders(session_factory)
    client.post("/v1/shoppers/s1/orders", json=CART, headers=headers)
    with transaction(session_factory) as s:
        s.execute(update(IdempotentRequest).values(created_at=utcnow() - timedelta(hours=25)))
    r = client.post("/v1/shoppers/s1/orders", json=CART, headers=headers)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert _orders(session_factory) == before + 2
    assert idempotency.purge_expired(session_factory, utcnow() + timedelta(hours=25)) >= 1


def test_refusals_that_did_nothing_are_not_stored_and_bad_keys_are_400(client, keys, session_factory):
    headers = {**auth(keys["shopper"]), "Idempotency-Key": "x" * 256}
    assert client.post("/v1/shoppers/s1/orders", json=CART, headers=headers).status_code == 400
    # a failed claim is released: the failed request can be retried with its key
    idempotency.claim(session_factory, "key:abc", "k", "f1", utcnow())
    idempotency.release(session_factory, "key:abc", "k")
    assert idempotency.claim(session_factory, "key:abc", "k", "f2", utcnow()).won


def test_the_header_is_documented_on_state_changing_operations(client):
    schema = client.get("/openapi.json").json()
    checkout = schema["paths"]["/v1/shoppers/{shopper_id}/orders"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in checkout["parameters"])
    listing = schema["paths"]["/v1/shoppers/{shopper_id}/orders"]["get"]
    assert all(p["name"] != "Idempotency-Key" for p in listing.get("parameters", []))
