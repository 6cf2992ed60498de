"""The plan views' policy value block (marketing.plan_value): on logged randomised data built here, where
the plan's true incremental profit is known, and on a stored randomised campaign (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

import commerce.all_models  # noqa: F401  (complete metadata)
from commerce.campaigns import CampaignMember
from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.errors import ValidationError
from commerce.services import campaigns as cmp
from commerce.services.coupons import CouponInput, create_coupon
from marketing.plan_value import estimate_plan_value, logged_rows, plan_policy_value
from marketing.planning import plan_and_store
from tests.marketing.history import PAST_START, store_randomized_campaign

MARGIN = 0.3
P_CONTROL, P_TARGET = 0.2, 0.4  # the logging policy: holdout, the plan's terms, another coupon (0.4)


def world(n: int, rng: np.random.Generator):
    """Two coupon terms; each shopper's expected profit without a coupon and under each, known."""
    x = rng.random(n)
    base = MARGIN * 200 * (0.1 + 0.1 * x)  # buys with 0.1-0.2 at 200 CNY
    gain = {"A": 40 * x - 10, "B": 15 - 20 * x}  # incremental profit of terms A, B
    coupon = np.where(x > 0.5, "A", "B")
    treated = pd.DataFrame(
        {
            "shopper_id": [f"s{i}" for i in range(n)],
            "coupon_id": coupon,
            "group": coupon,
            "baseline": base,
            "true_gain": np.where(coupon == "A", gain["A"], gain["B"]),
        }
    )
    return treated


def logged(treated: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One randomised past campaign per shopper: the holdout, the plan's terms or another coupon."""
    n = len(treated)
    u = rng.random(n)
    arm = np.where(u < P_CONTROL, "control", np.where(u < P_CONTROL + P_TARGET, "target", "other"))
    mean = treated["baseline"].to_numpy() + np.where(arm == "target", treated["true_gain"].to_numpy(), 0.0)
    mean = np.where(arm == "other", treated["baseline"].to_numpy() + 5.0, mean)
    reward = mean + rng.normal(0, 20, n)
    propensity = np.select(
        [arm == "control", arm == "target"], [P_CONTROL, P_TARGET], 1 - P_CONTROL - P_TARGET
    )
    return pd.DataFrame(
        {"shopper_id": treated["shopper_id"], "arm": arm, "propensity": propensity, "reward": reward}
    )


def test_ips_and_dr_intervals_cover_the_known_value_of_the_plan():
    rng = np.random.default_rng(0)
    treated = world(3000, rng)
    truth = float(treated["true_gain"].sum())
    good = treated.assign(profit=treated["true_gain"] + rng.normal(0, 2, len(treated)))
    covered = {"ips": 0, "dr": 0}
    runs, ratio = 100, []
    for _ in range(runs):
        v = estimate_plan_value(good, logged(treated, rng))
        covered["ips"] += v.ips_low <= truth <= v.ips_high
        covered["dr"] += v.dr_low <= truth <= v.dr_high
        ratio.append((v.dr_high - v.dr_low) / (v.ips_high - v.ips_low))
        assert v.rows_used == v.treated == v.treated_estimated == 3000 and v.coupons_without_history == []
    assert covered["ips"] >= 0.9 * runs and covered["dr"] >= 0.9 * runs
    assert np.mean(ratio) < 0.9  # a good outcome model narrows the interval
    assert not v.disagreement and "within" in v.message
    assert v.model_profit == pytest.approx(float(good["profit"].sum()))


def test_a_model_far_off_the_logged_outcomes_is_flagged():
    rng = np.random.default_rng(1)
    treated = world(3000, rng)
    truth = float(treated["true_gain"].sum())
    rows = logged(treated, rng)
    boastful = treated.assign(profit=treated["true_gain"] + 30)  # forecasts 90k more than the truth
    v = estimate_plan_value(boastful, rows)
    assert v.dr_low <= truth <= v.dr_high  # DR stays unbiased with a biased outcome model
    assert v.disagreement and v.model_profit_estimated > v.dr_high
    assert "outside the doubly robust interval" in v.message and "3000 logged" in v.message
    honest = estimate_plan_value(treated.assign(profit=treated["true_gain"]), rows)
    assert not honest.disagreement


def test_no_history_gives_reasons_not_numbers():
    rng = np.random.default_rng(2)
    treated = world(50, rng).assign(profit=1.0)
    empty = pd.DataFrame(columns=["shopper_id", "arm", "propensity", "reward"])
    v = estimate_plan_value(treated, empty)
    assert v.ips is None and v.dr is None and v.dr_low is None and v.model_profit_estimated is None
    assert not v.disagreement and "no randomised history" in v.reason and v.reason in v.message
    assert v.model_profit == pytest.approx(50.0) and v.rows_used == 0
    few = estimate_plan_value(treated, logged(treated, rng).iloc[:10], rows_without_propensity=7)
    assert few.ips is None and "too little" in few.reason and "7 without logged" in few.reason
    assert sorted(few.coupons_without_history) == ["A", "B"]


def test_terms_without_history_are_named_and_left_out_of_the_comparison():
    rng = np.random.default_rng(3)
    treated = world(2000, rng).assign(profit=lambda d: d["true_gain"])
    rows = logged(treated, rng)
    rows = rows[treated["coupon_id"].to_numpy() == "A"]  # terms B never ran
    v = estimate_plan_value(treated, rows)
    on_a = treated["coupon_id"] == "A"
    assert v.coupons_without_history == ["B"] and v.treated_estimated == int(on_a.sum()) < v.treated
    assert v.model_profit_estimated == pytest.approx(float(treated.loc[on_a, "profit"].sum()))
    assert v.dr_low <= float(treated.loc[on_a, "true_gain"].sum()) <= v.dr_high
    assert f"for the {v.treated_estimated} of {v.treated} treated shoppers" in v.message
    with pytest.raises(ValueError, match="one logged row per shopper"):
        estimate_plan_value(treated, pd.concat([rows, rows]))


@pytest.fixture
def factory(database_url):
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def draft(factory, coupons=(("N30", "30", "199"),)) -> str:
    with transaction(factory) as s:
        start = PAST_START + timedelta(days=60)
        cmp.create_campaign(
            s, cmp.CampaignInput("Next", "email", "300", start, start + timedelta(days=7), "0.2", "NEXT")
        )
        for cid, value, min_spend in coupons:
            create_coupon(
                s,
                CouponInput(
                    kind="amount_off",
                    value=value,
                    min_spend=min_spend,
                    campaign_id="NEXT",
                    requires_grant=True,
                    coupon_id=cid,
                ),
            )
    return "NEXT"


def test_logged_rows_match_terms_take_the_latest_campaign_and_count_what_they_leave_out(factory):
    shoppers = [f"S{i:03d}" for i in range(40)]
    # two coupons with the new plan's terms (30 off 199) and one other: P(terms) = 2 x 0.25
    old = store_randomized_campaign(
        factory,
        shoppers,
        campaign_id="OLD",
        seed=1,
        coupons=(("O30", "30", "199"), ("O30b", "30", "199"), ("O10", "10", "99")),
        control_share=0.25,
    )
    store_randomized_campaign(
        factory,
        shoppers[:10],
        campaign_id="UNLOGGED",
        coupons=(("Q30", "30", "199"),),
        seed=2,
        log_probabilities=False,
        start=PAST_START + timedelta(days=14),
    )
    campaign = draft(factory)
    with factory() as s:
        rows, without, unsupported = logged_rows(s, campaign, {sh: "N30" for sh in shoppers}, MARGIN)
    assert without == 10 and unsupported == 0 and len(rows) == 40
    by = rows.set_index("shopper_id")
    for sh, arm in old.items():
        want = "control" if arm == "control" else "target" if arm in ("O30", "O30b") else "other"
        assert by.loc[sh, "arm"] == want
        assert by.loc[sh, "propensity"] == pytest.approx(
            {"control": 0.25, "target": 0.5, "other": 0.25}[want]
        )
        bought = by.loc[sh, "reward"] != 0
        if bought:  # 250 CNY baskets, less the coupon used
            spent = {"O30": 30, "O30b": 30, "O10": 10}.get(arm, 0)
            assert by.loc[sh, "reward"] == pytest.approx(MARGIN * 250 - spent)
    with factory() as s:  # terms nobody ever drew at random: no support
        rows, _, unsupported = logged_rows(s, campaign, {sh: "N30" for sh in shoppers[:5]}, MARGIN)
        assert len(rows) == 5
        create_coupon(
            s,
            CouponInput(
                kind="amount_off",
                value="45",
                min_spend="299",
                campaign_id="NEXT",
                requires_grant=True,
                coupon_id="N45",
            ),
        )
        s.commit()
        rows, _, unsupported = logged_rows(s, campaign, {sh: "N45" for sh in shoppers}, MARGIN)
    assert rows.empty and unsupported == 40


def test_plan_and_store_logs_holdout_probabilities_and_values_the_plan(factory):
    shoppers = [f"S{i:03d}" for i in range(120)]
    store_randomized_campaign(factory, shoppers, p_control=0.1, p_coupon=0.5, seed=4)
    campaign = draft(factory)
    # the truth of the stored campaign: 0.3 x 250 x (0.5 - 0.1) - 0.5 x 30 = 15 CNY per treated shopper
    candidates = pd.DataFrame(
        {
            "shopper_id": shoppers,
            "coupon_id": "N30",
            "p_control": 0.1,
            "p_treated": 0.5,
            "spend_control": 25.0,
            "spend_treated": 125.0,
            "p_redeem": 0.5,
        }
    )
    plan = plan_and_store(factory, campaign, candidates=candidates, margin_rate=MARGIN, random_state=0)
    block = plan.summary["policy_value"]
    treated = plan.summary["treated"]
    assert block["treated"] == treated and block["rows_used"] >= 20 and block["rows_without_propensity"] == 0
    assert block["model_profit"] == pytest.approx(plan.summary["expected_incremental_profit"])
    assert block["ips_low"] <= 15 * treated <= block["ips_high"]
    assert block["dr_low"] <= 15 * treated <= block["dr_high"] and not block["disagreement"]
    with factory() as s:
        query = select(CampaignMember.arm, CampaignMember.arm_probabilities)
        members = s.execute(query.where(CampaignMember.campaign_id == campaign)).all()
    share = sum(m.arm == "control" for m in members) / len(members)
    assert all(m.arm_probabilities == pytest.approx({"N30": 1 - share, "control": share}) for m in members)


def test_set_audience_refuses_probabilities_that_contradict_the_arm(factory):
    campaign = draft(factory)
    store_randomized_campaign(factory, ["S1", "S2"], seed=0)
    with transaction(factory) as s:
        for bad, match in (
            ({"N30": 0.5, "control": 0.4}, "sum to 1"),
            ({"control": 1.0}, "rule out"),
            ({"N30": 0.5, "XX": 0.5}, "unknown arms"),
            # 1.3 in all, 1 once the full-width N30 overwrote the other: it was accepted
            ({"N30": 0.3, "\uff2e\uff13\uff10": 0.3, "control": 0.7}, "name arm 'N30' twice"),
        ):
            with pytest.raises(ValidationError, match=match):
                cmp.set_audience(s, campaign, [("S1", "N30")], arm_probabilities={"S1": bad})


def test_plan_policy_value_with_no_completed_campaign(factory):
    campaign = draft(factory)
    store_randomized_campaign(factory, [f"S{i}" for i in range(6)], campaign_id="TINY", seed=0)
    assignments = pd.DataFrame(
        {"shopper_id": ["S1"], "coupon_id": ["N30"], "arm": ["N30"], "profit": [3.0], "spend_control": [10.0]}
    )
    with factory() as s:
        v = plan_policy_value(s, campaign, assignments, MARGIN)
        assert v.ips is None and "too little" in v.reason and v.model_profit == 3.0
        s.execute(CampaignMember.__table__.delete())
        v = plan_policy_value(s, campaign, assignments, MARGIN)
    assert v.ips is None and "no randomised history" in v.reason
