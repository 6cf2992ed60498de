"""The closed loop's adaptive exploration: a probe share that shrinks by round down to a floor, and
a Thompson probe whose arm chances (exact over the shoppers' posterior) are logged, so the
R-learner's expected dose and the pooled policy value stay right."""

import numpy as np
import pandas as pd
import pytest

from marketing.closed_loop import (
    PROBE_ARM_UNIFORM,
    LoopSettings,
    _logging_propensity,
    _Personalised,
    explore_share,
)
from marketing.policy_value import pooled_policy_value
from models.uplift.effects import CouponTermsEffectModel, coupon_depth
from models.uplift.planner import coupon_terms, score_options

COUPONS = pd.DataFrame(
    {
        "coupon_id": ["A10", "A30"],
        "kind": "amount_off",
        "face_value": [10.0, 30.0],
        "min_spend": [99.0, 199.0],
        "cap": np.nan,
    }
)


def test_explore_share_shrinks_by_round_and_never_below_its_floor():
    s = LoopSettings(explore_share=0.1, explore_floor=0.02, explore_decay=0.5)
    shares = [explore_share(s, t) for t in range(1, 60)]
    assert shares[0] == pytest.approx(0.1) and shares[3] == pytest.approx(0.05)  # 0.1 / sqrt(4)
    assert all(a >= b for a, b in zip(shares[:-1], shares[1:], strict=True))
    assert min(shares) == pytest.approx(0.02) and shares[-1] == pytest.approx(0.02)
    fixed = LoopSettings(explore_share=0.1, explore_floor=0.02, explore_decay=0.0)
    assert {explore_share(fixed, t) for t in (1, 5, 50)} == {0.1}
    for bad in ({"explore_floor": 0.0}, {"explore_floor": 0.2}, {"explore_decay": -1.0}, {"probe": "x"}):
        with pytest.raises(ValueError):
            LoopSettings(**bad)


class _Population:
    """Every shopper buys with chance 0.2 without a coupon; A10 lifts that by 0.05, A30 by 0.15;
    every buyer's order is 250 CNY."""

    def predict_candidates(self, X, shopper_ids, coupons=None):
        ids = np.asarray(shopper_ids)
        lift = {"A10": 0.05, "A30": 0.15}
        frames = [
            pd.DataFrame(
                {
                    "coupon_id": c,
                    "shopper_id": ids,
                    "p_control": 0.2,
                    "p_treated": 0.2 + lift[c],
                    "spend_control": 0.2 * 250.0,
                    "spend_treated": (0.2 + lift[c]) * 250.0,
                    "basket_mean": 250.0,
                    "basket_sigma": 0.3,
                    "redeem_rate": 1.0,
                }
            )
            for c in coupons["coupon_id"]
        ]
        return pd.concat(frames, ignore_index=True)


def _personalised(n=300, rounds=4, seed=0):
    """Shoppers 0-99 answer A30 strongly (buy under it, rarely without), 100-199 never answer a
    coupon, 200-299 have no coupon week."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x": np.zeros(n)})
    weeks = []
    for _ in range(rounds):
        arm = np.where(np.arange(n) < 200, 2, 0)
        bought = np.where(np.arange(n) < 100, rng.random(n) < 0.8, rng.random(n) < 0.1).astype(int)
        bought[100:200] = 0
        weeks.append((arm, bought, np.where(bought == 1, 250.0, 0.0)))
    return _Personalised(_Population(), X, COUPONS, weeks), X


def test_thompson_arm_chances_sum_to_one_follow_the_posterior_and_match_repeated_draws():
    model, X = _personalised()
    n = len(X)
    p = model.arm_probabilities(X, np.arange(n), COUPONS, 0.3, 0.5)
    assert p.shape == (n, 3) and np.allclose(p.sum(axis=1), 1) and (p >= 0).all()
    # strong responders: a coupon is likely best; non-responders: none is; unknown: in between
    assert p[:100, 1:].sum(axis=1).mean() > 0.9
    assert p[100:200, 0].mean() > 0.9
    assert 0.1 < p[200:, 0].mean() < 0.9
    # Thompson sampling by repeated draws from each shopper's posterior gives the same chances
    opts = score_options(model.predict_candidates(X, np.arange(n), COUPONS), COUPONS, 0.3)
    q1 = opts["p_treated"].to_numpy().reshape(2, n).T
    net = (0.3 * opts["spend_treated"] - 1.5 * opts["cost"]).to_numpy().reshape(2, n).T / q1
    plain = 0.3 * opts["spend_control"].to_numpy()[:n] / opts["p_control"].to_numpy()[:n]
    rng, counts = np.random.default_rng(1), np.zeros((n, 3))
    for _ in range(2000):
        a, r = model.response_.sample(rng)
        b0 = np.clip(a * 0.2, 1e-3, 0.995)
        b1 = np.clip(b0[:, None] + r[:, None] * np.array([0.05, 0.15]), 1e-3, 0.995)
        value = np.column_stack([np.zeros(n), b1 * net - (b0 * plain)[:, None]])
        counts[np.arange(n), value.argmax(axis=1)] += 1
    assert np.abs(counts / 2000 - p).max() < 0.05


def test_logging_propensity_with_thompson_probe_arms_is_logged_and_sums_to_one():
    eligible = np.array([True, True, True, False])
    rows, arms, planned = np.array([0, 1]), np.array([1, 0]), np.array([1, 1])  # shopper 1: holdout
    best = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
    dist = (1 - PROBE_ARM_UNIFORM) * best + PROBE_ARM_UNIFORM / 3
    p = _logging_propensity(eligible, 2, rows, arms, planned, np.full(4, 0.2), dist)
    assert np.allclose(p.sum(axis=1), 1) and (p[:3] > 0).all()  # every arm keeps a chance
    assert p[3].tolist() == [1.0, 0.0, 0.0]  # capped: nothing, with certainty
    assert np.isclose(p[2, 2], 0.2 * dist[2, 2])  # unplanned: only the probe gives coupon 2
    assert np.isclose(p[0, 1], 0.2 * dist[0, 1] + 0.8 * 0.5)  # half of coupon 1's audience held out


def test_r_learner_with_logged_arm_chances_recovers_the_effect_a_targeted_design_hides():
    """Arms drawn per row from known chances that depend on x (as a Thompson probe does): the
    group's mean dose is then the wrong expected dose and shrinks the effect toward zero; each
    row's own expected dose recovers it."""
    rng = np.random.default_rng(0)
    n = 12000
    x = rng.random(n)
    chances = np.column_stack([0.9 - 0.8 * x, 0.05 + 0.4 * x, 0.05 + 0.4 * x])  # control, A10, A30
    arm_index = (chances.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    arm = np.array(["control", "A10", "A30"])[arm_index]
    X = pd.DataFrame({"x": x})
    baskets = 220.0 * np.exp(0.3 * rng.standard_normal(n))
    # the effect: uplift = 1.5 x depth for everyone, on a baseline that rises with x; depth on the
    # model's own scale (the organic baskets' quantiles)
    organic = np.quantile(baskets[arm_index == 0], (np.arange(64) + 0.5) / 64)
    d = np.r_[0.0, coupon_depth(coupon_terms(COUPONS), organic)]
    y = (rng.random(n) < 0.1 + 0.2 * x + 1.5 * d[arm_index]).astype(int)
    assignment = pd.DataFrame(chances, columns=["control", "A10", "A30"])
    estimates = {}
    for known in (False, True):
        model = CouponTermsEffectModel(calibrate=False, random_state=0).fit(
            X, arm, y, baskets * y, np.zeros(n), COUPONS, groups=np.zeros(n),
            assignment=assignment if known else None,
        )  # fmt: skip
        estimates[known] = float(model.responsiveness_.predict(X.to_numpy()).mean())
    assert estimates[True] == pytest.approx(1.5, rel=0.15)
    assert estimates[False] < 0.85 * estimates[True]  # 1.17 against 1.50


def test_pooled_dr_stays_unbiased_and_covers_under_a_thompson_probe():
    """Rounds logged by a plan with a holdout plus a probe whose arm chances depend on the shopper
    (a Thompson probe mixed with a uniform floor): the pooled DR value of a new plan is unbiased and
    its interval covers at about the nominal rate, with a wrong outcome model."""
    rng = np.random.default_rng(3)
    n, rounds = 3000, 4
    x = rng.random(n)
    mean = np.column_stack([1 + x, 1 + 2 * x, 2 - x])
    target = np.where(x > 0.5, 1, 2)
    truth = float((mean[np.arange(n), target] - mean[:, 0]).sum())
    best = np.column_stack([1 - x, x * (x > 0.5), x * (x <= 0.5)])
    best /= best.sum(axis=1, keepdims=True)
    dist = (1 - PROBE_ARM_UNIFORM) * best + PROBE_ARM_UNIFORM / 3
    hits, errors = 0, []
    for _ in range(30):
        logged, reward, props = [], [], []
        for s in range(rounds):
            plan = np.zeros((n, 3))
            plan[:, 0] = 1
            plan[x > 0.3 + 0.1 * s] = [0.1, 0.9, 0.0]
            share = 0.1 / np.sqrt(s + 1)
            p = share * dist + (1 - share) * plan
            a = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
            logged.append(a)
            reward.append(mean[np.arange(n), a] + rng.normal(0, 1, n))
            props.append(p)
        v = pooled_policy_value(reward, logged, props, target, q=mean + 0.3)
        hits += v.dr_low <= truth <= v.dr_high
        errors.append(v.dr - truth)
    assert hits >= 26  # ~95% nominal
    assert abs(np.mean(errors)) < 2 * np.std(errors) / np.sqrt(len(errors)) + 1e-9
