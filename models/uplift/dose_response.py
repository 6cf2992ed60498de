"""Dose-response coupon effects learned from randomised multi-arm campaigns.

`fit(X, treatment, outcome, spend, redeemed, coupons)`: `treatment` names each row's coupon (or the
control arm), `coupons` gives every coupon's terms, so the model learns how conversion changes with
the depth of the discount (face value over minimum spend, or the percentage) rather than per coupon
label: a coupon that never ran is priced from its terms. The conversion model is chosen on the
training rows by cross-validated log loss (`learner="auto"`) between

- `logistic`: logit P(buy) = f(x) + t g(x) + depth h(x), all linear in standardised features, with
  the L2 strength picked by inner cross-validation: few parameters, so it stays honest when the
  randomised history is small;
- `lgbm`: one regularised LightGBM over the features plus (treated, depth, minimum spend), an
  S-learner that can find non-linear responses once the history is large.

The gross basket of a buyer is a log-linear model in (x, treated, depth) with a lognormal spread, and
the share of buyers reaching the minimum spend who redeem is pooled over the treated rows: what the
planner needs to price a coupon's cost (`models.uplift.planner.score_options`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LogisticRegressionCV, Ridge
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.preprocessing import StandardScaler

from models.uplift.base import CouponUpliftModel, default_estimator
from models.uplift.planner import coupon_terms

__all__ = ["DoseResponseUplift", "coupon_dose"]

LEARNERS = ("auto", "logistic", "lgbm")
MIN_SPEND_UNIT = 100.0  # minimum spends enter the model in hundreds of CNY


def coupon_dose(coupons: pd.DataFrame) -> pd.DataFrame:
    """coupon_id, depth (relative discount at the minimum spend, or the percentage) and min_spend."""
    terms = coupon_terms(coupons)
    rate = terms["face_value"] / terms["min_spend"].where(terms["min_spend"] > 0, np.nan)
    depth = np.where(
        terms["kind"] == "percent_off", terms["face_value"], rate.fillna(terms["face_value"] / 100)
    )
    return pd.DataFrame(
        {
            "coupon_id": terms["coupon_id"].to_numpy(),
            "depth": depth,
            "min_spend": terms["min_spend"].to_numpy(),
        }
    )


class DoseResponseUplift(CouponUpliftModel):
    """Multi-arm / dose-response coupon uplift; see the module docstring. After `fit`: `arms_`,
    `feature_names_in_`, `cost_factor_` (1: no held-out cost calibration), `learner_` (the chosen
    conversion learner), `cv_log_loss_` (per candidate learner), `basket_sigma_`, `redeem_rate_`."""

    def __init__(
        self,
        control="control",
        learner: str = "auto",
        n_folds: int = 3,
        calibrate: bool = True,
        selected_share: float = 0.2,
        random_state: int | None = 0,
    ):
        self.control = control
        self.learner = learner
        self.n_folds = n_folds
        self.calibrate = calibrate
        self.selected_share = selected_share
        self.random_state = random_state

    # -- design -----------------------------------------------------------------------------------
    def _dose_of(self, arm: np.ndarray, dose: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        treated = arm != self.control
        table = dose.set_index("coupon_id")
        unknown = set(arm[treated]) - set(table.index)
        if unknown:
            raise ValueError(f"treatment names coupons without terms: {sorted(map(str, unknown))[:5]}")
        depth = np.zeros(len(arm))
        ms = np.zeros(len(arm))
        depth[treated] = table.loc[arm[treated], "depth"].to_numpy(dtype=float)
        ms[treated] = table.loc[arm[treated], "min_spend"].to_numpy(dtype=float) / MIN_SPEND_UNIT
        return treated.astype(float), depth, ms

    def _design(self, Xs: np.ndarray, t, depth, ms, learner: str) -> np.ndarray:
        if learner == "logistic":
            return np.hstack(
                [Xs, t[:, None], depth[:, None], ms[:, None], t[:, None] * Xs, depth[:, None] * Xs]
            )
        return np.hstack([Xs, t[:, None], depth[:, None], ms[:, None]])

    def _conversion(self, learner: str):
        if learner == "logistic":
            return LogisticRegressionCV(Cs=8, cv=self.n_folds, scoring="neg_log_loss", max_iter=2000)
        return default_estimator(True, self.random_state).set_params(min_child_samples=50)

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, X, treatment, outcome, spend, redeemed, coupons: pd.DataFrame, sample_weight=None):
        """`outcome`: converted (0/1); `spend`: the buyer's gross basket (0 when not converted);
        `redeemed`: 0/1; `coupons`: the terms of every coupon named in `treatment`."""
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {LEARNERS}, got {self.learner!r}")
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        X = np.asarray(X, dtype=float)
        arm = np.asarray(treatment).astype(object)
        y = np.asarray(outcome, dtype=float)
        spend = np.asarray(spend, dtype=float)
        redeemed = np.asarray(redeemed, dtype=float)
        if not (len(X) == len(arm) == len(y) == len(spend) == len(redeemed)):
            raise ValueError("X, treatment, outcome, spend and redeemed differ in length")
        if not np.isin(y, [0, 1]).all() or not np.isin(redeemed, [0, 1]).all():
            raise ValueError("outcome and redeemed must be 0/1")
        if (redeemed > y).any():
            raise ValueError("a redemption without a purchase: redeemed must imply converted")
        if not (arm == self.control).any() or (arm == self.control).all():
            raise ValueError(f"need both control rows (treatment == {self.control!r}) and treated rows")
        if len(np.unique(y)) < 2:
            raise ValueError("outcome has a single value; nothing to learn")
        self.dose_ = coupon_dose(coupons)
        self.arms_ = np.unique(arm[arm != self.control])
        self.n_features_in_ = X.shape[1]
        self.scaler_ = StandardScaler().fit(X)
        Xs = self.scaler_.transform(X)
        t, depth, ms = self._dose_of(arm, self.dose_)

        candidates = ("logistic", "lgbm") if self.learner == "auto" else (self.learner,)
        self.cv_log_loss_ = {}
        if len(candidates) > 1:
            folds = StratifiedKFold(self.n_folds, shuffle=True, random_state=self.random_state)
            for name in candidates:
                scores = cross_val_score(
                    self._conversion(name),
                    self._design(Xs, t, depth, ms, name),
                    y,
                    cv=folds,
                    scoring="neg_log_loss",
                )
                self.cv_log_loss_[name] = float(-scores.mean())
            self.learner_ = min(self.cv_log_loss_, key=self.cv_log_loss_.get)
        else:
            self.learner_ = candidates[0]
        self.conversion_ = self._conversion(self.learner_).fit(
            self._design(Xs, t, depth, ms, self.learner_), y
        )

        buyers = (y == 1) & (spend > 0)
        if buyers.sum() < 3:
            raise ValueError("fewer than 3 buyers with a basket; order value cannot be learned")
        B = np.hstack([Xs, t[:, None], depth[:, None]])
        self.basket_ = Ridge(alpha=1.0).fit(B[buyers], np.log(spend[buyers]))
        self.basket_sigma_ = float(np.std(np.log(spend[buyers]) - self.basket_.predict(B[buyers])))
        # redeemers among treated buyers whose basket reached the minimum spend
        reach = buyers & (t == 1) & (spend >= ms * MIN_SPEND_UNIT)
        self.redeem_rate_ = float(redeemed[reach].mean()) if reach.any() else 1.0
        self.cost_factor_ = 1.0
        if self.calibrate:
            self.cost_factor_ = self._held_out_cost_factor(X, arm, y, spend, redeemed, coupons)
        return self

    def _held_out_cost_factor(self, X, arm, y, spend, redeemed, coupons) -> float:
        """Realised over predicted coupon cost of the held-out treated rows a planner would pick
        first (the top `selected_share` by predicted uplift per predicted cost), cross-fitted.

        Over all rows predicted cost is about right; on the rows chosen for looking cheap per
        conversion it runs low (the winner's curse), and that is where a plan spends its budget."""
        from sklearn.model_selection import KFold

        from models.uplift.planner import score_options

        realised = predicted = 0.0
        folds = KFold(self.n_folds, shuffle=True, random_state=self.random_state)
        for fit_rows, held in folds.split(X):
            part = clone(self).set_params(calibrate=False, learner=self.learner_)
            try:
                part.fit(
                    X[fit_rows], arm[fit_rows], y[fit_rows], spend[fit_rows], redeemed[fit_rows], coupons
                )
            except ValueError:  # a fold without buyers of some kind: nothing to calibrate on
                continue
            held = held[arm[held] != self.control]
            if len(held) == 0:
                continue
            cand = part.predict_candidates(X[held], np.arange(len(held)), coupons)
            opts = score_options(cand, coupons, 1.0)
            mine = opts.set_index(["shopper_id", "coupon_id"]).loc[
                list(zip(np.arange(len(held)), arm[held], strict=True))
            ]
            gain = (mine["p_treated"] - mine["p_control"]).to_numpy()
            cost = mine["cost"].to_numpy()
            top = np.argsort(-gain / np.maximum(cost, 1e-9))[: max(1, int(self.selected_share * len(held)))]
            row_terms = coupon_terms(coupons).set_index("coupon_id").loc[arm[held][top]]
            basket = spend[held][top]
            face = row_terms["face_value"].to_numpy()
            off = np.where(row_terms["kind"] == "percent_off", np.fmin(row_terms["cap"], face * basket), face)
            realised += float((redeemed[held][top] * np.minimum(off, basket)).sum())
            predicted += float(cost[top].sum())
        return max(1.0, realised / predicted) if predicted > 0 else 1.0

    # -- predict ----------------------------------------------------------------------------------
    def _input(self, X) -> np.ndarray:
        if not hasattr(self, "conversion_"):
            raise RuntimeError("DoseResponseUplift is not fitted; call fit first")
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            if list(X.columns) != list(self.feature_names_in_):
                raise ValueError("X has other columns than the model was fitted on")
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have {self.n_features_in_} columns")
        return self.scaler_.transform(X)

    def _arm_terms(self, coupons):
        return (
            self.dose_[self.dose_["coupon_id"].isin(self.arms_)] if coupons is None else coupon_dose(coupons)
        )

    def _predict(
        self, Xs: np.ndarray, treated: float, depth: float, ms: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(Xs)
        t, d, m = np.full(n, treated), np.full(n, depth), np.full(n, ms / MIN_SPEND_UNIT)
        p = self.conversion_.predict_proba(self._design(Xs, t, d, m, self.learner_))[:, 1]
        log_b = self.basket_.predict(np.hstack([Xs, t[:, None], d[:, None]]))
        return p, np.exp(log_b + self.basket_sigma_**2 / 2)

    def predict_uplift(self, X, coupons: pd.DataFrame | None = None) -> np.ndarray:
        """P(buy | coupon) - P(buy | none) per row: (n,) for one arm, else (n, arms or coupons)."""
        Xs = self._input(X)
        p0, _ = self._predict(Xs, 0.0, 0.0, 0.0)
        terms = self._arm_terms(coupons)
        out = np.column_stack(
            [self._predict(Xs, 1.0, r.depth, r.min_spend)[0] - p0 for r in terms.itertuples()]
        )
        return out[:, 0] if out.shape[1] == 1 else out

    def predict_candidates(self, X, shopper_ids, coupons: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per (shopper, coupon): the planner's columns, spend as the gross basket value, with
        basket_mean, basket_sigma and redeem_rate so the planner prices the cost of each coupon."""
        Xs = self._input(X)
        ids = np.asarray(shopper_ids)
        if len(ids) != len(Xs):
            raise ValueError("one shopper id per row of X")
        p0, b0 = self._predict(Xs, 0.0, 0.0, 0.0)
        frames = []
        for r in self._arm_terms(coupons).itertuples():
            p1, b1 = self._predict(Xs, 1.0, r.depth, r.min_spend)
            frames.append(
                pd.DataFrame(
                    {
                        "shopper_id": ids,
                        "coupon_id": r.coupon_id,
                        "p_control": p0,
                        "p_treated": p1,
                        "spend_control": p0 * b0,
                        "spend_treated": p1 * b1,
                        "basket_mean": b1,
                        "basket_sigma": self.basket_sigma_,
                        "redeem_rate": self.redeem_rate_,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)
