"""Round 14: a hostile client against how the API reads a request (its framing, its credential, its
numbers), on the tiny marketplace of tests/serving. Each test failed before its fix."""

from __future__ import annotations

import socket
from types import UnionType
from typing import Annotated, Union, get_args, get_origin

from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ValidationError

from serving.field_access import nested_models
from serving.http import HeaderTimeoutH11Protocol, server_options
from serving.schemas.base import _numeric_fields
from tests.resilience.conftest import running_server
from tests.serving.conftest import auth

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
