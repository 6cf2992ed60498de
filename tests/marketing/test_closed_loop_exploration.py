"""The closed loop's adaptive exploration: a probe share that shrinks by round down to a floor, with
every arm's chance still positive and logged, so the pooled policy value stays right; and the
R-learner's expected dose from each row's logged arm chances."""

import numpy as np
import pandas as pd
import pytest

from marketing.closed_loop import LoopSettings, _logging_propensity, explore_share
from marketing.policy_value import pooled_policy_value
from models.uplift.effects import CouponTermsEffectModel, coupon_depth
from models.uplift.planner import coupon_terms

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
    for bad in ({"explore_floor": 0.0}, {"explore_floor": 0.2}, {"explore_decay": -1.0}):
        with pytest.raises(ValueError):
            LoopSettings(**bad)


def test_logging_propensity_under_a_shrinking_probe_stays_positive_and_sums_to_one():
    """Every eligible shopper keeps a chance of every arm however small the round's probe, down to
    the floor's share."""
    s = LoopSettings()
    eligible = np.array([True, True, True, False])
    rows, arms, planned = np.array([0, 1]), np.array([1, 0]), np.array([1, 1])  # shopper 1: holdout
    for rnd in (1, 8, 100):
        inclusion = np.full(4, explore_share(s, rnd))  # a probe as large as the share, for the check
        p = _logging_propensity(eligible, 2, rows, arms, planned, inclusion)
        assert np.allclose(p.sum(axis=1), 1) and (p[:3] > 0).all()
        assert p[3].tolist() == [1.0, 0.0, 0.0]  # capped: nothing, with certainty
        assert p[2, 2] == pytest.approx(inclusion[2] / 3) and p[2, 2] >= s.explore_floor / 3


def test_r_learner_with_logged_arm_chances_recovers_the_effect_a_targeted_design_hides():
    """Arms drawn per row from known chances that depend on x (a targeted design): the group's mean
    dose is then the wrong expected dose and shrinks the effect toward zero; each row's own
    expected dose recovers it."""
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


def test_pooled_dr_stays_unbiased_and_covers_under_a_shrinking_probe():
    """Rounds logged by a plan with a holdout plus a uniform probe whose share shrinks by round as the
    loop's does: the pooled DR value of a new plan (one only the probe ever gave some shoppers) is
    unbiased and its interval covers at about the nominal rate, with a wrong outcome model."""
    rng = np.random.default_rng(3)
    s = LoopSettings()
    n, rounds = 3000, 6
    x = rng.random(n)
    mean = np.column_stack([1 + x, 1 + 2 * x, 2 - x])
    target = np.where(x > 0.5, 1, 2)
    truth = float((mean[np.arange(n), target] - mean[:, 0]).sum())
    hits, errors = 0, []
    for _ in range(30):
        logged, reward, props = [], [], []
        for t in range(rounds):
            plan = np.zeros((n, 3))
            plan[:, 0] = 1
            plan[x > 0.3 + 0.1 * t] = [0.1, 0.9, 0.0]
            share = explore_share(s, t + 1)
            p = share / 3 + (1 - share) * plan
            a = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
            logged.append(a)
            reward.append(mean[np.arange(n), a] + rng.normal(0, 1, n))
            props.append(p)
        v = pooled_policy_value(reward, logged, props, target, q=mean + 0.3)
        hits += v.dr_low <= truth <= v.dr_high
        errors.append(v.dr - truth)
    assert hits >= 26  # ~95% nominal
    assert abs(np.mean(errors)) < 2.5 * np.std(errors) / np.sqrt(len(errors))
