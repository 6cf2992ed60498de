"""Smaller leaks and errors (issue 9, item 6), each replayed through the API."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select, update

from commerce.access import ApiKey
from commerce.audit import AuditEntry
from commerce.catalog import Product, Stock
from commerce.db import transaction
from commerce.orders import AnnualSpend, Order
from commerce.refunds import RefundRequest
from commerce.services.checkout import customs_year
from commerce.sqltypes import utcnow
from crosscart.cli.demo_keys import create_demo_keys, sample_key_lines
from tests.serving.conftest import auth


def _product_body(**extra) -> dict:
    return {
        "sku": "BIG-1",
        "title": "Big",
        "category_id": "beauty",
        "brand": "B",
        "origin_country": "JP",
        "price": "10.00",
        "fulfillment": "bonded",
        **extra,
    }


def test_out_of_range_stock_is_a_422_not_a_500(client, keys, session_factory):
    merchant = auth(keys["merchant"])
    for stock in ({"wh1": 2**63}, {"wh1": 2**31}, {"wh1": 10_000_001}, {"wh1": -1}, {"x" * 65: 1}):
        r = client.post("/v1/merchants/m1/products", json=_product_body(stock=stock), headers=merchant)
        assert r.status_code == 422, (stock, r.text)
    r = client.put("/v1/products/p01/stock/wh1", json={"quantity": 2**63}, headers=merchant)
    assert r.status_code == 422
    with session_factory() as s:
        assert s.scalar(select(Product).where(Product.sku == "BIG-1")) is None


def test_annual_limit_refusal_names_no_figures(client, keys, session_factory):
    """A storefront key may quote for any shopper: the refusal must not reveal what they spent."""
    with transaction(session_factory) as s:
        digest = s.get(Order, 1).identity_digest
        s.execute(
            update(AnnualSpend.__table__)
            .where(AnnualSpend.identity_digest == digest, AnnualSpend.year == customs_year(utcnow()))
            .values(amount=Decimal("25987.65"))
        )
    cart = {"lines": [{"product_id": "p05", "quantity": 1}]}
    for role in ("storefront", "shopper"):
        r = client.post("/v1/shoppers/s1/cart/quote", json=cart, headers=auth(keys[role]))
        assert r.status_code == 422 and r.json()["code"] == "annual_limit_exceeded"
        assert "25987" not in r.text and "25,987" not in r.text and "99.5" not in r.text


def test_public_product_page_says_in_stock_not_how_much(client, keys):
    for headers in ({}, auth(keys["storefront"]), auth(keys["shopper"]), auth(keys["merchant2"])):
        page = client.get("/v1/products/p01", headers=headers).json()
        assert page["in_stock"] is True and page["stock"] is None
        assert "reserved" not in str(page) and "quantity" not in str(page)
    owner = client.get("/v1/products/p01", headers=auth(keys["merchant"])).json()
    assert owner["in_stock"] is True and owner["stock"][0]["location"] == "wh1"
    admin = client.get("/v1/products/p01", headers=auth(keys["admin"])).json()
    assert admin["stock"] == owner["stock"]


def _paid_order(client, keys) -> int:
    cart = {"lines": [{"product_id": "p05", "quantity": 2}], "coupon_id": "c-10off"}
    order = client.post("/v1/shoppers/s1/orders", json=cart, headers=auth(keys["shopper"])).json()
    paid = client.post(
        f"/v1/orders/{order['order_id']}/payment", json={"payment_ref": "P-9"}, headers=auth(keys["admin"])
    )
    assert paid.json()["status"] == "paid"
    return order["order_id"]


def test_paid_orders_are_undone_only_through_a_refund_request(client, keys, session_factory):
    """The attack: cancel a paid order directly, leaving no refund record."""
    shopper, admin = auth(keys["shopper"]), auth(keys["admin"])
    oid = _paid_order(client, keys)
    with session_factory() as s:
        stock_before = s.scalar(select(Stock.quantity).where(Stock.product_id == "p05"))
    for who in (shopper, admin):
        r = client.post(f"/v1/orders/{oid}/cancel", json={"reason": "changed my mind"}, headers=who)
        assert r.status_code == 409 and r.json()["code"] == "refund_required", r.text
    assert client.get(f"/v1/orders/{oid}", headers=shopper).json()["status"] == "paid"

    asked = client.post(f"/v1/orders/{oid}/refund-requests", json={"reason": "wrong size"}, headers=shopper)
    assert asked.status_code == 201 and asked.json()["status"] == "requested"
    again = client.post(f"/v1/orders/{oid}/refund-requests", json={"reason": "again"}, headers=shopper)
    assert again.status_code == 409
    other = client.post(
        f"/v1/orders/{oid}/refund-requests", json={"reason": "x"}, headers=auth(keys["shopper2"])
    )
    assert other.status_code == 404
    rid = asked.json()["id"]
    assert client.get(f"/v1/refund-requests/{rid}", headers=auth(keys["shopper2"])).status_code == 404
    decide = {"decision": "complete", "note": "approved"}
    assert client.post(f"/v1/refund-requests/{rid}/decision", json=decide, headers=shopper).status_code == 403
    done = client.post(f"/v1/refund-requests/{rid}/decision", json=decide, headers=admin)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    twice = client.post(f"/v1/refund-requests/{rid}/decision", json=decide, headers=admin)
    assert twice.status_code == 409
    assert client.get(f"/v1/orders/{oid}", headers=shopper).json()["status"] == "refunded"
    with session_factory() as s:
        assert s.scalar(select(Stock.quantity).where(Stock.product_id == "p05")) == stock_before + 2
        request = s.scalar(select(RefundRequest).where(RefundRequest.order_id == oid))
        assert (request.status, request.reason, request.resolution_note) == (
            "completed",
            "wrong size",
            "approved",
        )
    log = client.get("/v1/audit-log", params={"target_id": str(oid)}, headers=admin).json()["items"]
    assert [e["action"] for e in log] == ["refund.completed", "refund.requested", "order.payment_confirmed"]


def test_unpaid_orders_still_cancel_directly(client, keys):
    shopper = auth(keys["shopper"])
    order = client.post(
        "/v1/shoppers/s1/orders", json={"lines": [{"product_id": "p05", "quantity": 1}]}, headers=shopper
    )
    r = client.post(f"/v1/orders/{order.json()['order_id']}/cancel", json={"reason": "oops"}, headers=shopper)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_rejected_refund_leaves_the_order_paid(client, keys):
    shopper, admin = auth(keys["shopper"]), auth(keys["admin"])
    oid = _paid_order(client, keys)
    rid = client.post(f"/v1/orders/{oid}/refund-requests", json={"reason": "meh"}, headers=shopper).json()[
        "id"
    ]
    no_note = client.post(f"/v1/refund-requests/{rid}/decision", json={"decision": "reject"}, headers=admin)
    assert no_note.status_code == 422
    r = client.post(
        f"/v1/refund-requests/{rid}/decision", json={"decision": "reject", "note": "used"}, headers=admin
    )
    assert r.json()["status"] == "rejected"
    assert client.get(f"/v1/orders/{oid}", headers=shopper).json()["status"] == "paid"


def test_keys_only_for_shoppers_and_merchants_that_exist(client, keys, session_factory):
    admin = auth(keys["admin"])
    with session_factory() as s:
        before = s.query(ApiKey).count()
    for body in ({"role": "shopper", "shopper_id": "ghost"}, {"role": "merchant", "merchant_id": "ghost"}):
        r = client.post("/v1/api-keys", json=body, headers=admin)
        assert r.status_code == 422 and "ghost" in r.json()["detail"]
    with session_factory() as s:
        assert s.query(ApiKey).count() == before
    assert (
        client.post("/v1/api-keys", json={"role": "shopper", "shopper_id": "s3"}, headers=admin).status_code
        == 201
    )


def test_demo_prints_no_admin_key(session_factory, tmp_path):
    document = create_demo_keys(session_factory, tmp_path)
    printed = "\n".join(sample_key_lines(document))
    assert document["keys"]["admin"]["key"] not in printed
    for label, spec in document["keys"].items():
        if spec["role"] != "admin":
            assert spec["key"] in printed and label in printed
    assert (tmp_path / "demo-keys.json").stat().st_mode & 0o777 == 0o600
    with session_factory() as s:  # created by the operator, outside the API: audited all the same
        logged = s.scalars(select(AuditEntry.actor_role).where(AuditEntry.action == "api_key.created")).all()
    assert logged == ["operator"] * len(document["keys"])
