"""Variants of the issue-9 attacks that the issue does not list, replayed through the HTTP API: none of
them may change the rankings, any order line's commission or margin, stock or reservations, or the
stored events."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from commerce.catalog import Category, Product, Stock
from commerce.orders import OrderLine
from tests.security.test_events import _events, _rankings
from tests.serving.conftest import NOW, auth


def _state(client, session_factory) -> dict:
    with session_factory() as s:
        return {
            "rankings": _rankings(client),
            "events": _events(session_factory),
            "lines": s.execute(select(OrderLine.id, OrderLine.commission, OrderLine.margin)).all(),
            "stock": s.execute(
                select(Stock.product_id, Stock.location, Stock.quantity, Stock.reserved)
            ).all(),
            "terms": s.execute(
                select(Product.product_id, Product.merchant_id, Product.self_operated, Product.cost_price)
            ).all(),
            "commission": s.execute(select(Category.category_id, Category.commission_rate)).all(),
        }


def _view(**extra) -> dict:
    return {"event_id": "v-1", "ts": NOW.isoformat(), "shopper_id": "s1", "product_id": "p05",
            "event_type": "view", **extra}  # fmt: skip


def test_unlisted_attack_variants_change_nothing(client, keys, session_factory):
    # One honest view each first, so repeats below are the attack, not a first signal.
    for who, shopper in (("shopper", "s1"), ("shopper2", "s2")):
        for product in ("p04", "p05", "p11"):
            event = _view(event_id=f"honest-{product}", shopper_id=shopper, product_id=product)
            assert (
                client.post("/v1/events", json={"events": [event]}, headers=auth(keys[who])).status_code
                == 202
            )
    before = _state(client, session_factory)
    merchant, shopper, storefront = auth(keys["merchant"]), auth(keys["shopper"]), auth(keys["storefront"])
    refused = [
        # events: another shopper's identity, oversized batches, odd types and ids, far-future stamps
        ("POST", "/v1/events", shopper, {"events": [_view(shopper_id="s2")]}),
        ("POST", "/v1/events", storefront, {"events": [_view(event_id=f"b{i}") for i in range(1001)]}),
        ("POST", "/v1/events", storefront, {"events": [_view(event_type="Purchase")]}),
        ("POST", "/v1/events", storefront, {"events": [_view(event_type="return")]}),
        ("POST", "/v1/events", storefront, {"events": [_view(shopper_id="s1" * 40)]}),
        ("POST", "/v1/events", storefront, {"events": [_view(quantity=-5)]}),
        ("POST", "/v1/events", storefront, {"events": [_view(ts=(NOW + timedelta(days=1)).isoformat())]}),
        ("POST", "/v1/events", storefront, {"events": [_view(ts="2026-01-01T00:00:00")]}),  # naive time
        # who earns what: another merchant's product, commission and ownership fields, category rates
        ("PATCH", "/v1/products/p05", merchant, {"price": "1.00"}),  # p05 belongs to m2
        ("PATCH", "/v1/products/p02", merchant, {"merchant_id": "m2"}),
        ("PATCH", "/v1/products/p02", merchant, {"commission_rate": "0"}),
        ("PATCH", "/v1/products/p02", merchant, {"cost_price": "99.00"}),
        ("POST", "/v1/merchants/m2/products", merchant, {"sku": "X", "title": "X", "category_id": "beauty",
         "brand": "B", "origin_country": "JP", "price": "1.00", "fulfillment": "bonded"}),
        ("PUT", "/v1/categories/beauty/commission", merchant, {"commission_rate": "0"}),
        ("PUT", "/v1/categories/beauty/commission", shopper, {"commission_rate": "0"}),
        # stock: another merchant's product, out-of-range values
        ("PUT", "/v1/products/p05/stock/wh1", merchant, {"quantity": 0}),
        ("PUT", "/v1/products/p02/stock/wh1", merchant, {"quantity": -1}),
        ("PUT", "/v1/products/p02/stock/wh1", merchant, {"quantity": 10**12}),
        # orders for someone else, absurd quantities
        ("POST", "/v1/shoppers/s2/orders", shopper, {"lines": [{"product_id": "p05", "quantity": 1}]}),
        ("POST", "/v1/shoppers/s1/orders", shopper, {"lines": [{"product_id": "p05", "quantity": 10**6}]}),
        ("POST", "/v1/shoppers/s1/orders", shopper, {"lines": [{"product_id": "p05", "quantity": 0}]}),
    ]  # fmt: skip
    for method, path, headers, body in refused:
        r = client.request(method, path, json=body, headers=headers)
        assert r.status_code in (401, 403, 404, 409, 422), (method, path, body, r.status_code, r.text[:200])
    accepted_but_harmless = [
        # repeats by the same shoppers: through another key, back-dated into every window, new sessions
        ("storefront", _view(event_id="r1", product_id="p04")),
        ("admin", _view(event_id="r2", product_id="p04", ts=(NOW - timedelta(days=20)).isoformat())),
        ("shopper", _view(event_id="r3", product_id="p05", session_id="s" * 32)),
        ("shopper2", _view(event_id="r4", shopper_id="s2", product_id="p05",
                           ts=(NOW - timedelta(days=399)).isoformat())),  # inside max_event_age_days
        ("storefront", _view(event_id="r5", product_id="p11")),  # a delisted product
        ("storefront", _view(event_id="r6", shopper_id="ghost")),  # an invented (or anonymous) visitor
        ("storefront", _view(event_id="r7", product_id="p99")),  # an unknown product
        ("shopper", _view(event_id="client:0:honest-p04", product_id="p04")),  # spelled like another id
    ]  # fmt: skip
    for who, event in accepted_but_harmless:
        r = client.post("/v1/events", json={"events": [event] * 1}, headers=auth(keys[who]))
        assert r.status_code == 202, r.text
    after = _state(client, session_factory)
    stored = set(after.pop("events")) - set(before.pop("events"))
    assert after == before
    # the only new rows are the harmless repeats, each in its sender's namespace
    assert len(stored) == len(accepted_but_harmless) and all(e.startswith("client:") for e, _ in stored)
