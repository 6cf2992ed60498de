"""Logistics endpoints: delivery quotes with and without a delivery model, merchants' shipping rules,
replenishment hints from paid orders."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from commerce.catalog import Stock
from commerce.db import transaction
from commerce.services.checkout import CartLine, checkout
from commerce.services.logistics import seed_default_partners
from commerce.services.orders import pay_order
from features.logistics import delivery_features
from features.synth.logistics import PARTNERS, simulate_delivery_days
from models.logistics import DeliveryTimeModel
from tests.serving.conftest import NOW, ScriptedSource, auth


@pytest.fixture(scope="module")
def delivery_model() -> DeliveryTimeModel:
    rng = np.random.default_rng(0)
    n = 6000
    partner = rng.integers(0, len(PARTNERS), n)
    zones = np.array(["east", "north", "west"])[rng.integers(0, 3, n)]
    start = int(pd.Timestamp("2025-06-02", tz="UTC").value // 1000)
    ordered = start + rng.integers(0, 90 * 86_400_000_000, n)
    days = simulate_delivery_days(rng, partner, zones, ordered, [])
    parcels = pd.DataFrame(
        {
            "partner_id": [PARTNERS[i].partner_id for i in partner],
            "zone": zones,
            "weight_g": rng.integers(100, 3000, n),
            "ordered_at": pd.to_datetime(ordered, unit="us", utc=True),
        }
    )
    return DeliveryTimeModel(n_estimators=40).fit(delivery_features(parcels), days)


@pytest.fixture
def seeded(session_factory):
    with transaction(session_factory) as s:
        seed_default_partners(s)
    return session_factory


def test_quote_without_a_model_uses_the_partners_day_ranges(seeded, client, keys):
    r = client.get(
        "/v1/products/p01/delivery", params={"region": "Zhejiang"}, headers=auth(keys["storefront"])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] is None and body["zone"] == "east" and body["rule"] == "fastest"
    by_partner = {o["partner_id"]: o for o in body["options"]}
    assert set(by_partner) == {"sf-bonded", "cainiao-bonded", "yto-bonded"}  # lp1 has no rate card
    assert by_partner["yto-bonded"]["days_low"] == 2 and by_partner["yto-bonded"]["days_high"] == 5
    assert float(by_partner["cainiao-bonded"]["cost"]) == pytest.approx(8.40)  # 10 x 1.05 x 0.8
    assert body["chosen"] == "cainiao-bonded"  # fastest by published range, then cheaper than SF
    assert body["chargeable_weight_g"] == 500


def test_quote_with_the_model_and_the_merchants_promise(seeded, make_client, keys, delivery_model):
    client = make_client(delivery_source=ScriptedSource(versions={"3": delivery_model}, alias="3"))
    merchant, storefront = auth(keys["merchant"]), auth(keys["storefront"])
    fast = client.get("/v1/products/p01/delivery", params={"region": "Sichuan"}, headers=storefront).json()
    assert fast["model"] == "crosscart-delivery v3" and fast["zone"] == "west"
    options = {o["partner_id"]: o for o in fast["options"]}
    for o in options.values():
        assert o["days_low"] <= o["days_median"] <= o["promise_days"] <= o["days_high"]
    assert options["sf-bonded"]["promise_days"] < options["yto-bonded"]["promise_days"]
    assert fast["chosen"] == min(options.values(), key=lambda o: o["promise_days"])["partner_id"]
    assert fast["promised_window"] == [options[fast["chosen"]]["earliest"], options[fast["chosen"]]["latest"]]

    generous = max(o["promise_days"] for o in options.values()) + 1
    rule = client.put(
        "/v1/merchants/m1/shipping-rule", json={"max_days": int(generous) + 1}, headers=merchant
    )
    assert rule.status_code == 200 and rule.json()["max_days"] == int(generous) + 1
    cheap = client.get("/v1/products/p01/delivery", params={"region": "Sichuan"}, headers=storefront).json()
    assert cheap["rule"] == f"within:{int(generous) + 1}"
    assert (
        cheap["chosen"] == min(options.values(), key=lambda o: float(o["cost"]))["partner_id"] == "yto-bonded"
    )

    client.put("/v1/merchants/m1/shipping-rule", json={"partner_id": "sf-bonded"}, headers=merchant)
    fixed = client.get("/v1/products/p01/delivery", params={"region": "Sichuan"}, headers=storefront).json()
    assert (fixed["rule"], fixed["chosen"]) == ("partner:sf-bonded", "sf-bonded")
    assert client.get("/v1/merchants/m1/shipping-rule", headers=merchant).json()["partner_id"] == "sf-bonded"


def test_bad_delivery_and_rule_requests_are_clear(seeded, client, keys):
    storefront, merchant = auth(keys["storefront"]), auth(keys["merchant"])
    assert client.get("/v1/products/p01/delivery", headers=storefront).status_code == 422  # no region
    assert client.get("/v1/products/p11/delivery?region=Beijing", headers=storefront).status_code == 404
    assert client.get("/v1/products/nope/delivery?region=Beijing", headers=storefront).status_code == 404
    both = client.put(
        "/v1/merchants/m1/shipping-rule", json={"partner_id": "sf-bonded", "max_days": 2}, headers=merchant
    )
    assert both.status_code == 422
    assert client.put("/v1/merchants/m1/shipping-rule", json={}, headers=merchant).status_code == 422
    unknown = client.put("/v1/merchants/m1/shipping-rule", json={"partner_id": "owl"}, headers=merchant)
    assert unknown.status_code == 404
    assert client.get("/v1/merchants/m1/shipping-rule", headers=merchant).json() is None
    r = client.get("/v1/merchants/m1/replenishment?weeks=2&lead_time_weeks=2", headers=merchant)
    assert r.status_code == 422


def test_replenishment_orders_what_the_lead_time_needs(seeded, client, keys, session_factory):
    with transaction(session_factory) as s:
        stock = s.query(Stock).filter_by(product_id="p03", location="wh1").one()
        stock.quantity = 60
    with transaction(session_factory) as s:
        for week in range(12, 0, -1):  # 3 units a week of p03 for 12 weeks
            at = NOW - timedelta(weeks=week)
            order = checkout(s, "s1", [CartLine("p03", 3)], at=at)
            pay_order(s, order.order_id, f"PAY-{week}", at=at + timedelta(minutes=5))
    r = client.get(
        "/v1/merchants/m1/replenishment",
        params={"weeks": 4, "lead_time_weeks": 2, "service_level": 0.95},
        headers=auth(keys["merchant"]),
    )
    assert r.status_code == 200, r.text
    rows = {(x["product_id"], x["location"]): x for x in r.json()}
    p03 = rows[("p03", "wh1")]
    assert len(p03["forecast"]) == 4 and all(2.0 <= f <= 4.0 for f in p03["forecast"])
    assert p03["available"] == 60 - 36  # on hand after the 36 units sold here
    assert p03["reorder"] is False and p03["reorder_qty"] == 0  # 24 units cover a 2-week lead time
    assert rows[("p01", "wh1")]["reorder_qty"] == 0  # one sale long ago: no demand to cover
    assert (
        all(pid in {"p01", "p03", "p11"} for pid, _ in rows) and ("p02", "wh1") not in rows
    )  # bonded, m1 only

    with transaction(session_factory) as s:
        s.query(Stock).filter_by(product_id="p03", location="wh1").one().quantity = 2  # 2 units left on hand
    p03 = {
        (x["product_id"], x["location"]): x
        for x in client.get("/v1/merchants/m1/replenishment", headers=auth(keys["merchant"])).json()
    }[("p03", "wh1")]
    assert p03["reorder"] is True
    # order up to three weeks of demand plus safety stock, less the two units on hand
    assert p03["available"] == 2
    assert p03["reorder_qty"] == pytest.approx(p03["order_up_to"] - 2, abs=1)
    assert p03["reorder_qty"] >= 8


def test_cards_and_checkout_promise_the_predicted_window(seeded, make_client, keys, delivery_model):
    """The anonymous card shows in stock yes/no and the promised window (no stock per location); the
    order stores the window checkout predicted with the model, not the partner's published range."""
    client = make_client(delivery_source=ScriptedSource(versions={"3": delivery_model}, alias="3"))
    storefront = auth(keys["storefront"])
    card = client.get("/v1/products/p01", params={"region": "Sichuan"}, headers=storefront).json()
    assert card["in_stock"] is True and card["stock"] is None
    quote = client.get("/v1/products/p01/delivery", params={"region": "Sichuan"}, headers=storefront).json()
    assert quote["in_stock"] is True
    promised = card["delivery"]
    assert promised["model"] == "crosscart-delivery v3" and promised["partner_id"] == quote["chosen"]
    chosen = next(o for o in quote["options"] if o["partner_id"] == quote["chosen"])
    low, high = (pd.Timestamp(t) for t in promised["promised_window"])
    assert (high - low) / pd.Timedelta(days=1) == pytest.approx(chosen["days_high"] - chosen["days_low"])
    assert client.get("/v1/products/p01", headers=storefront).json()["delivery"] is None  # no region

    empty = client.get("/v1/products/p12", params={"region": "Sichuan"}, headers=storefront).json()
    assert empty["in_stock"] is False and empty["delivery"] is None
    sold_out = client.get("/v1/products/p12/delivery", params={"region": "Sichuan"}, headers=storefront)
    assert sold_out.status_code == 200 and sold_out.json()["in_stock"] is False

    # shopper s1's region is "east": not a province, so it ships at the remote rate and speed
    remote = client.get("/v1/products/p01/delivery", params={"region": "east"}, headers=storefront).json()
    placed = client.post(
        "/v1/shoppers/s1/orders",
        json={"lines": [{"product_id": "p01", "quantity": 1}]},
        headers=auth(keys["shopper"]),
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["partner_id"] == remote["chosen"]
    chosen = next(o for o in remote["options"] if o["partner_id"] == remote["chosen"])
    created = pd.Timestamp(order["created_at"])
    days = [
        (pd.Timestamp(order[k]) - created) / pd.Timedelta(days=1)
        for k in ("delivery_earliest", "delivery_latest")
    ]
    assert days == pytest.approx([chosen["days_low"], chosen["days_high"]], abs=0.05)
