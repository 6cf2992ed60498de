"""The authorization matrix: every endpoint, every role, including object-level checks.

Callers: anonymous, storefront, shopper (bound to s1), shopper2 (s2), merchant (m1), merchant2 (m2),
marketer, admin. The resources in the paths belong to s1 and m1. An allowed caller must get past
authorization (any answer but 401/403, and never a 5xx); a refused one gets exactly the listed status.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from tests.serving.conftest import NOW, auth

CALLERS = (
    "anonymous", "storefront", "shopper", "shopper2", "merchant", "merchant2", "marketer", "data_scientist",
    "admin",
)  # fmt: skip
EVERYONE = set(CALLERS)
STOREFRONT = {"storefront", "shopper", "admin"}
EXPERIMENTERS = {"data_scientist", "marketer", "admin"}
_unique = itertools.count()


def event_body():
    n = next(_unique)
    return {
        "events": [
            {
                "event_id": f"ev-{n}",
                "ts": NOW.isoformat(),
                "shopper_id": "s1",
                "event_type": "view",
                "product_id": "p01",
            }
        ]
    }


def apply_body():
    return {"name": "Shop", "country": "JP", "licence_no": f"LIC-{next(_unique)}", "brands": ["B"]}


def product_body():
    n = next(_unique)
    return {
        "sku": f"NEW-{n}",
        "title": "New",
        "category_id": "beauty",
        "brand": "B",
        "origin_country": "JP",
        "price": "10.00",
        "fulfillment": "bonded",
        "stock": {"wh1": 3},
    }


CART = {"lines": [{"product_id": "p05", "quantity": 1}]}

# (method, path, body factory or dict, allowed callers, status for refused keyed callers)
MATRIX = [
    ("GET", "/v1/shoppers/s1/recommendations", None, STOREFRONT, 403),
    ("GET", "/v1/shoppers/s1/buy-again", None, STOREFRONT, 403),
    ("GET", "/v1/products/p01/similar", None, EVERYONE, None),
    ("GET", "/v1/rankings", None, EVERYONE, None),
    ("GET", "/v1/products", None, EVERYONE, None),
    ("GET", "/v1/products/p01", None, EVERYONE, None),
    ("GET", "/v1/categories", None, EVERYONE, None),
    ("PUT", "/v1/categories/toys/commission", {"commission_rate": "0.06"}, {"admin"}, 403),
    ("POST", "/v1/merchants", apply_body, EVERYONE, None),
    ("GET", "/v1/merchants", None, {"admin"}, 403),
    ("GET", "/v1/merchants/m1", None, {"merchant", "admin"}, 403),
    ("POST", "/v1/merchants/m3/review", {"decision": "approve"}, {"admin"}, 403),
    ("POST", "/v1/merchants/m1/products", product_body, {"merchant", "admin"}, 403),
    ("GET", "/v1/merchants/m1/products", None, {"merchant", "admin"}, 403),
    ("PATCH", "/v1/products/p02", {"title": "Renamed"}, {"merchant", "admin"}, 403),
    ("PUT", "/v1/products/p02/stock/wh1", {"quantity": 7}, {"merchant", "admin"}, 403),
    ("POST", "/v1/shoppers/s1/cart/quote", CART, STOREFRONT, 403),
    ("POST", "/v1/shoppers/s1/orders", CART, {"shopper", "admin"}, 403),
    ("GET", "/v1/shoppers/s1/orders", None, {"shopper", "admin"}, 403),
    ("GET", "/v1/orders/1", None, {"shopper", "admin"}, 403),
    ("GET", "/v1/orders/1/tracking", None, {"shopper", "admin"}, 403),
    ("POST", "/v1/orders/1/cancel", {"reason": "changed my mind"}, {"shopper", "admin"}, 403),
    ("POST", "/v1/orders/1/payment", {"payment_ref": "PAY-1"}, {"admin"}, 403),
    ("POST", "/v1/orders/1/shipment", {"tracking_no": "T-1"}, {"admin"}, 403),
    ("POST", "/v1/orders/1/tracking", {"status": "in_transit"}, {"admin"}, 403),
    ("POST", "/v1/orders/1/status", {"status": "customs_cleared"}, {"admin"}, 403),
    ("POST", "/v1/orders/1/refund", {"reason": "damaged"}, {"admin"}, 403),
    ("POST", "/v1/orders/1/refund-requests", {"reason": "damaged"}, {"shopper", "admin"}, 403),
    ("GET", "/v1/refund-requests/1", None, {"shopper", "admin"}, 403),
    ("POST", "/v1/refund-requests/1/decision", {"decision": "reject", "note": "no"}, {"admin"}, 403),
    ("GET", "/v1/audit-log", None, {"admin"}, 403),
    ("GET", "/v1/shoppers/s1/coupons", None, STOREFRONT, 403),
    ("POST", "/v1/events", event_body, STOREFRONT, 403),
    ("GET", "/v1/experiments", None, EXPERIMENTERS, 403),
    (
        "POST",
        "/v1/experiments",
        {"name": "exp", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]},
        EXPERIMENTERS,
        403,
    ),
    ("GET", "/v1/experiments/exp", None, EXPERIMENTERS, 403),
    ("POST", "/v1/experiments/exp/start", None, EXPERIMENTERS, 403),
    ("POST", "/v1/experiments/exp/exposures", {"unit_id": "s1", "variant": "a"}, STOREFRONT, 403),
    ("GET", "/v1/experiments/exp/exposures", None, EXPERIMENTERS, 403),
    ("POST", "/v1/experiments/exp/stop", None, EXPERIMENTERS, 403),
    (
        "POST",
        "/v1/campaigns",
        {
            "name": "C",
            "channel": "site",
            "budget": "100.00",
            "starts_at": NOW.isoformat(),
            "ends_at": (NOW + timedelta(days=1)).isoformat(),
        },
        {"marketer", "admin"},
        403,
    ),
    ("GET", "/v1/campaigns", None, {"marketer", "admin"}, 403),
    ("GET", "/v1/campaigns/cmp-x", None, {"marketer", "admin"}, 403),
    (
        "POST",
        "/v1/campaigns/cmp-x/plan",
        {
            "candidates": [
                {
                    "shopper_id": "s1",
                    "coupon_id": "c",
                    "p_control": 0.1,
                    "p_treated": 0.2,
                    "spend_control": 1,
                    "spend_treated": 2,
                }
            ]
        },
        {"marketer", "admin"},
        403,
    ),
    ("POST", "/v1/campaigns/cmp-x/launch", None, {"marketer", "admin"}, 403),
    ("GET", "/v1/campaigns/cmp-x/audience.csv", None, {"marketer", "admin"}, 403),
    ("GET", "/v1/campaigns/cmp-x/report", None, {"marketer", "admin"}, 403),
    ("GET", "/v1/logistics/partners", None, STOREFRONT, 403),
    ("GET", "/v1/products/p01/delivery?region=Zhejiang", None, STOREFRONT, 403),
    ("PUT", "/v1/merchants/m1/shipping-rule", {"max_days": 3}, {"merchant", "admin"}, 403),
    ("GET", "/v1/merchants/m1/shipping-rule", None, {"merchant", "admin"}, 403),
    ("GET", "/v1/merchants/m1/replenishment", None, {"merchant", "admin"}, 403),
    (
        "POST",
        "/v1/coupons",
        lambda: {"kind": "amount_off", "value": "5", "coupon_id": f"cp-{next(_unique)}"},
        {"marketer", "admin"},
        403,
    ),  # fmt: skip
    ("GET", "/v1/coupons", None, {"marketer", "admin"}, 403),
    ("GET", "/v1/coupons/c-10off", None, {"marketer", "admin"}, 403),
    ("PATCH", "/v1/coupons/c-10off", {"name": "Ten off"}, {"marketer", "admin"}, 403),
    ("POST", "/v1/coupons/c-beauty20/retire", None, {"marketer", "admin"}, 403),
    ("GET", "/v1/api-keys", None, {"admin"}, 403),
    ("POST", "/v1/api-keys", {"role": "storefront"}, {"admin"}, 403),
    ("DELETE", "/v1/api-keys/999", None, {"admin"}, 403),
    ("DELETE", "/v1/api-keys/999/console-sessions", None, {"admin"}, 403),
]

# Object-level refusals: a second shopper or merchant passes the role check but not the ownership one.
# Another shopper's order answers 404 (indistinguishable from a missing order).
OBJECT_LEVEL = {
    ("shopper2", "/v1/shoppers/s1/recommendations"): 403,
    ("shopper2", "/v1/shoppers/s1/buy-again"): 403,
    ("shopper2", "/v1/shoppers/s1/cart/quote"): 403,
    ("shopper2", "/v1/shoppers/s1/orders"): 403,
    ("shopper2", "/v1/orders/1"): 404,
    ("shopper2", "/v1/orders/1/tracking"): 404,
    ("shopper2", "/v1/orders/1/cancel"): 404,
    ("shopper2", "/v1/orders/1/refund-requests"): 404,
    ("shopper2", "/v1/refund-requests/1"): 404,
    ("shopper2", "/v1/shoppers/s1/coupons"): 403,
    ("shopper2", "/v1/events"): 403,
    ("shopper2", "/v1/experiments/exp/exposures"): 403,
    ("merchant2", "/v1/merchants/m1"): 403,
    ("merchant2", "/v1/merchants/m1/products"): 403,
    ("merchant2", "/v1/products/p02"): 403,
    ("merchant2", "/v1/products/p02/stock/wh1"): 403,
    ("merchant2", "/v1/merchants/m1/shipping-rule"): 403,
    ("merchant2", "/v1/merchants/m1/replenishment"): 403,
}
ROLE_OF = {"shopper2": "shopper", "merchant2": "merchant"}


def test_authorization_matrix(client, keys):
    problems = []
    for method, path, body, allowed, refused in MATRIX:
        for caller in CALLERS:
            payload = body() if callable(body) else body
            headers = {} if caller == "anonymous" else auth(keys[caller])
            r = client.request(method, path, json=payload, headers=headers)
            role = ROLE_OF.get(caller, caller)
            if caller == "anonymous":
                expected = None if caller in allowed else {401}
            elif (caller, path) in OBJECT_LEVEL and role in allowed:
                expected = {OBJECT_LEVEL[(caller, path)]}
            elif role in allowed:
                expected = None
            else:
                expected = {refused}
            if r.status_code >= 500:
                problems.append(f"{caller} {method} {path}: {r.status_code} {r.text}")
            elif expected is None and r.status_code in (401, 403):
                problems.append(f"{caller} {method} {path}: refused with {r.status_code} {r.text}")
            elif expected is not None and r.status_code not in expected:
                problems.append(f"{caller} {method} {path}: {r.status_code}, expected {expected} {r.text}")
    assert problems == []


def test_shopper_cannot_read_another_shoppers_orders_or_coupons(client, keys):
    for path in ("/v1/shoppers/s1/orders", "/v1/shoppers/s1/coupons"):
        assert client.get(path, headers=auth(keys["shopper2"])).status_code == 403
        assert client.get(path, headers=auth(keys["shopper"])).status_code == 200
    assert client.get("/v1/orders/1", headers=auth(keys["shopper2"])).json()["code"] == "order_not_found"
    mine = client.get("/v1/shoppers/s1/orders", headers=auth(keys["shopper"])).json()
    assert [o["order_id"] for o in mine["items"]] == [1]


@pytest.mark.parametrize("header", ["Bearer cc_not-a-real-key", "Bearer ", "Basic abc"])
def test_bad_keys_are_refused(client, header):
    r = client.get("/v1/shoppers/s1/recommendations", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_revoked_key_stops_working(client, keys):
    created = client.post("/v1/api-keys", json={"role": "marketer"}, headers=auth(keys["admin"])).json()
    assert client.get("/v1/experiments", headers=auth(created["key"])).status_code == 200
    listed = client.get("/v1/api-keys", headers=auth(keys["admin"])).json()
    assert listed["total"] >= len(listed["items"]) > 0
    assert all("key" not in k and "key_hash" not in k for k in listed["items"])
    assert client.delete(f"/v1/api-keys/{created['id']}", headers=auth(keys["admin"])).status_code == 200
    assert client.get("/v1/experiments", headers=auth(created["key"])).status_code == 401
