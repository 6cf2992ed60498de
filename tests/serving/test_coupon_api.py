"""/v1/coupons: create, list, show, edit while unused (409 once granted), retire; data-scientist keys."""

from __future__ import annotations

from decimal import Decimal

from commerce.coupons import COUPON_ID_PATTERN
from tests.serving.conftest import auth


def test_coupon_lifecycle_over_the_api(client, keys):
    h = auth(keys["marketer"])
    body = {
        "coupon_id": "spring", "name": "Spring", "kind": "percent_off", "value": "0.15", "cap": "40",
        "min_spend": "100", "scope_type": "category", "scope_id": "beauty", "per_shopper_limit": 2,
        "usage_limit": 500, "budget": "2000", "requires_grant": True,
    }  # fmt: skip
    made = client.post("/v1/coupons", json=body, headers=h)
    assert made.status_code == 201, made.text
    assert Decimal(made.json()["value"]) == Decimal("0.15") and made.json()["used"] == 0
    assert client.post("/v1/coupons", json=body, headers=h).json()["code"] == "duplicate_coupon"
    bad = client.post("/v1/coupons", json={**body, "coupon_id": "x", "value": "15"}, headers=h)
    assert bad.status_code == 422 and "fraction" in bad.json()["detail"]
    formula = client.post("/v1/coupons", json={**body, "coupon_id": "=HYPERLINK(1)"}, headers=h)
    assert formula.status_code == 422  # the schema carries the same pattern (commerce.coupons)
    pattern = client.get("/openapi.json").json()["components"]["schemas"]["CouponCreate"]["properties"]
    assert pattern["coupon_id"]["anyOf"][0]["pattern"] == COUPON_ID_PATTERN
    unknown_scope = client.post("/v1/coupons", json={**body, "coupon_id": "y", "scope_id": "nope"}, headers=h)
    assert unknown_scope.status_code == 404

    listed = client.get("/v1/coupons", params={"limit": 2}, headers=h).json()
    assert listed["total"] == 4 and len(listed["items"]) == 2
    edited = client.patch("/v1/coupons/spring", json={"min_spend": "150", "name": "Spring sale"}, headers=h)
    assert edited.status_code == 200, edited.text
    assert (Decimal(edited.json()["min_spend"]), Decimal(edited.json()["cap"])) == (150, 40)

    held = client.patch("/v1/coupons/c-vip", json={"value": "60"}, headers=h)  # granted to s2 by the seed
    assert held.status_code == 409 and held.json()["code"] == "coupon_in_use"
    retired = client.post("/v1/coupons/c-vip/retire", headers=h)
    assert retired.status_code == 200 and retired.json()["ends_at"] is not None
    assert Decimal(client.get("/v1/coupons/c-vip", headers=h).json()["value"]) == 50
    assert client.get("/v1/coupons/none", headers=h).status_code == 404


def test_data_scientist_keys_run_experiments_not_campaigns(client, keys):
    admin, ds = auth(keys["admin"]), auth(keys["data_scientist"])
    made = client.post("/v1/api-keys", json={"role": "data_scientist", "name": "ds"}, headers=admin)
    assert made.status_code == 201 and made.json()["role"] == "data_scientist"
    exp = {"name": "ds-exp", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}
    assert client.post("/v1/experiments", json=exp, headers=ds).status_code == 201
    assert client.get("/v1/coupons", headers=ds).status_code == 403
    assert client.get("/v1/campaigns/x", headers=ds).status_code == 403


def test_a_campaign_coupon_names_a_stored_campaign_and_requires_a_grant(client, keys):
    """An unknown campaign is 404 `campaign_not_found`, a campaign coupon anyone could use 422
    `invalid_arm` (on creation and on edits), and nothing is stored by a refused request."""
    h = auth(keys["marketer"])
    window = {"starts_at": "2026-06-01T00:00:00Z", "ends_at": "2026-06-08T00:00:00Z"}
    made = client.post("/v1/campaigns", json={"name": "June", "channel": "email", "budget": "500", **window},
                       headers=h)  # fmt: skip
    assert made.status_code == 201, made.text
    campaign_id = made.json()["campaign_id"]
    arm = {"coupon_id": "june-10", "kind": "amount_off", "value": "10", "campaign_id": campaign_id}

    ghost = client.post(
        "/v1/coupons", json={**arm, "campaign_id": "ghost", "requires_grant": True}, headers=h
    )
    assert (ghost.status_code, ghost.json()["code"]) == (404, "campaign_not_found")
    open_arm = client.post("/v1/coupons", json=arm, headers=h)  # requires_grant defaults to false
    assert (open_arm.status_code, open_arm.json()["code"]) == (422, "invalid_arm")
    assert client.get("/v1/coupons/june-10", headers=h).status_code == 404
    created = client.post("/v1/coupons", json={**arm, "requires_grant": True}, headers=h)
    assert created.status_code == 201 and created.json()["campaign_id"] == campaign_id

    for edit, status, code in [
        ({"requires_grant": False}, 422, "invalid_arm"),
        ({"campaign_id": "ghost"}, 404, "campaign_not_found"),
    ]:
        answer = client.patch("/v1/coupons/june-10", json=edit, headers=h)
        assert (answer.status_code, answer.json()["code"]) == (status, code), edit
    joined = client.patch("/v1/coupons/c-10off", json={"campaign_id": campaign_id}, headers=h)
    assert (joined.status_code, joined.json()["code"]) == (422, "invalid_arm")  # an open coupon joining
    assert client.get("/v1/coupons/c-10off", headers=h).json()["campaign_id"] is None
    listed = client.get("/v1/coupons", params={"campaign_id": campaign_id}, headers=h).json()
    assert [c["coupon_id"] for c in listed["items"]] == ["june-10"] and listed["items"][0]["requires_grant"]
