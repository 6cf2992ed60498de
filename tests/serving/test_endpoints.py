"""What each resource's endpoints do, beyond who may call them (see test_authorization.py)."""

from __future__ import annotations

from decimal import Decimal

from tests.serving.conftest import NOW, auth, grant_only_campaign


def test_merchant_application_review_and_publishing(client, keys):
    admin, merchant = auth(keys["admin"]), auth(keys["merchant"])
    applied = client.post(
        "/v1/merchants", json={"name": "Kiwi Co", "country": "NZ", "licence_no": "NZ-1", "brands": ["Kiwi"]}
    )
    assert applied.status_code == 201 and applied.json()["status"] == "pending"
    mid = applied.json()["merchant_id"]
    again = client.post(
        "/v1/merchants", json={"name": "X", "country": "NZ", "licence_no": "NZ-1", "brands": ["K"]}
    )
    assert again.status_code == 409 and again.json()["code"] == "duplicate_licence"
    no_reason = client.post(f"/v1/merchants/{mid}/review", json={"decision": "reject"}, headers=admin)
    assert no_reason.status_code == 422
    approved = client.post(f"/v1/merchants/{mid}/review", json={"decision": "approve"}, headers=admin)
    assert approved.json()["status"] == "approved"

    body = {
        "sku": "SKU-NEW",
        "title": "Serum",
        "category_id": "beauty",
        "brand": "B",
        "origin_country": "JP",
        "price": "120.00",
        "fulfillment": "bonded",
        "stock": {"wh1": 4},
    }
    created = client.post("/v1/merchants/m1/products", json=body, headers=merchant)
    assert created.status_code == 201, created.text
    product = created.json()
    assert product["price"] == "120.00" and product["stock"] == [
        {"location": "wh1", "quantity": 4, "reserved": 0}
    ]
    unauthorized_brand = client.post(
        "/v1/merchants/m1/products", json={**body, "sku": "S2", "brand": "Nope"}, headers=merchant
    )
    assert (
        unauthorized_brand.status_code == 422 and unauthorized_brand.json()["code"] == "brand_not_authorized"
    )
    float_price = client.post(
        "/v1/merchants/m1/products", json={**body, "sku": "S3", "price": "1.234"}, headers=merchant
    )
    assert float_price.status_code == 422

    pid = product["product_id"]
    # Another merchant may not touch it; the owner may delist it, which hides it from the storefront.
    assert (
        client.patch(
            f"/v1/products/{pid}", json={"price": "1.00"}, headers=auth(keys["merchant2"])
        ).status_code
        == 403
    )
    delisted = client.patch(f"/v1/products/{pid}", json={"status": "delisted"}, headers=merchant)
    assert delisted.json()["status"] == "delisted"
    assert client.get(f"/v1/products/{pid}").status_code == 404
    assert client.get(f"/v1/products/{pid}", headers=merchant).status_code == 200
    stock = client.put(f"/v1/products/{pid}/stock/wh2", json={"quantity": 9}, headers=merchant).json()[
        "stock"
    ]
    assert {s["location"]: s["quantity"] for s in stock} == {"wh1": 4, "wh2": 9}
    own = client.get("/v1/merchants/m1/products", params={"status": "delisted"}, headers=merchant).json()
    assert [p["product_id"] for p in own["items"]] == ["p11", pid]  # p11: seeded delisted


def test_suspending_a_merchant_removes_its_products_after_refresh(client, keys):
    admin = auth(keys["admin"])
    r = client.post(
        "/v1/merchants/m2/review", json={"decision": "suspend", "reason": "fake goods"}, headers=admin
    )
    assert r.json()["status"] == "suspended" and r.json()["status_reason"] == "fake goods"
    client.app.state.serving.catalog.refresh()
    items = client.get("/v1/shoppers/s1/recommendations", params={"n": 20}, headers=auth(keys["storefront"]))
    assert {i["merchant_id"] for i in items.json()["items"]} == {"m1"}


def test_product_search_and_pagination(client):
    page = client.get("/v1/products", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 8 and page["limit"] == 2 and len(page["items"]) == 2  # 8 sellable products
    assert [p["product_id"] for p in page["items"]] == ["p06", "p07"]  # popularity order, after p05
    found = client.get("/v1/products", params={"q": "P03"}).json()
    assert [p["product_id"] for p in found["items"]] == ["p03"]
    cheap = client.get("/v1/products", params={"category": "toys", "fulfillment": "bonded"}).json()
    assert {p["product_id"] for p in cheap["items"]} == {"p03", "p06"}
    assert client.get("/v1/products", params={"limit": 101}).status_code == 422
    cats = client.get("/v1/categories", params={"parent_id": "root"}).json()
    assert {c["category_id"] for c in cats["items"]} == {"beauty", "toys"}


def test_order_lifecycle_with_tax_coupon_and_tracking(client, keys):
    shopper, admin = auth(keys["shopper"]), auth(keys["admin"])
    cart = {"lines": [{"product_id": "p05", "quantity": 2}], "coupon_id": "c-10off"}
    quote = client.post("/v1/shoppers/s1/cart/quote", json=cart, headers=shopper).json()
    assert quote["order_id"] is None
    assert Decimal(quote["goods_total"]) == Decimal("199.00") and Decimal(quote["discount_total"]) == Decimal(
        "10.00"
    )
    lines_total = sum(Decimal(line["total"]) for line in quote["lines"])
    assert Decimal(quote["total"]) == lines_total == Decimal("189.00") + Decimal(quote["tax_total"])
    assert "declared_name" not in quote and "identity_digest" not in quote

    order = client.post("/v1/shoppers/s1/orders", json=cart, headers=shopper)
    assert order.status_code == 201, order.text
    oid = order.json()["order_id"]
    assert order.json()["total"] == quote["total"]
    # The quote reserved nothing: one more checkout of the coupon (one use per shopper) is refused.
    reused = client.post("/v1/shoppers/s1/orders", json=cart, headers=shopper)
    assert reused.status_code == 422, reused.text

    assert (
        client.post(f"/v1/orders/{oid}/payment", json={"payment_ref": "PAY-9"}, headers=admin).json()[
            "status"
        ]
        == "paid"
    )
    assert (
        client.post(f"/v1/orders/{oid}/status", json={"status": "customs_cleared"}, headers=admin).status_code
        == 200
    )
    shipped = client.post(
        f"/v1/orders/{oid}/shipment", json={"tracking_no": "SF-1", "location": "Ningbo"}, headers=admin
    )
    assert shipped.json()["status"] == "shipped"
    client.post(
        f"/v1/orders/{oid}/tracking", json={"status": "in_transit", "location": "Hangzhou"}, headers=admin
    )
    trace = client.get(f"/v1/orders/{oid}/tracking", headers=shopper).json()
    assert [s["status"] for s in trace] == [
        "pending_payment",
        "paid",
        "customs_cleared",
        "shipped",
        "shipped",
        "in_transit",
    ]
    cancel = client.post(f"/v1/orders/{oid}/cancel", json={"reason": "too late"}, headers=shopper)
    assert cancel.status_code == 409 and cancel.json()["code"] == "refund_required"  # paid: refund
    refund = client.post(f"/v1/orders/{oid}/refund", json={"reason": "broken"}, headers=admin)
    assert refund.json()["status"] == "refunded"
    listed = client.get("/v1/shoppers/s1/orders", params={"status": "refunded"}, headers=shopper).json()
    assert [o["order_id"] for o in listed["items"]] == [oid]


def test_checkout_errors_are_clear_and_change_nothing(client, keys):
    shopper = auth(keys["shopper"])
    for lines, code in [
        ([{"product_id": "p10", "quantity": 1}], "not_sellable"),
        ([{"product_id": "zzz", "quantity": 1}], "not_sellable"),  # as p10: which ids exist stays hidden
        ([{"product_id": "p05", "quantity": 6}], "out_of_stock"),
    ]:
        r = client.post("/v1/shoppers/s1/orders", json={"lines": lines}, headers=shopper)
        assert r.status_code in (404, 409, 422) and r.json()["code"] == code, r.text
    assert client.get("/v1/shoppers/s1/orders", headers=shopper).json()["total"] == 1


def test_coupons_ranked_for_context_without_uplift_model(client, keys):
    s1 = client.get("/v1/shoppers/s1/coupons", headers=auth(keys["shopper"])).json()
    assert s1["ranking"] == "discount" and "no model registered" in s1["fallback_reason"]
    assert {c["coupon_id"] for c in s1["coupons"]} == {
        "c-10off",
        "c-beauty20",
    }  # c-vip was granted to s2 only
    page = client.get(
        "/v1/shoppers/s2/coupons",
        params={"context": "product", "product_id": "p05"},
        headers=auth(keys["storefront"]),
    ).json()
    ranked = [(c["coupon_id"], c["discount"]) for c in page["coupons"]]
    # p05 costs 99.50: c-vip saves 50, beauty 20% saves 19.90, 10 off saves 10.
    assert ranked == [("c-vip", "50.00"), ("c-beauty20", "19.90"), ("c-10off", "10.00")]
    toys = client.get(
        "/v1/shoppers/s2/coupons", params={"product_id": "p06"}, headers=auth(keys["admin"])
    ).json()
    assert "c-beauty20" not in {c["coupon_id"] for c in toys["coupons"]}


def test_coupons_ranked_by_uplift_model(make_client, keys):
    class Uplift:
        name = "uplift"

        def predict(self, frame):
            return [{"c-10off": 0.30, "c-vip": 0.05, "c-beauty20": 0.10}[c] for c in frame["coupon_id"]]

    from tests.serving.conftest import ScriptedSource

    client = make_client(uplift_source=ScriptedSource(versions={"4": Uplift()}, alias="4"))
    page = client.get(
        "/v1/shoppers/s2/coupons", params={"product_id": "p05"}, headers=auth(keys["admin"])
    ).json()
    assert page["ranking"] == "uplift" and page["model_version"] == "4"
    # value = uplift x (99.50 - discount): 0.30 x 89.50 > 0.10 x 79.60 > 0.05 x 49.50
    assert [c["coupon_id"] for c in page["coupons"]] == ["c-10off", "c-beauty20", "c-vip"]
    assert abs(page["coupons"][0]["expected_incremental_value"] - 0.30 * 89.50) < 1e-9


def test_coupon_ranking_scores_the_shoppers_features_as_of_now(make_client, keys):
    """The served uplift model holds no shopper data: the API reads the shopper's features from the
    events table at request time and passes them with every (shopper, coupon) row."""
    from features.campaign_features import NUMERIC_FEATURES

    seen = []

    class Uplift:
        name = "uplift"
        feature_names_in_ = [*NUMERIC_FEATURES, "region_Shanghai", "channel_site"]

        def predict(self, frame):
            seen.append(frame)
            return [0.1] * len(frame)

    from tests.serving.conftest import ScriptedSource

    client = make_client(uplift_source=ScriptedSource(versions={"4": Uplift()}, alias="4"))
    page = client.get("/v1/shoppers/s2/coupons", headers=auth(keys["admin"])).json()
    assert page["ranking"] == "uplift" and page["coupons"]
    frame = seen[-1]
    assert set(Uplift.feature_names_in_) <= set(frame.columns)
    assert (frame["shopper_id"] == "s2").all() and frame[Uplift.feature_names_in_].notna().all().all()
    assert frame["recency_days"].nunique() == 1  # one shopper, one feature row for every coupon


def test_events_are_idempotent_and_batches_atomic(client, keys):
    event = {
        "event_id": "e-1",
        "ts": NOW.isoformat(),
        "shopper_id": "s1",
        "event_type": "cart",
        "product_id": "p02",
    }
    first = client.post(
        "/v1/events", json={"events": [event, {**event, "event_id": "e-2"}]}, headers=auth(keys["shopper"])
    )
    assert first.status_code == 202 and first.json()["inserted"] == 2
    again = client.post("/v1/events", json={"events": [event]}, headers=auth(keys["shopper"])).json()
    assert again["inserted"] == 0 and again["duplicates"] == 1  # a retry by the same key is a no-op
    other = client.post("/v1/events", json={"events": [event]}, headers=auth(keys["storefront"])).json()
    assert other["inserted"] == 1  # ids live in each key's own namespace
    bad = client.post(
        "/v1/events",
        json={"events": [{**event, "event_id": "e-3"}, {**event, "event_id": "e-4", "product_id": None}]},
        headers=auth(keys["storefront"]),
    )
    assert bad.status_code == 422
    naive = client.post(
        "/v1/events",
        json={"events": [{**event, "event_id": "e-5", "ts": "2026-01-01T00:00:00"}]},
        headers=auth(keys["storefront"]),
    )
    assert naive.status_code == 422
    again = client.post(
        "/v1/events", json={"events": [{**event, "event_id": "e-3"}]}, headers=auth(keys["admin"])
    )
    assert again.json()["inserted"] == 1  # the refused batch stored nothing


def test_experiments_and_variant_in_recommendations(client, keys):
    marketer, storefront = auth(keys["marketer"]), auth(keys["storefront"])
    body = {
        "name": "recs-v2",
        "variants": [
            {"name": "control", "weight": 1},
            {"name": "challenger", "weight": 1, "config": {"model_alias": "challenger"}},
        ],
    }
    assert client.post("/v1/experiments", json=body, headers=marketer).status_code == 201
    assert client.post("/v1/experiments", json=body, headers=marketer).status_code == 409
    assert client.post("/v1/experiments/recs-v2/start", headers=marketer).json()["status"] == "running"
    variant = client.get("/v1/shoppers/s1/recommendations", headers=storefront).json()["experiments"][
        "recs-v2"
    ]
    assert variant in {"control", "challenger"}
    client.app.state.serving.exposures.flush()
    logged = client.post(
        "/v1/experiments/recs-v2/exposures", json={"unit_id": "s1", "variant": variant}, headers=storefront
    )
    # The page already logged the control's exposure; the registry has no `challenger` alias, so a
    # challenger shopper was served the champion and only the explicit call exposes them.
    assert logged.json() == {"first_exposure": variant == "challenger"}
    summary = client.get("/v1/experiments/recs-v2/exposures", headers=marketer).json()
    assert summary["counts"][variant] == 1 and summary["srm_flag"] is False
    assert client.post("/v1/experiments/recs-v2/stop", headers=marketer).json()["status"] == "stopped"
    assert client.get("/v1/shoppers/s1/recommendations", headers=storefront).json()["experiments"] == {}


def test_campaign_lifecycle_plan_export_report(client, keys, session_factory):
    marketer = auth(keys["marketer"])
    cid = grant_only_campaign(client, marketer, session_factory, "Double 11", "c-camp")
    candidates = [
        {
            "shopper_id": f"s{i}",
            "coupon_id": "c-camp",
            "p_control": 0.1,
            "p_treated": 0.1 + i / 200,
            "spend_control": 150.0,
            "spend_treated": 160.0,
        }
        for i in range(1, 41)
    ]
    plan = client.post(f"/v1/campaigns/{cid}/plan", json={"candidates": candidates}, headers=marketer)
    assert plan.status_code == 200, plan.text
    assert plan.json()["audience_size"] >= 4 and plan.json()["summary"]
    csv_text = client.get(f"/v1/campaigns/{cid}/audience.csv", headers=marketer)
    assert csv_text.headers["content-type"].startswith("text/csv")
    rows = csv_text.text.strip().splitlines()
    assert (
        rows[0] == "shopper_id,arm,coupon_id,channel,grant_id"
        and len(rows) == plan.json()["audience_size"] + 1
    )
    assert client.get(f"/v1/campaigns/{cid}/report", headers=marketer).json()["code"] == "invalid_state"
    for action, expected in [("schedule", "scheduled"), ("launch", "running"), ("complete", "completed")]:
        r = client.post(f"/v1/campaigns/{cid}/{action}", headers=marketer)
        assert r.json()["status"] == expected, r.text
    report = client.get(f"/v1/campaigns/{cid}/report", headers=marketer)
    assert report.status_code == 200, report.text
    assert report.json()["n_treated"] + report.json()["n_holdout"] == plan.json()["audience_size"]
