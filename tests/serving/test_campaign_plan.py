"""POST /v1/campaigns/{id}/plan without candidates: the database's shoppers scored by the served uplift
model through training.uplift.plan_campaign (what `crosscart campaign plan` runs)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from commerce.db import transaction
from commerce.services import campaigns as cmp
from commerce.services.coupons import CouponInput, create_coupon
from commerce.services.events import record_events
from commerce.services.shoppers import create_shopper
from features.campaign_features import encode_features
from models.uplift.effects import CouponEffectModel
from tests.marketing.history import store_randomized_campaign
from tests.serving.conftest import NOW, ScriptedSource, auth

START = NOW + timedelta(days=1)


@pytest.fixture(scope="module")
def effect_model() -> CouponEffectModel:
    """Past campaigns where an amount-off coupon lifts only recent buyers (0.05 -> 0.45)."""
    rng = np.random.default_rng(0)
    n = 2000
    recency = rng.choice([5.0, 1095.0], n)
    recent = recency < 1000
    table = pd.DataFrame(
        {
            "recency_days": recency,
            "never_bought": (~recent).astype(float),
            "frequency_90d": recent * rng.integers(1, 4, n).astype(float),
            "monetary_90d": recent * rng.uniform(100, 300, n),
            "views_30d": rng.poisson(3, n).astype(float),
            "carts_30d": rng.poisson(1, n).astype(float),
            "coupons_redeemed_before": rng.poisson(0.3, n).astype(float),
            "tenure_days": rng.uniform(30, 900, n),
            "region": rng.choice(["Shanghai", "Beijing"], n),
            "segment": "unknown",
            "channel": "email",
        }
    )
    arm = rng.choice(["control", "amount_off"], n)
    converted = (rng.random(n) < 0.05 + 0.4 * ((arm != "control") & recent)).astype(int)
    spend = converted * rng.uniform(150, 250, n)
    return CouponEffectModel(learner="t-lr", random_state=0).fit(
        encode_features(table), arm, converted, spend
    )


@pytest.fixture
def campaign(session_factory) -> str:
    with transaction(session_factory) as s:
        events = []
        for i in range(20):
            create_shopper(s, f"sh{i:02d}", "Shanghai")
            if i % 2 == 0:  # bought last week: the persuadable ones
                events.append(
                    {"event_id": f"buy{i}", "ts": START - timedelta(days=7), "shopper_id": f"sh{i:02d}",
                     "product_id": "p01", "event_type": "purchase", "value": 180.0}
                )  # fmt: skip
        record_events(s, events)
        cmp.create_campaign(
            s,
            cmp.CampaignInput(
                "Spring", "email", "60", START, START + timedelta(days=7), "0.2", campaign_id="CMP-API"
            ),
        )
        create_coupon(
            s,
            CouponInput(
                kind="amount_off", value="10", campaign_id="CMP-API", requires_grant=True, coupon_id="A10"
            ),
        )
    return "CMP-API"


def test_plan_scores_database_shoppers_with_the_served_uplift_model(
    make_client, keys, campaign, effect_model
):
    served = ScriptedSource(versions={"1": effect_model}, alias="1")  # any CouponUpliftModel
    client = make_client(uplift_source=served)
    marketer = auth(keys["marketer"])
    plan = client.post(
        f"/v1/campaigns/{campaign}/plan", json={"region": "Shanghai", "margin_rate": 0.5}, headers=marketer
    )
    assert plan.status_code == 200, plan.text
    body = plan.json()
    rows = (
        client.get(f"/v1/campaigns/{campaign}/audience.csv", headers=marketer).text.strip().splitlines()[1:]
    )
    members = {r.split(",")[0]: r.split(",")[1] for r in rows}
    assert len(members) == body["audience_size"] >= 4
    recent = {f"sh{i:02d}" for i in range(0, 20, 2)}
    assert recent <= set(members) <= {f"sh{i:02d}" for i in range(20)}  # Shanghai's recent buyers first
    assert "control" in members.values() and body["summary"] and body["curve"]

    nobody = client.post(f"/v1/campaigns/{campaign}/plan", json={"region": "Atlantis"}, headers=marketer)
    assert nobody.status_code == 422 and "no shoppers" in nobody.text
    both = client.post(
        f"/v1/campaigns/{campaign}/plan",
        json={"region": "Shanghai", "candidates": [{"shopper_id": "s1", "coupon_id": "A10", "p_control": 0.1,
              "p_treated": 0.2, "spend_control": 100, "spend_treated": 100}]},
        headers=marketer,
    )  # fmt: skip
    assert both.status_code == 422
    assert client.post("/v1/campaigns/nope/plan", json={}, headers=marketer).status_code == 404


def test_plan_without_a_served_uplift_model_is_unavailable(client, keys, campaign):
    r = client.post(f"/v1/campaigns/{campaign}/plan", json={}, headers=auth(keys["marketer"]))
    assert r.status_code == 503 and "no uplift model" in r.text


HISTORY = [f"H{i:03d}" for i in range(400)]


def candidates(p_treated: float, spend_treated: float) -> list[dict]:
    """Every history shopper with one coupon, 30 off 199; the randomised history says +15 CNY each."""
    return [
        {
            "shopper_id": s,
            "coupon_id": "N30",
            "p_control": 0.1,
            "p_treated": p_treated,
            "spend_control": 25.0,
            "spend_treated": spend_treated,
            "p_redeem": p_treated,
        }
        for s in HISTORY
    ]


def test_plan_sets_the_forecast_beside_the_policy_value_of_the_randomised_history(
    client, keys, session_factory
):
    with transaction(session_factory) as s:
        for shopper in HISTORY:
            create_shopper(s, shopper, "Shanghai")
        cmp.create_campaign(
            s,
            cmp.CampaignInput(
                "Next", "email", "3000", START, START + timedelta(days=7), "0.2", campaign_id="CMP-PV"
            ),
        )
        create_coupon(
            s,
            CouponInput(
                kind="amount_off",
                value="30",
                min_spend="199",
                campaign_id="CMP-PV",
                requires_grant=True,
                coupon_id="N30",
            ),
        )
    marketer = auth(keys["marketer"])
    url = "/v1/campaigns/CMP-PV/plan"
    none = client.post(url, json={"candidates": candidates(0.5, 125.0)}, headers=marketer).json()
    value = none["policy_value"]
    assert value["ips"] is None and value["dr"] is None and "no randomised history" in value["reason"]
    assert value["model_profit"] == pytest.approx(none["summary"]["expected_incremental_profit"])
    assert "policy_value" not in none["summary"]

    store_randomized_campaign(session_factory, HISTORY, p_control=0.1, p_coupon=0.5, seed=3)
    honest = client.post(url, json={"candidates": candidates(0.5, 125.0)}, headers=marketer)
    assert honest.status_code == 200, honest.text
    value = honest.json()["policy_value"]
    truth = 15 * value["treated"]  # 0.3 x 250 x (0.5 - 0.1) - 0.5 x 30 per treated shopper
    assert value["rows_used"] == value["treated"] and value["rows_without_propensity"] == 0
    assert value["ips_low"] <= truth <= value["ips_high"] and value["dr_low"] <= truth <= value["dr_high"]
    assert not value["disagreement"] and value["reason"] is None

    boastful = client.post(url, json={"candidates": candidates(1.0, 250.0)}, headers=marketer).json()
    value = boastful["policy_value"]  # forecasts 0.3 x 225 - 30 = 37.5 CNY each
    assert value["disagreement"] and value["model_profit_estimated"] > value["dr_high"]
    assert "outside the doubly robust interval" in value["message"]


def test_two_overlapping_campaigns_planned_before_either_is_scheduled_give_one_live_coupon(
    client, keys, session_factory
):
    """Planned as drafts, both take the same 20 shoppers (a draft holds no coupon yet); scheduling the
    second is refused (409) until it is planned again, when the planner leaves those 20 out."""
    shoppers = [f"OV{i:02d}" for i in range(30)]
    with transaction(session_factory) as s:
        for shopper in shoppers:
            create_shopper(s, shopper, "Shanghai")
        for cid in ("CMP-1", "CMP-2"):
            window = (START, START + timedelta(days=7))
            cmp.create_campaign(s, cmp.CampaignInput(cid, "email", "500", *window, "0", campaign_id=cid))
            create_coupon(
                s,
                CouponInput(
                    kind="amount_off", value="10", campaign_id=cid, requires_grant=True, coupon_id=f"{cid}-10"
                ),
            )
    marketer = auth(keys["marketer"])

    def plan(cid, audience):
        rows = [{"shopper_id": s, "coupon_id": f"{cid}-10", "p_control": 0.1, "p_treated": 0.5,
                 "spend_control": 20.0, "spend_treated": 100.0} for s in audience]  # fmt: skip
        r = client.post(f"/v1/campaigns/{cid}/plan", json={"candidates": rows}, headers=marketer)
        assert r.status_code == 200, r.text
        return r.json()

    assert plan("CMP-1", shoppers[:20])["audience_size"] == 20
    assert plan("CMP-2", shoppers)["audience_size"] == 30
    assert client.post("/v1/campaigns/CMP-1/schedule", headers=marketer).status_code == 200
    refused = client.post("/v1/campaigns/CMP-2/schedule", headers=marketer)
    assert refused.status_code == 409 and refused.json()["code"] == "live_coupon_held"
    replanned = plan("CMP-2", shoppers)
    assert replanned["audience_size"] == 10 and replanned["summary"]["excluded"]["live_coupon"] == 20
    assert client.post("/v1/campaigns/CMP-2/schedule", headers=marketer).status_code == 200
