"""Campaign planner: the profit arithmetic, the budget, one coupon each, the holdout, and plan quality
against the oracle (true effects) and the response-model plan on simulated shoppers."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from models.uplift.effects import CouponEffectModel
from models.uplift.planner import evaluate_assignment, plan_campaign, response_plan, score_options
from models.uplift.simulate import coupon_marketplace, draw_campaign

COUPONS = pd.DataFrame(
    {
        "coupon_id": ["c10", "c50"],
        "face_value": [Decimal("10"), Decimal("50")],
        "min_spend": [Decimal("99"), 0],
    }
)


def candidates():
    # shopper A: buys anyway (0.5 -> 0.55); B: persuadable (0.1 -> 0.4); C: coupon barely helps
    return pd.DataFrame(
        {
            "shopper_id": ["A", "A", "B", "B", "C", "C"],
            "coupon_id": ["c10", "c50", "c10", "c50", "c10", "c50"],
            "p_control": [0.5, 0.5, 0.1, 0.1, 0.2, 0.2],
            "p_treated": [0.55, 0.6, 0.3, 0.4, 0.21, 0.22],
            "spend_control": [100.0, 100.0, 20.0, 20.0, 40.0, 40.0],
            "spend_treated": [110.0, 120.0, 60.0, 80.0, 42.0, 44.0],
        }
    )


def test_profit_counts_every_redemption():
    opts = score_options(candidates(), COUPONS, Decimal("0.5")).set_index(["shopper_id", "coupon_id"])
    # A with c10: 0.5 x (110 - 100) - 10 x 0.55 (all treated buyers redeem, also those buying anyway)
    assert opts.loc[("A", "c10"), "profit"] == pytest.approx(5 - 5.5)
    # B with c50: 0.5 x 60 - 50 x 0.4 = 10; B's basket under c10 (60/0.3 = 200) reaches min spend
    assert opts.loc[("B", "c50"), "profit"] == pytest.approx(10.0)
    assert opts.loc[("B", "c10"), "cost"] == pytest.approx(3.0)
    # C's expected basket (42/0.21 = 200) reaches 99 too; its tiny lift cannot pay for the coupon
    assert opts.loc[("C", "c10"), "profit"] < 0


def test_min_spend_rule_and_learned_redemption():
    cand = candidates()
    cand.loc[(cand["shopper_id"] == "B") & (cand["coupon_id"] == "c10"), "spend_treated"] = 15.0  # basket 50
    opts = score_options(cand, COUPONS, 0.5).set_index(["shopper_id", "coupon_id"])
    assert opts.loc[("B", "c10"), "cost"] == 0.0  # basket below min spend: cannot redeem
    learned = cand.assign(p_redeem=cand["p_treated"] / 2)
    assert score_options(learned, COUPONS, 0.5)["cost"].iloc[1] == pytest.approx(50 * 0.3)
    with pytest.raises(ValueError, match="p_redeem"):
        score_options(cand.assign(p_redeem=1.0), COUPONS, 0.5)


def test_plan_picks_the_persuadable_shopper_and_the_best_coupon_the_budget_allows():
    # B: c10 profit 0.5 x 40 - 3 = 17 beats c50's 10. D: c10 profit 5 (cost 2), c50 profit 12 (cost 20)
    d = pd.DataFrame(
        {
            "shopper_id": ["D", "D"],
            "coupon_id": ["c10", "c50"],
            "p_control": [0.1, 0.1],
            "p_treated": [0.2, 0.4],
            "spend_control": [20.0, 20.0],
            "spend_treated": [34.0, 84.0],
        }
    )
    cand = pd.concat([candidates(), d], ignore_index=True)
    roomy = plan_campaign(cand, COUPONS, Decimal("30"), margin_rate=0.5, control_share=0.0)
    assert roomy.assignments[["shopper_id", "coupon_id"]].values.tolist() == [["B", "c10"], ["D", "c50"]]
    assert roomy.summary["expected_incremental_profit"] == pytest.approx(17 + 12)
    assert roomy.summary["expected_cost"] == pytest.approx(3 + 20)
    tight = plan_campaign(cand, COUPONS, 10, margin_rate=0.5, control_share=0.0)
    assert tight.assignments[["shopper_id", "coupon_id"]].values.tolist() == [["B", "c10"], ["D", "c10"]]
    assert tight.summary["expected_roi"] == pytest.approx((17 + 5) / 5)
    assert plan_campaign(cand, COUPONS, 1, margin_rate=0.5, control_share=0.0).assignments.empty


@pytest.mark.parametrize("method", ["lagrangian", "greedy"])
def test_constraints_hold_on_a_large_plan(method):
    market = coupon_marketplace(n=3000, seed=1)
    truth = market["truth"].rename(columns={"shopper": "shopper_id"})
    plan = plan_campaign(truth, market["coupons"], 2000, control_share=0.2, method=method, random_state=0)
    a = plan.assignments
    assert a["shopper_id"].is_unique  # at most one coupon per shopper
    treated = a[a["arm"] != "control"]
    assert treated["cost"].sum() <= 2000 * 1.1  # holdout drawn at random: budget met in expectation
    assert a["cost"].sum() <= 2000 / 0.8 + 1e-6
    for _, group in a.groupby("coupon_id"):
        assert (group["arm"] == "control").mean() == pytest.approx(0.2, abs=0.5 / len(group) + 1e-9)
    assert plan.summary["holdout"] + plan.summary["treated"] == len(a)
    assert (a["profit"] > 0).all()
    curve = plan.curve
    assert curve["audience_size"].is_monotonic_increasing
    assert curve["cumulative_profit"].idxmax() < len(curve) - 1  # past a point more shoppers lose money


def test_lagrangian_is_at_least_as_good_as_greedy():
    market = coupon_marketplace(n=3000, seed=2)
    truth = market["truth"].rename(columns={"shopper": "shopper_id"})
    lag = plan_campaign(truth, market["coupons"], 1500, control_share=0.0, method="lagrangian")
    greedy = plan_campaign(truth, market["coupons"], 1500, control_share=0.0, method="greedy")
    assert lag.summary["expected_incremental_profit"] >= 0.99 * greedy.summary["expected_incremental_profit"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="budget"):
        plan_campaign(candidates(), COUPONS, 0)
    with pytest.raises(ValueError, match="control_share"):
        plan_campaign(candidates(), COUPONS, 10, control_share=1.0)
    with pytest.raises(ValueError, match="unknown coupons"):
        plan_campaign(candidates().replace("c50", "c99"), COUPONS, 10)
    with pytest.raises(ValueError, match="lack columns"):
        plan_campaign(candidates().drop(columns="p_treated"), COUPONS, 10)
    with pytest.raises(ValueError, match="probabilities"):
        plan_campaign(candidates().assign(p_treated=1.5), COUPONS, 10)


def test_learned_plan_approaches_oracle_and_beats_response_model():
    """Learn effects from one randomised past campaign, plan the next; score both plans by the truth.

    (The full-size check, >= 90% of the oracle, is in bench/uplift.py; this smaller one stays fast.)
    """
    n, budget = 12_000, 4000.0
    market = coupon_marketplace(n=n, seed=0)
    past = draw_campaign(market, control_share=0.25, seed=1)
    X = pd.get_dummies(market["features"], dtype=float)
    model = CouponEffectModel().fit(X, past["arm"], past["converted"], past["spend"], past["redeemed"])
    cand = model.predict_candidates(X, np.arange(n))
    truth = market["truth"].rename(columns={"shopper": "shopper_id"})
    coupons, margin = market["coupons"], market["margin"]

    def true_profit(assignments):
        return evaluate_assignment(assignments, truth, coupons, margin)["incremental_profit"]

    plan = plan_campaign(cand, coupons, budget, margin_rate=margin, control_share=0.0)
    oracle = plan_campaign(truth, coupons, budget, margin_rate=margin, control_share=0.0)
    response = response_plan(cand, coupons, budget, margin_rate=margin)
    learned = true_profit(plan.assignments)
    assert learned >= 0.7 * true_profit(oracle.assignments)
    assert learned >= 1.5 * true_profit(response)


def test_effect_model_refuses_inconsistent_campaign_data():
    X = np.random.default_rng(0).normal(size=(40, 2))
    arm = np.array(["control", "c10"] * 20, dtype=object)
    converted = np.array([0, 1, 1, 0] * 10)
    spend = converted * 100.0
    with pytest.raises(ValueError, match="0/1"):
        CouponEffectModel().fit(X, arm, converted * 2, spend)
    with pytest.raises(ValueError, match="non-negative"):
        CouponEffectModel().fit(X, arm, converted, -spend)
    with pytest.raises(ValueError, match="redeemed must imply converted"):
        CouponEffectModel().fit(X, arm, converted, spend, redeemed=1 - converted)
    with pytest.raises(ValueError, match="control rows"):
        CouponEffectModel(control="holdout").fit(X, arm, converted, spend)


def test_percent_off_discount_is_capped_share_of_expected_basket():
    # expected basket under the coupon = spend_treated / p_treated = 100 / 0.5 = 200 CNY
    cand = pd.DataFrame(
        {
            "shopper_id": ["A"] * 4,
            "coupon_id": ["p10cap15", "p10", "p10min300", "a12"],
            "p_control": [0.4] * 4,
            "p_treated": [0.5] * 4,
            "spend_control": [80.0] * 4,
            "spend_treated": [100.0] * 4,
        }
    )
    coupons = pd.DataFrame(
        {
            "coupon_id": ["p10cap15", "p10", "p10min300", "a12"],
            "kind": ["percent_off", "percent_off", "percent_off", "amount_off"],
            "face_value": [Decimal("0.10"), Decimal("0.10"), Decimal("0.10"), Decimal("12")],
            "cap": [Decimal("15"), None, None, None],
            "min_spend": [0, 0, Decimal("300"), 0],
        }
    )
    opts = score_options(cand, coupons, 0.5).set_index("coupon_id")
    assert opts.at["p10cap15", "discount"] == pytest.approx(15.0)  # min(15, 0.1 x 200)
    assert opts.at["p10cap15", "cost"] == pytest.approx(15.0 * 0.5)  # every buyer redeems
    assert opts.at["p10", "discount"] == pytest.approx(20.0)  # no cap: 10% of 200
    assert opts.at["p10", "cost"] == pytest.approx(10.0)
    assert opts.at["p10min300", "cost"] == 0.0  # a 200 CNY basket never reaches 300
    assert opts.at["a12", "cost"] == pytest.approx(6.0)
    assert opts.at["p10", "profit"] == pytest.approx(0.5 * 20.0 - 10.0)


def test_percent_off_terms_are_validated():
    cand = candidates()
    bad = COUPONS.assign(kind=["percent_off", "amount_off"])  # c10 would be 1000% off
    with pytest.raises(ValueError, match="fraction"):
        score_options(cand, bad, 0.3)
    with pytest.raises(ValueError, match="kinds"):
        score_options(cand, COUPONS.assign(kind=["bogo", "amount_off"]), 0.3)


def test_basket_spread_prices_minimum_spend_and_caps_by_expectation():
    # expected basket 200 CNY, lognormal with log-scale sd 0.5
    cand = pd.DataFrame(
        {
            "shopper_id": ["A"] * 3,
            "coupon_id": ["a30min199", "p10cap20", "p10"],
            "p_control": [0.4] * 3,
            "p_treated": [0.5] * 3,
            "spend_control": [80.0] * 3,
            "spend_treated": [100.0] * 3,
            "basket_sigma": [0.5] * 3,
        }
    )
    coupons = pd.DataFrame(
        {
            "coupon_id": ["a30min199", "p10cap20", "p10"],
            "kind": ["amount_off", "percent_off", "percent_off"],
            "face_value": [Decimal("30"), Decimal("0.1"), Decimal("0.1")],
            "cap": [None, Decimal("20"), None],
            "min_spend": [Decimal("199"), 0, 0],
        }
    )
    from scipy import integrate, stats

    basket = stats.lognorm(s=0.5, scale=200 * np.exp(-(0.5**2) / 2))  # mean 200
    opts = score_options(cand, coupons, 0.5).set_index("coupon_id")
    # only baskets of 199+ redeem: P = 1 - Phi((ln 199 - mu) / sigma) = 0.405, not 1 as for a point basket
    assert basket.sf(199) == pytest.approx(0.405, abs=1e-3)
    assert opts.at["a30min199", "cost"] == pytest.approx(0.5 * 30 * basket.sf(199), rel=0.02)
    assert opts.at["a30min199", "discount"] == pytest.approx(30.0)
    capped = integrate.quad(lambda b: min(20.0, 0.1 * b) * basket.pdf(b), 0, np.inf)[0]
    assert capped < 20.0  # the cap bites on big baskets only: below min(cap, 10% x 200)
    assert opts.at["p10cap20", "cost"] == pytest.approx(0.5 * capped, rel=0.01)
    assert opts.at["p10", "cost"] == pytest.approx(0.5 * 20.0, rel=0.01)  # uncapped: 10% of the mean
