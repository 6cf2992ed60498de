"""Per-shopper, per-coupon effect predictions for the planner, learned from past randomised campaigns.

Fitted on one past campaign (arm = coupon id or `control`): the baseline purchase probability
(control rows), every coupon's uplift on purchase, the order value given a purchase (one model over
all buyers, with arm indicators), and, when redemptions are known, the share of an arm's buyers who
use the coupon.
Expected spend is then P(buy) x order value. Regressing raw spend (mostly zeros, heavy tail) would
be far noisier than these parts; only the uplift itself needs a dedicated uplift learner.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from models.uplift.base import default_estimator
from models.uplift.selection import make_model

__all__ = ["CouponEffectModel"]


def _value_model(random_state, n_buyers: int):
    """Order value given a purchase is a smooth, far less noisy target than uplift, so it gets deeper
    trees; leaves still hold at least 1/20 of the buyers (20..200 rows)."""
    return default_estimator(False, random_state).set_params(
        min_child_samples=max(20, min(200, n_buyers // 20)),
        max_depth=-1,
        num_leaves=15,
        n_estimators=300,
        learning_rate=0.05,
    )


class CouponEffectModel(BaseEstimator):
    """`fit(X, arm, converted, spend, redeemed)`; `predict_candidates(X, shopper_ids)` -> candidates.

    `redeemed` (optional) trains P(redeem | shopper, coupon) on the treated rows, so expected coupon
    cost reflects who actually uses coupons; without it the planner falls back to its min-spend rule.
    """

    def __init__(self, learner: str = "x", control="control", random_state: int | None = 0):
        self.learner = learner
        self.control = control
        self.random_state = random_state

    def fit(self, X, arm, converted, spend, redeemed=None):
        X = np.asarray(X, dtype=float)
        arm = np.asarray(arm).astype(object)
        converted = np.asarray(converted, dtype=float)
        spend = np.asarray(spend, dtype=float)
        if not np.isin(converted, [0, 1]).all():
            raise ValueError("converted must be 0/1")
        if (spend < 0).any() or not np.isfinite(spend).all():
            raise ValueError("spend must be finite and non-negative")
        control = arm == self.control
        if control.sum() < 2:
            raise ValueError(f"need control rows (arm == {self.control!r}) to learn baselines")
        self.conversion_model_ = make_model(
            self.learner, binary=True, control=self.control, random_state=self.random_state
        ).fit(X, arm, converted)
        self.baseline_conversion_ = default_estimator(True, self.random_state).fit(
            X[control], converted[control]
        )
        self.arms_ = self.conversion_model_.arms_
        buyers = converted == 1
        for a in [self.control, *self.arms_]:
            if (buyers & (arm == a)).sum() < 2:
                raise ValueError(f"arm {a!r} has fewer than 2 buyers; its order value cannot be learned")
        # One model over all buyers with arm indicators: arms share what makes a basket large, so the
        # difference between arms (the top-up to a minimum spend) is not swamped by separate fits' noise.
        self.order_value_ = _value_model(self.random_state, int(buyers.sum())).fit(
            self._with_arm(X[buyers], arm[buyers]), spend[buyers]
        )
        self.redeem_models_ = None
        if redeemed is not None:
            redeemed = np.asarray(redeemed, dtype=float)
            if len(redeemed) != len(X) or not np.isin(redeemed, [0, 1]).all():
                raise ValueError("redeemed must be 0/1, one value per row")
            if (redeemed > converted).any():
                raise ValueError("a redemption without a purchase: redeemed must imply converted")
            # P(redeem | bought, arm): the share of an arm's buyers whose order used the coupon
            self.redeem_models_ = {}
            for a in self.arms_:
                rows = (arm == a) & (converted == 1)
                if rows.sum() < 2 or np.unique(redeemed[rows]).size < 2:
                    self.redeem_models_[a] = float(redeemed[rows].mean()) if rows.any() else 1.0
                else:
                    self.redeem_models_[a] = default_estimator(True, self.random_state).fit(
                        X[rows], redeemed[rows]
                    )
        return self

    def _with_arm(self, X: np.ndarray, arm) -> np.ndarray:
        arm = np.broadcast_to(np.asarray(arm, dtype=object), (len(X),))
        return np.hstack([X, (arm[:, None] == self.arms_[None, :]).astype(float)])

    def predict_candidates(self, X, shopper_ids) -> pd.DataFrame:
        """One row per (shopper, coupon) with p_control, p_treated, spend_control, spend_treated."""
        if not hasattr(self, "arms_"):
            raise RuntimeError("CouponEffectModel is not fitted; call fit first")
        X = np.asarray(X, dtype=float)
        shopper_ids = np.asarray(shopper_ids)
        if len(shopper_ids) != len(X):
            raise ValueError("one shopper id per row of X is needed")
        p0 = self.baseline_conversion_.predict_proba(X)[:, 1]
        v0 = np.maximum(self.order_value_.predict(self._with_arm(X, self.control)), 0.0)
        dp = self.conversion_model_.predict_uplift(X).reshape(len(X), -1)
        frames = []
        for j, arm in enumerate(self.arms_):
            p1 = np.clip(p0 + dp[:, j], 0.0, 1.0)
            frame = pd.DataFrame(
                {
                    "shopper_id": shopper_ids,
                    "coupon_id": arm,
                    "p_control": p0,
                    "p_treated": p1,
                    "spend_control": p0 * v0,
                    "spend_treated": p1 * np.maximum(self.order_value_.predict(self._with_arm(X, arm)), 0.0),
                }
            )
            if self.redeem_models_ is not None:
                share = self.redeem_models_[arm]
                share = share if isinstance(share, float) else share.predict_proba(X)[:, 1]
                frame["p_redeem"] = p1 * share
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)
