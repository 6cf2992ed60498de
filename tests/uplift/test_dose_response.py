import numpy as np
import pandas as pd
import pytest

from models.uplift.base import CouponUpliftModel
from models.uplift.dose_response import DoseResponseUplift, coupon_dose
from models.uplift.planner import plan_campaign

COUPONS = pd.DataFrame(
    {"coupon_id": ["d10", "d20", "d40"], "face_value": [10.0, 20.0, 40.0], "min_spend": [200.0, 200.0, 200.0]}
)


def randomized(n=12_000, seed=0):
    """Shoppers whose response grows with the discount depth, only where feature `s` is high."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"s": rng.random(n), "noise": rng.normal(size=n)})
    arm = rng.choice(["control", "d10", "d20", "d40"], n)
    depth = coupon_dose(COUPONS).set_index("coupon_id")["depth"].reindex(arm).fillna(0.0).to_numpy()
    logit = -2.0 + 40 * depth * (X["s"].to_numpy() - 0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    basket = np.where(y == 1, 250 * np.exp(rng.normal(0, 0.3, n)), 0.0)
    redeemed = (y == 1) & (arm != "control") & (basket >= 200) & (rng.random(n) < 0.9)
    return X, arm, y, basket, redeemed.astype(int)


@pytest.mark.parametrize("learner", ["logistic", "auto"])
def test_learns_dose_response_and_prices_unseen_terms(learner):
    X, arm, y, basket, redeemed = randomized()
    model = DoseResponseUplift(learner=learner).fit(X, arm, y, basket, redeemed, COUPONS)
    assert isinstance(model, CouponUpliftModel)
    assert list(model.arms_) == ["d10", "d20", "d40"]
    up = model.predict_uplift(X)
    high, low = X["s"].to_numpy() > 0.8, X["s"].to_numpy() < 0.2
    assert (up[high].mean(axis=0) > 0.05).all() and (up[low].mean(axis=0) < 0).all()
    assert up[high, 2].mean() > up[high, 1].mean() > up[high, 0].mean()  # deeper discount, more uplift
    unseen = pd.DataFrame({"coupon_id": ["d30"], "face_value": [30.0], "min_spend": [200.0]})
    u30 = model.predict_uplift(X[high], unseen)
    assert up[high, 1].mean() < u30.mean() < up[high, 2].mean()
    assert 0.8 < model.redeem_rate_ < 1.0
    if learner == "auto":
        assert set(model.cv_log_loss_) == {"logistic", "lgbm"} and model.learner_ in model.cv_log_loss_


def test_candidates_feed_the_planner():
    X, arm, y, basket, redeemed = randomized(6000, seed=1)
    model = DoseResponseUplift(learner="logistic").fit(X, arm, y, basket, redeemed, COUPONS)
    cand = model.predict_candidates(X, np.arange(len(X)))
    assert len(cand) == 3 * len(X)
    plan = plan_campaign(cand, COUPONS, 2000.0, control_share=0.0)
    chosen = X["s"].to_numpy()[plan.assignments["shopper_id"].to_numpy()]
    assert chosen.mean() > 0.75  # only responsive shoppers are targeted
    assert plan.summary["expected_cost"] <= 2000.0 + 1e-6


def test_bad_input():
    X, arm, y, basket, redeemed = randomized(500)
    with pytest.raises(ValueError, match="without terms"):
        DoseResponseUplift(learner="logistic").fit(
            X, np.where(arm == "d10", "zz", arm), y, basket, redeemed, COUPONS
        )
    with pytest.raises(ValueError, match="learner"):
        DoseResponseUplift(learner="forest").fit(X, arm, y, basket, redeemed, COUPONS)
    with pytest.raises(RuntimeError, match="not fitted"):
        DoseResponseUplift().predict_uplift(X)
