"""Round 18: a hostile client against the console's merchant pages and what the API leaves to them, on the
tiny marketplace of tests/serving. Each test failed before its fix."""

from __future__ import annotations

import re

from tests.serving.test_console import sign_in


def test_a_refused_stock_quantity_says_nothing_of_the_product_named(client, keys):
    """A quantity the console's set-stock form refused (`abc`) drew again the shop of the product named in
    the URL: for a made-up id a 500 (it read the merchant of no product), for another merchant's hidden
    product (p09, m3's, pending) a 403 naming another merchant, and for one's own the shop again: which
    ids exist, to a merchant the API answers a made-up id's 404 for them. The quantity is refused before
    any product is read, as the API's 422 is: a merchant key's own shop is drawn again whatever was named."""
    token = sign_in(client, keys["merchant"])  # m1
    for product_id in ("p01", "p05", "p09", "no-such-product"):
        form = {"csrf_token": token, "location": "wh1", "quantity": "abc"}
        page = client.post(f"/console/shop/products/{product_id}/stock", data=form, follow_redirects=False)
        assert page.status_code == 422, (product_id, page.status_code)
        assert "Product p01" in page.text and "Product p05" not in page.text, product_id  # m1's own shop
    sign_in(client, keys["admin"])
    form = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console").text)[1]}
    form |= {"location": "wh1", "quantity": "abc"}
    made_up = client.post("/console/shop/products/no-such-product/stock", data=form, follow_redirects=False)
    assert made_up.status_code == 404
    theirs = client.post("/console/shop/products/p09/stock", data=form, follow_redirects=False)
    assert theirs.status_code == 422 and "Product p09" in theirs.text  # an admin: that product's shop
