"""Property-level authorization (issue 9, item 1): the field x role matrix over every writable field of
every request schema, generated from the API's own OpenAPI document, so a new field without an entry in
serving.field_access fails here."""

from __future__ import annotations

import copy
import itertools
from datetime import timedelta

import pytest

from commerce.catalog import Product
from serving.field_access import ENDPOINT, FIELD_ROLES, may_set
from tests.serving.conftest import NOW, auth

CALLERS = ("anonymous", "storefront", "shopper", "merchant", "marketer", "admin")
_unique = itertools.count()

#: The restricted entries of the table, spelled out: loosening one must be a deliberate change here too.
RESTRICTED = {
    ("ProductCreate", "self_operated"): {"admin"},
    ("ProductCreate", "cost_price"): {"admin"},
    ("CommissionSet", "commission_rate"): {"admin"},
}


def _n() -> int:
    return next(_unique)


# Every operation with a body: a concrete path and a body holding every field (nested ones included).
def _coupon_terms() -> dict:
    """A coupon's every field but its id, as a create and a change send them."""
    return {
        "name": "Ten off",
        "kind": "amount_off",
        "value": "10",
        "cap": None,
        "min_spend": "50",
        "scope_type": "category",
        "scope_id": "beauty",
        "per_shopper_limit": 1,
        "usage_limit": 100,
        "budget": "500.00",
        "starts_at": NOW.isoformat(),
        "ends_at": (NOW + timedelta(days=7)).isoformat(),
        "requires_grant": False,
        "campaign_id": None,
    }


FULL_BODIES = {
    ("POST", "/v1/merchants"): (
        "/v1/merchants",
        lambda: {"name": "Shop", "country": "JP", "licence_no": f"LIC-{_n()}", "brands": ["B"]},
    ),
    ("POST", "/v1/merchants/{merchant_id}/review"): (
        "/v1/merchants/m3/review",
        lambda: {"decision": "reject", "reason": "incomplete papers"},
    ),
    ("POST", "/v1/merchants/{merchant_id}/products"): (
        "/v1/merchants/m1/products",
        lambda: {
            "sku": f"FM-{_n()}",
            "title": "New",
            "category_id": "beauty",
            "brand": "B",
            "origin_country": "JP",
            "price": "10.00",
            "fulfillment": "bonded",
            "self_operated": True,
            "cost_price": "9.99",
            "stock": {"wh1": 3},
        },
    ),
    ("PUT", "/v1/categories/{category_id}/commission"): (
        "/v1/categories/toys/commission",
        lambda: {"commission_rate": "0.0600"},
    ),
    ("PATCH", "/v1/products/{product_id}"): (
        "/v1/products/p02",
        lambda: {"title": "Renamed", "price": "98.00", "status": "listed"},
    ),
    ("PUT", "/v1/products/{product_id}/stock/{location}"): (
        "/v1/products/p02/stock/wh1",
        lambda: {"quantity": 5},
    ),
    ("POST", "/v1/shoppers/{shopper_id}/cart/quote"): (
        "/v1/shoppers/s1/cart/quote",
        lambda: {
            "lines": [{"product_id": "p05", "quantity": 1}],
            "coupon_id": "c-10off",
            "partner_id": "lp1",
        },
    ),
    ("POST", "/v1/shoppers/{shopper_id}/orders"): (
        "/v1/shoppers/s1/orders",
        lambda: {
            "lines": [{"product_id": "p05", "quantity": 1}],
            "coupon_id": "c-10off",
            "partner_id": "lp1",
        },
    ),
    ("POST", "/v1/orders/{order_id}/tracking"): (
        "/v1/orders/1/tracking",
        lambda: {"status": "in_transit", "location": "Hangzhou", "note": "on time"},
    ),
    ("POST", "/v1/orders/{order_id}/cancel"): (
        "/v1/orders/999/cancel",
        lambda: {"reason": "changed my mind"},
    ),
    ("POST", "/v1/orders/{order_id}/refund-requests"): (
        "/v1/orders/999/refund-requests",
        lambda: {"reason": "damaged"},
    ),
    ("POST", "/v1/refund-requests/{request_id}/decision"): (
        "/v1/refund-requests/999/decision",
        lambda: {"decision": "reject", "note": "outside the window"},
    ),
    ("POST", "/v1/orders/{order_id}/payment"): ("/v1/orders/999/payment", lambda: {"payment_ref": "PAY-1"}),
    ("POST", "/v1/orders/{order_id}/shipment"): (
        "/v1/orders/999/shipment",
        lambda: {"tracking_no": "T-1", "location": "Ningbo"},
    ),
    ("POST", "/v1/orders/{order_id}/status"): ("/v1/orders/999/status", lambda: {"status": "delivered"}),
    ("POST", "/v1/orders/{order_id}/refund"): ("/v1/orders/999/refund", lambda: {"reason": "lost"}),
    ("POST", "/v1/events"): (
        "/v1/events",
        lambda: {
            "events": [
                {
                    "event_id": f"fe-{_n()}",
                    "ts": NOW.isoformat(),
                    "shopper_id": "s1",
                    "event_type": "cart",
                    "product_id": "p01",
                    "quantity": 2,
                    "value": 99.5,
                    "session_id": "sess-1",
                    "campaign_id": "cmp-1",
                    "coupon_id": "c-10off",
                    "query": "cream",
                }
            ]
        },
    ),
    ("POST", "/v1/campaigns"): (
        "/v1/campaigns",
        lambda: {
            "name": "C",
            "channel": "site",
            "budget": "100.00",
            "starts_at": NOW.isoformat(),
            "ends_at": (NOW + timedelta(days=1)).isoformat(),
            "control_share": "0.2",
        },
    ),
    ("POST", "/v1/campaigns/{campaign_id}/plan"): (
        "/v1/campaigns/cmp-x/plan",
        lambda: {
            "candidates": [
                {
                    "shopper_id": "s1",
                    "coupon_id": "c",
                    "p_control": 0.1,
                    "p_treated": 0.2,
                    "spend_control": 1,
                    "spend_treated": 2,
                    "p_redeem": 0.5,
                }
            ],
            "region": "east",
            "segment": "new",
            "margin_rate": 0.3,
            "method": "greedy",
            "seed": 1,
        },
    ),
    ("POST", "/v1/experiments"): (
        "/v1/experiments",
        lambda: {
            "name": f"exp-{_n()}",
            "variants": [
                {"name": "a", "weight": 1, "config": {"model_alias": "champion"}},
                {"name": "b", "weight": 1, "config": None},
            ],
            "layer": "recs",
            "traffic": 0.5,
            "description": "d",
            "primary_metric": "conversion",
            "planned_units_per_variant": 100,
            "inference": "fixed",
        },
    ),
    ("POST", "/v1/coupons"): (
        "/v1/coupons",
        lambda: {**_coupon_terms(), "coupon_id": f"cp-{_n()}"},
    ),
    ("PATCH", "/v1/coupons/{coupon_id}"): (
        "/v1/coupons/c-10off",
        _coupon_terms,
    ),
    ("PUT", "/v1/models/{name}/aliases/{alias}"): (
        "/v1/models/crosscart-recommender/aliases/challenger",
        lambda: {"version": "1"},
    ),
    ("POST", "/v1/search/clicks"): ("/v1/search/clicks", lambda: {"token": "not-a-real-token"}),
    ("POST", "/v1/merchants/{merchant_id}/keyword-campaigns"): (
        "/v1/merchants/m1/keyword-campaigns",
        lambda: {
            "name": "Spring",
            "daily_budget": "50.00",
            "product_ids": ["p01"],
            "keywords": [{"keyword": "cream", "match_type": "broad", "bid": "0.80"}],
        },  # fmt: skip
    ),
    ("PATCH", "/v1/keyword-campaigns/{campaign_id}"): (
        "/v1/keyword-campaigns/kc-none",
        lambda: {"daily_budget": "60.00", "status": "paused"},
    ),
    ("POST", "/v1/keyword-campaigns/{campaign_id}/keywords"): (
        "/v1/keyword-campaigns/kc-none/keywords",
        lambda: {"keyword": "serum", "match_type": "exact", "bid": "1.20"},
    ),
    ("PATCH", "/v1/keyword-campaigns/{campaign_id}/keywords/{keyword_id}"): (
        "/v1/keyword-campaigns/kc-none/keywords/1",
        lambda: {"bid": "1.50", "status": "paused"},
    ),
    ("PUT", "/v1/logistics/locations/{location}/owner"): (
        "/v1/logistics/locations/wh1/owner",
        lambda: {"merchant_id": "m1"},
    ),
    ("PUT", "/v1/merchants/{merchant_id}/shipping-rule"): (
        "/v1/merchants/m1/shipping-rule",
        lambda: {"partner_id": "lp1", "max_days": 3},
    ),
    ("POST", "/v1/experiments/{name}/exposures"): (
        "/v1/experiments/nope/exposures",
        lambda: {"unit_id": "s1", "variant": "a"},
    ),
    ("POST", "/v1/api-keys"): (
        "/v1/api-keys",
        lambda: {"role": "shopper", "name": "k", "shopper_id": "s1", "merchant_id": None},
    ),
}


def _ref_name(schema: dict) -> str | None:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict) and (name := _ref_name(schema[key])):
            return name
    for option in schema.get("anyOf", []) + schema.get("allOf", []):
        if name := _ref_name(option):
            return name
    return None


class Schemas:
    """Request schemas and their fields, read from the OpenAPI document."""

    def __init__(self, spec: dict) -> None:
        self.components = spec["components"]["schemas"]
        self.operations = {}
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                body = op.get("requestBody", {}).get("content", {}).get("application/json")
                if body:
                    self.operations[(method.upper(), path)] = _ref_name(body["schema"])

    def properties(self, name: str) -> dict:
        return self.components[name].get("properties", {})

    def nested(self, name: str, field: str) -> str | None:
        return _ref_name(self.properties(name)[field])

    def fields(self) -> set[tuple[str, str]]:
        found, todo = set(), list(self.operations.values())
        while todo:
            name = todo.pop()
            for field in self.properties(name):
                if (name, field) not in found:
                    found.add((name, field))
                    if inner := self.nested(name, field):
                        todo.append(inner)
        return found

    def minimal(self, name: str, data):
        """`data` without its optional fields (recursively)."""
        if isinstance(data, list):
            return [self.minimal(name, item) for item in data]
        required = set(self.components[name].get("required", []))
        out = {}
        for field, value in data.items():
            if field in required:
                inner = self.nested(name, field)
                out[field] = self.minimal(inner, value) if inner and value is not None else value
        return out

    def variants(self, name: str, full: dict):
        """(schema, field, body): the minimal body plus that one field, for every field at every depth."""
        base = self.minimal(name, full)
        for field in self.properties(name):
            assert field in full, f"the full body of {name} lacks {field!r}: add it to FULL_BODIES"
            value, inner = full[field], self.nested(name, field)
            body = copy.deepcopy(base)
            body[field] = self.minimal(inner, value) if inner and value is not None else value
            yield name, field, body
            if inner and value is not None:
                item = value[0] if isinstance(value, list) else value
                for schema, inner_field, inner_body in self.variants(inner, item):
                    body = copy.deepcopy(base)
                    body[field] = [inner_body] if isinstance(value, list) else inner_body
                    yield schema, inner_field, body


@pytest.fixture
def settings(settings, tracking_uri):
    """An empty MLflow registry behind /v1/models: a missing one is a 503 by design (the registry
    readers never create one), which the matrix below would count as a server error."""
    return settings.model_copy(update={"mlflow_uri": tracking_uri})


@pytest.fixture
def schemas(client) -> Schemas:
    return Schemas(client.app.openapi())


def test_every_writable_field_has_exactly_one_entry(schemas):
    fields = schemas.fields()
    table = {(schema, field) for schema, entries in FIELD_ROLES.items() for field in entries}
    assert sorted(fields - table) == [], "fields without an entry in serving.field_access.FIELD_ROLES"
    assert sorted(table - fields) == [], "entries for fields no request schema has"
    assert set(schemas.operations) == set(FULL_BODIES), "every operation with a body needs a full body here"


def test_restricted_fields_are_the_financial_ones():
    restricted = {
        (schema, field): set(roles)
        for schema, entries in FIELD_ROLES.items()
        for field, roles in entries.items()
        if roles != ENDPOINT
    }
    assert restricted == RESTRICTED


def test_field_by_role_matrix_over_http(client, keys, schemas):
    """Every field of every request schema, sent by every role: a role the table refuses gets 403 (401
    without a key) naming the field; any other answer is never a field refusal and never a 5xx."""
    problems, checked = [], 0
    for (method, template), (path, full) in FULL_BODIES.items():
        for schema, field, body in schemas.variants(schemas.operations[(method, template)], full()):
            for caller in CALLERS:
                headers = {} if caller == "anonymous" else auth(keys[caller])
                r = client.request(method, path, json=body, headers=headers)
                checked += 1
                refused = r.status_code in (401, 403) and f"{schema}.{field}" in r.json().get("detail", "")
                label = f"{caller} {method} {path} {schema}.{field}: {r.status_code} {r.text[:200]}"
                if r.status_code >= 500:
                    problems.append(label)
                elif may_set(schema, field, caller):
                    if refused:
                        problems.append("refused: " + label)
                elif not refused or r.status_code != (401 if caller == "anonymous" else 403):
                    problems.append("not refused: " + label)
    assert problems == []
    assert checked >= len(schemas.fields()) * len(CALLERS)


@pytest.mark.parametrize("field, value", [("self_operated", True), ("cost_price", "99.99")])
def test_merchant_cannot_publish_commission_free_goods(client, keys, session_factory, field, value):
    """The attack: a merchant key publishing a product as self-operated pays no commission."""
    body = {
        "sku": f"EVADE-{field}",
        "title": "Cream",
        "category_id": "beauty",
        "brand": "B",
        "origin_country": "JP",
        "price": "100.00",
        "fulfillment": "bonded",
        "stock": {"wh1": 5},
        field: value,
    }
    if field == "cost_price":
        body["self_operated"] = True
    r = client.post("/v1/merchants/m1/products", json=body, headers=auth(keys["merchant"]))
    assert r.status_code == 403 and "ProductCreate." in r.json()["detail"]
    with session_factory() as s:
        assert s.query(Product).filter_by(sku=body["sku"]).count() == 0
    # Unknown fields are refused too, never silently dropped (e.g. a commission override).
    body = {k: v for k, v in body.items() if k not in ("self_operated", "cost_price")}
    r = client.post(
        "/v1/merchants/m1/products", json={**body, "commission_rate": "0"}, headers=auth(keys["merchant"])
    )
    assert r.status_code == 422
    r = client.patch("/v1/products/p02", json={"self_operated": True}, headers=auth(keys["merchant"]))
    assert r.status_code == 422
    with session_factory() as s:
        assert s.get(Product, "p02").self_operated is False


def test_admin_sets_self_operated_terms_and_the_audit_log_says_so(client, keys):
    body = {
        "sku": "SELF-1",
        "title": "Platform cream",
        "category_id": "beauty",
        "brand": "B",
        "origin_country": "JP",
        "price": "100.00",
        "fulfillment": "bonded",
        "self_operated": True,
        "cost_price": "60.00",
        "stock": {"wh1": 5},
    }
    r = client.post("/v1/merchants/m1/products", json=body, headers=auth(keys["admin"]))
    assert r.status_code == 201 and r.json()["self_operated"] is True
    log = client.get("/v1/audit-log", params={"action": "product.self_operated"}, headers=auth(keys["admin"]))
    assert [e["target_id"] for e in log.json()["items"]] == [r.json()["product_id"]]
