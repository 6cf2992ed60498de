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

__all__ = ["CouponEffectModel", "ServedCouponUplift"]


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
        if isinstance(X, pd.DataFrame):  # remembered so prediction can check it gets the same columns
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
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
        # Baskets scatter around their expected value; the planner needs that spread to price minimum
        # spends and capped percentages (a lognormal's log-scale sd, from the buyers' residuals).
        fitted = self.order_value_.predict(self._with_arm(X[buyers], arm[buyers]))
        ok = (spend[buyers] > 0) & (fitted > 0)
        self.basket_sigma_ = float(np.std(np.log(spend[buyers][ok] / fitted[ok]))) if ok.sum() > 1 else 0.0
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

    def _input(self, X) -> np.ndarray:
        if not hasattr(self, "arms_"):
            raise RuntimeError("CouponEffectModel is not fitted; call fit first")
        names = getattr(self, "feature_names_in_", None)
        if names is not None and isinstance(X, pd.DataFrame):
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise ValueError(f"X lacks the training features {missing[:5]}")
            X = X[list(names)]
        return np.asarray(X, dtype=float)

    def predict_uplift(self, X) -> np.ndarray:
        """Each coupon's uplift on purchase probability: shape (n,) for one arm, (n, n_arms) for more."""
        return self.conversion_model_.predict_uplift(self._input(X))

    def predict_candidates(self, X, shopper_ids) -> pd.DataFrame:
        """One row per (shopper, coupon) with p_control, p_treated, spend_control, spend_treated and
        basket_sigma (the spread of baskets around their expected value, for the planner)."""
        X = self._input(X)
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
                    "basket_sigma": self.basket_sigma_,
                }
            )
            if self.redeem_models_ is not None:
                share = self.redeem_models_[arm]
                share = share if isinstance(share, float) else share.predict_proba(X)[:, 1]
                frame["p_redeem"] = p1 * share
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)


class ServedCouponUplift(BaseEstimator):
    """What the API loads: `predict(DataFrame[shopper_id, coupon_id[, kind]])` -> each row's predicted
    uplift in purchase probability, from a fitted `CouponEffectModel` whose arms are coupon kinds.

    Shopper features are a snapshot taken at training time (`features`, indexed by shopper_id, the
    model's columns); a shopper absent from it gets `new_shopper` (no history). A coupon's kind comes
    from the row's `kind` column when given, else from `coupon_kinds` (coupon_id -> kind); a coupon
    of unknown kind gets the mean uplift over the learned kinds.
    """

    def __init__(self, effect_model=None, features=None, new_shopper=None, coupon_kinds=None):
        self.effect_model = effect_model
        self.features = features
        self.new_shopper = new_shopper
        self.coupon_kinds = coupon_kinds

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in ("shopper_id", "coupon_id") if c not in frame.columns]
        if missing:
            raise ValueError(f"input needs columns shopper_id and coupon_id; {missing} are missing")
        if frame.empty:
            return np.zeros(0)
        shoppers = frame["shopper_id"].astype(str).to_numpy()
        X = self.features.reindex(shoppers)
        unseen = X.isna().any(axis=1).to_numpy()
        X.loc[unseen] = np.asarray(self.new_shopper, dtype=float)
        effects = np.asarray(self.effect_model.predict_uplift(X)).reshape(len(X), -1)
        kinds = pd.Series(frame["coupon_id"].astype(str).map(dict(self.coupon_kinds or {})).to_numpy())
        if "kind" in frame.columns:
            kinds = pd.Series(frame["kind"].to_numpy()).where(frame["kind"].notna().to_numpy(), kinds)
        column = pd.Index(self.effect_model.arms_).get_indexer(kinds.to_numpy())
        known = column >= 0
        out = effects.mean(axis=1)
        out[known] = effects[np.flatnonzero(known), column[known]]
        return out
