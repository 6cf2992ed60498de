"""The merchant's shop in the console over HTTP: an unknown merchant asked for in the query string is a 404
page (it was an empty shop), and a merchant lists a new product from its shop page through the API's
publish endpoint: its own shop only, the API's refusals with their reason and the typed values kept."""

from __future__ import annotations

import pytest

from commerce.catalog import Product, Stock
from commerce.db import transaction
from commerce.merchants import Merchant
from commerce.services.access import create_api_key
from tests.serving.conftest import auth
from tests.serving.test_console import sign_in

NEW = {
    "title": "Sakura hand cream",
    "sku": "SKU-NEW-1",
    "category_id": "beauty",
    "brand": "B",
    "origin_country": "JP",
    "price": "129.00",
    "fulfillment": "bonded",
    "location_0": "wh1",
    "units_0": "7",
}


@pytest.mark.parametrize(
    "path",
    [
        "/console/shop?merchant=NOPE",
        "/console/keyword-campaigns?merchant=NOPE",
        "/console/keyword-campaigns/new?merchant=NOPE",
    ],
)
def test_an_unknown_merchant_in_the_query_is_a_404_page(client, keys, path):
    sign_in(client, keys["admin"])
    r = client.get(path)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "unknown merchant &#39;NOPE&#39;" in r.text and "Back to the console" in r.text
    assert client.get(path.replace("NOPE", "m2")).status_code == 200


def test_a_merchant_lists_a_new_product_from_its_shop(client, keys, session_factory):
    token = sign_in(client, keys["merchant"])  # bound to m1
    page = client.get("/console/shop").text
    assert 'id="new-product-heading"' in page and '<option value="beauty">Beauty</option>' in page
    assert '<option value="root"' not in page  # only leaf categories take products
    assert '<option value="B">B</option>' in page  # the brands m1 is authorised for
    assert client.post("/console/shop/products", data=NEW).status_code == 403  # no CSRF token
    # a merchant key lists for its own shop only, and never sets the admin-only terms
    form = {**NEW, "csrf_token": token, "merchant_id": "m2", "self_operated": "true", "cost_price": "1"}
    r = client.post("/console/shop/products", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/shop"
    with transaction(session_factory) as s:
        product = s.query(Product).filter(Product.sku == "SKU-NEW-1").one()
        assert product.merchant_id == "m1" and not product.self_operated and product.cost_price is None
        assert product.status == "listed" and str(product.price) in ("129.00", "129")
        stock = s.query(Stock).filter(Stock.product_id == product.product_id).one()
        assert (stock.location, stock.quantity) == ("wh1", 7)
    assert "Sakura hand cream" in client.get("/console/shop").text
    api = client.get("/v1/merchants/m1/products?limit=50", headers=auth(keys["merchant"])).json()
    assert "SKU-NEW-1" in {p["sku"] for p in api["items"]}


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"sku": "SKU-p01"}, 409, "merchant &#39;m1&#39; already uses sku &#39;SKU-p01&#39;"),
        ({"location_0": "ow1"}, 422, "warehouse &#39;ow1&#39; holds direct_mail goods, not bonded"),
        ({"price": "0"}, 422, "Price must be greater than 0"),
        ({"origin_country": "Japan"}, 422, "Origin country must have at most 2 characters"),
        ({"category_id": "root"}, 422, "products belong to leaf categories"),
        ({"brand": "Other"}, 422, "holds no authorization for brand &#39;Other&#39;"),
    ],
)
def test_a_refused_product_shows_the_reason_and_keeps_the_input(
    client, keys, session_factory, change, status, reason
):
    token = sign_in(client, keys["merchant"])
    form = {**NEW, **change, "csrf_token": token}
    r = client.post("/console/shop/products", data=form)
    assert r.status_code == status and 'id="product-error"' in r.text and reason in r.text, r.text[-3000:]
    assert 'name="title" required maxlength="300" value="Sakura hand cream"' in r.text  # the input is kept
    assert f'name="sku" required maxlength="64" value="{form["sku"]}"' in r.text
    assert f'name="location_0" list="np-warehouses" maxlength="64" value="{form["location_0"]}"' in r.text
    with transaction(session_factory) as s:
        assert s.query(Product).filter(Product.title == "Sakura hand cream").count() == 0


@pytest.mark.parametrize(("standing", "api_status"), [("pending", 201), ("rejected", 422)])
def test_a_merchant_not_approved_is_answered_as_the_api_answers(
    make_client, session_factory, standing, api_status
):
    """The console publishes through the API's own endpoint: the same status and reason for a merchant
    whose application is pending or was rejected."""
    with transaction(session_factory) as s:
        s.get(Merchant, "m3").status = standing
        key = create_api_key(s, "merchant", merchant_id="m3")[1]
    client = make_client()
    body = {k: v for k, v in NEW.items() if not k.startswith(("location_", "units_"))}
    api = client.post("/v1/merchants/m3/products", json={**body, "sku": "SKU-API"}, headers=auth(key))
    assert api.status_code == api_status
    token = sign_in(client, key)
    r = client.post(
        "/console/shop/products",
        data={**body, "sku": "SKU-CONSOLE", "csrf_token": token},
        follow_redirects=False,
    )
    if api.status_code == 201:  # pending: listed, sold once an admin approves (`sellable`)
        assert r.status_code == 303
    else:
        assert r.status_code == api.status_code and 'id="product-error"' in r.text
        assert api.json()["detail"].replace("'", "&#39;") in r.text


def _shipped_order(session_factory, product_id: str, tracking_no: str, scans=()) -> int:
    """A paid, cleared and shipped order of `product_id` for shopper s1, with carrier `scans` recorded
    out of time order (status, location, hours after shipping)."""
    from datetime import timedelta

    from commerce.services import orders
    from commerce.services.checkout import CartLine, checkout
    from commerce.sqltypes import utcnow

    now = utcnow()
    with transaction(session_factory) as s:
        order_id = checkout(s, "s1", [CartLine(product_id, 1)], at=now - timedelta(days=2)).order_id
        orders.pay_order(s, order_id, f"pay-{tracking_no}", at=now - timedelta(days=2))
        orders.clear_customs(s, order_id, at=now - timedelta(days=1, hours=12))
        shipped_at = now - timedelta(days=1)
        orders.ship_order(s, order_id, tracking_no, location="Ningbo bonded zone", at=shipped_at)
        for status, location, hours in scans:
            orders.add_tracking_event(
                s, order_id, status, location=location, at=shipped_at + timedelta(hours=hours)
            )
    return order_id


def test_a_merchant_reads_its_shipped_orders_tracking_and_no_one_elses(client, keys, session_factory):
    """Shipments list -> order page: carrier, tracking number, every step in time order, the promised
    window; another merchant's order is a 404 as a missing one, and the pages are read-only (no form
    posts anywhere but sign-out). (A scan is dated when it is recorded, never before the order's latest
    step: `commerce.services.orders._after_last_step`.)"""
    scans = [("departed_origin", "Ningbo", 2), ("arrived_at_hub", "Hangzhou hub", 6)]
    mine = _shipped_order(session_factory, "p01", "SF-MINE-1", scans)
    theirs = _shipped_order(session_factory, "p05", "SF-M2-1")  # m2's goods
    sign_in(client, keys["merchant"])  # bound to m1
    listing = client.get("/console/shop/orders")
    assert listing.status_code == 200
    assert "SF-MINE-1" in listing.text and "SF-M2-1" not in listing.text
    assert "arrived at hub, Hangzhou hub" in listing.text  # the latest scan
    assert f'href="/console/shop/orders/{mine}"' in listing.text
    assert (
        'aria-current="page">Shipments<' in listing.text
        and 'aria-current="page">My shop<' not in listing.text
    )

    page = client.get(f"/console/shop/orders/{mine}").text
    assert 'id="tracking-no">SF-MINE-1<' in page and 'id="order-status">shipped<' in page
    timeline = page[page.index('id="tracking"') :]
    order = ["order paid", "order customs cleared", "order shipped", "departed origin", "arrived at hub"]
    positions = [
        timeline.index(step.split(" ", 1)[1] if step.startswith("order") else step) for step in order
    ]
    assert positions == sorted(positions), timeline[:2000]
    assert " to " in page.split('id="expected-delivery">')[1].split("<")[0]  # the promised window, as dates
    assert "<form" not in page.split("<main", 1)[1]  # read-only
    assert client.get(f"/console/shop/orders/{theirs}").status_code == 404
    assert client.get("/console/shop/orders/999999").status_code == 404
    assert (
        client.get(f"/console/shop/orders/{mine}?merchant=m2").status_code == 200
    )  # a merchant key: its own

    sign_in(client, keys["admin"])  # an admin names the merchant
    assert "SF-M2-1" in client.get("/console/shop/orders?merchant=m2").text
    assert client.get(f"/console/shop/orders/{mine}?merchant=m2").status_code == 404
    assert "type its name or id" in client.get("/console/shop/orders").text  # asks which merchant first


def test_shipments_page_through_newest_first_and_say_when_there_are_none(client, keys, session_factory):
    from serving.console import shop

    sign_in(client, keys["merchant2"])  # m2: nothing shipped yet
    empty = client.get("/console/shop/orders").text
    assert "No shipped orders yet" in empty and "0 shipped orders." in empty
    ids = [_shipped_order(session_factory, "p05", f"SF-P-{i}") for i in range(3)]
    old, shop.PAGE = shop.PAGE, 2
    try:
        first = client.get("/console/shop/orders").text
        second = client.get("/console/shop/orders?offset=2").text
    finally:
        shop.PAGE = old
    assert "1–2 of 3 shipped orders." in first and 'href="/console/shop/orders?offset=2">Next' in first
    assert f"Order {ids[0]}<" in second and f"Order {ids[0]}<" not in first
    assert "3 of 3 shipped orders." in second  # one row: not "3–3 of 3"
