"""Idempotency-Key: a retried checkout or key creation has one effect, also when the retries race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
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


def test_keys_expire_after_a_day_for_other_requests_only(client, keys, session_factory):
    headers = {**auth(keys["shopper"]), "Idempotency-Key": "old"}
    before = _orders(session_factory)
    first = client.post("/v1/shoppers/s1/orders", json=CART, headers=headers)
    with transaction(session_factory) as s:
        s.execute(update(IdempotentRequest).values(created_at=utcnow() - timedelta(hours=25)))
    again = client.post("/v1/shoppers/s1/orders", json=CART, headers=headers)  # a retry: never run twice
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    assert _orders(session_factory) == before + 1
    other = {"lines": [{"product_id": "p02", "quantity": 1}]}
    r = client.post("/v1/shoppers/s1/orders", json=other, headers=headers)  # the key is free for another
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert _orders(session_factory) == before + 2
    assert idempotency.purge_expired(session_factory, utcnow() + timedelta(hours=25)) >= 1


def test_refusals_that_did_nothing_are_not_stored_and_bad_keys_are_400(client, keys, session_factory):
    headers = {**auth(keys["shopper"]), "Idempotency-Key": "x" * 256}
    assert client.post("/v1/shoppers/s1/orders", json=CART, headers=headers).status_code == 400
    # a failed claim is released: the failed request can be retried with its key
    claimed = idempotency.claim(session_factory, "key:abc", "k", "f1", utcnow())
    idempotency.release(session_factory, claimed.id, "key:abc", "k", claimed.at)
    assert idempotency.claim(session_factory, "key:abc", "k", "f2", utcnow()).won


def test_the_header_is_documented_on_state_changing_operations(client):
    schema = client.get("/openapi.json").json()
    checkout = schema["paths"]["/v1/shoppers/{shopper_id}/orders"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in checkout["parameters"])
    listing = schema["paths"]["/v1/shoppers/{shopper_id}/orders"]["get"]
    assert all(p["name"] != "Idempotency-Key" for p in listing.get("parameters", []))


def _stored(factory, key: str) -> IdempotentRequest:
    with transaction(factory) as s:
        return s.scalar(select(IdempotentRequest).where(IdempotentRequest.key == key))


def test_a_stored_response_holds_no_plaintext_secret_and_still_replays_it(client, keys, session_factory):
    headers = {**auth(keys["admin"]), "Idempotency-Key": "mint-1"}
    first = client.post("/v1/api-keys", json={"role": "storefront"}, headers=headers)
    assert first.status_code == 201
    secret = first.json()["key"]
    row = _stored(session_factory, "mint-1")
    assert row.body.startswith(idempotency.SEALED)
    assert secret.encode() not in row.body and secret[:10].encode() not in row.body  # nor its hint
    assert b'"key"' not in row.body  # no plaintext JSON at all
    again = client.post("/v1/api-keys", json={"role": "storefront"}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true" and again.json()["key"] == secret
    # another credential derives another key: the row does not open for it (a caller never reaches
    # another's row, whose `caller` differs; this is the defence when the table leaks)
    other = auth(keys["shopper"])["Authorization"].encode()
    mine = auth(keys["admin"])["Authorization"].encode()
    assert idempotency.unseal(mine, row.caller, "mint-1", row.body) == first.content
    with pytest.raises(idempotency.Unreadable):
        idempotency.unseal(other, row.caller, "mint-1", row.body)
    with pytest.raises(idempotency.Unreadable):  # the (caller, key) is bound: a row moved does not open
        idempotency.unseal(mine, row.caller, "mint-2", row.body)


def test_a_row_that_does_not_open_is_refused_not_replayed(client, keys, session_factory):
    headers = {**auth(keys["admin"]), "Idempotency-Key": "mint-2"}
    assert client.post("/v1/api-keys", json={"role": "storefront"}, headers=headers).status_code == 201
    row = _stored(session_factory, "mint-2")
    tampered = row.body[:-1] + bytes([row.body[-1] ^ 1])
    with transaction(session_factory) as s:
        s.execute(update(IdempotentRequest).where(IdempotentRequest.id == row.id).values(body=tampered))
    r = client.post("/v1/api-keys", json={"role": "storefront"}, headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"


def test_a_plaintext_row_stored_before_encryption_still_replays(client, keys, session_factory):
    headers = {**auth(keys["shopper"]), "Idempotency-Key": "legacy"}
    first = client.post("/v1/shoppers/s1/orders", json=CART, headers=headers)
    with transaction(session_factory) as s:  # what the code before encryption stored
        s.execute(
            update(IdempotentRequest).where(IdempotentRequest.key == "legacy").values(body=first.content)
        )
    again = client.post("/v1/shoppers/s1/orders", json=CART, headers=headers)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()


def test_an_anonymous_callers_body_is_sealed_under_its_address_and_key():
    body = b'{"ok": true}'
    sealed = idempotency.seal(b"ip:10.0.0.1", "ip:10.0.0.1", "k", body)
    assert body not in sealed and idempotency.unseal(b"ip:10.0.0.1", "ip:10.0.0.1", "k", sealed) == body
    with pytest.raises(idempotency.Unreadable):
        idempotency.unseal(b"ip:10.0.0.2", "ip:10.0.0.1", "k", sealed)
