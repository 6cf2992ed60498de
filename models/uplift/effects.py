"""Per-shopper, per-coupon effect predictions for the planner, learned from past randomised campaigns.

Fitted on one past campaign (arm = coupon id or `control`): the baseline purchase probability
(control rows), every coupon's uplift on purchase, the order value given a purchase (one model over
all buyers, with arm indicators), and, when redemptions are known, the share of an arm's buyers who
use the coupon.
Expected spend is then P(buy) x order value. Regressing raw spend (mostly zeros, heavy tail) would
be far noisier than these parts; only the uplift itself needs a dedicated uplift learner.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone

from commerce.files import atomic_path
from models.uplift.base import CouponUpliftModel, default_estimator
from models.uplift.planner import basket_terms, coupon_terms, score_options
from models.uplift.selection import make_model

__all__ = ["CouponEffectModel", "CouponTermsEffectModel", "ServedCouponUplift", "coupon_depth"]

SERVED_FORMAT = "crosscart-served-uplift/1"


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


class CouponEffectModel(CouponUpliftModel):
    """`fit(X, arm, converted, spend, redeemed)`; `predict_candidates(X, shopper_ids[, coupons])` ->
    candidates. Arms are coupon ids or kinds; given `coupons`, each coupon takes its kind's effects.

    `redeemed` (optional) trains P(redeem | shopper, coupon) on the treated rows, so expected coupon
    cost reflects who actually uses coupons; without it the planner falls back to its min-spend rule.
    """

    def __init__(self, learner: str = "x", control="control", random_state: int | None = 0):
        self.learner = learner
        self.control = control
        self.random_state = random_state

    def fit(self, X, treatment, outcome, spend, redeemed=None):
        """`treatment`: the arm per row; `outcome`: converted (0/1); `spend`: the order value (0 when
        not converted); `redeemed`: 0/1 per row, optional."""
        arm, converted = treatment, outcome
        self.cost_factor_ = 1.0  # costs priced per learned arm; no held-out calibration
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

    def _arm_of(self, coupons: pd.DataFrame) -> np.ndarray:
        """The learned arm (kind) each of `coupons` takes its effects from; ValueError for unknown kinds."""
        kinds = coupons["kind"].astype(str).to_numpy()
        if unknown := sorted(set(kinds) - set(map(str, self.arms_))):
            raise ValueError(f"the effect model learned no {unknown} coupons (it knows {list(self.arms_)})")
        return kinds

    def predict_uplift(self, X, coupons: pd.DataFrame | None = None) -> np.ndarray:
        """Each arm's uplift on purchase probability: shape (n,) for one arm, (n, n_arms) for more;
        with `coupons`, (n, n_coupons), each coupon its kind's column."""
        effects = self.conversion_model_.predict_uplift(self._input(X))
        if coupons is None:
            return effects
        columns = pd.Index(self.arms_.astype(str)).get_indexer(self._arm_of(coupons))
        return effects.reshape(len(effects), -1)[:, columns]

    def predict_candidates(self, X, shopper_ids, coupons: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per (shopper, coupon) with p_control, p_treated, spend_control, spend_treated and
        basket_sigma (the spread of baskets around their expected value, for the planner); coupons
        are the learned arms, or `coupons` with their kind's effects."""
        if coupons is not None:
            by_arm = self.predict_candidates(X, shopper_ids)
            return pd.concat(
                [
                    by_arm[by_arm["coupon_id"] == arm].assign(coupon_id=coupon)
                    for coupon, arm in zip(coupons["coupon_id"], self._arm_of(coupons), strict=True)
                ],
                ignore_index=True,
            )
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


def coupon_depth(terms: pd.DataFrame, baskets: np.ndarray) -> np.ndarray:
    """Each coupon's mean discount relative to the basket over `baskets` (a sample of order values):
    what a coupon is worth to a typical shopper, comparable across kinds, face values and minimum spends.
    `terms` as `planner.coupon_terms` returns them."""
    q = np.asarray(baskets, dtype=float)[None, :]
    reaches = q >= terms["min_spend"].to_numpy()[:, None]
    face = terms["face_value"].to_numpy()[:, None]
    percent = np.fmin(terms["cap"].to_numpy()[:, None], face * q)
    off = np.minimum(np.where(terms["kind"].to_numpy()[:, None] == "percent_off", percent, face), q)
    return np.where(reaches, off / q, 0.0).mean(axis=1)


def gross_basket(net: np.ndarray, redeemed: np.ndarray, terms: pd.DataFrame) -> np.ndarray:
    """Order value before the coupon: net paid plus the discount when the coupon was used (a percentage
    off takes rate x gross, or its cap when that is smaller)."""
    face, cap = terms["face_value"].to_numpy(), terms["cap"].to_numpy()
    percent = terms["kind"].to_numpy() == "percent_off"
    uncapped = net / np.maximum(1.0 - np.where(percent, face, 0.0), 1e-9)
    by_percent = np.where(
        np.isnan(cap) | (face * uncapped <= np.nan_to_num(cap, nan=np.inf)), uncapped, net + cap
    )
    return np.where(redeemed, np.where(percent, by_percent, net + face), net)


class CouponTermsEffectModel(CouponUpliftModel):
    """Effects of coupons that never ran, from their terms: `fit(X, arm, converted, spend, redeemed,
    coupons, groups)`; `predict_candidates(X, shopper_ids, coupons)` -> planner candidates.

    A new campaign brings new coupons, so per-coupon (or per-kind) effects do not transfer: 30 off 199
    is not 60 off 399. Here the purchase uplift of coupon c for shopper x is depth(c) x h(x), where
    depth is the coupon's mean relative discount over the baskets of past organic purchases
    (`coupon_depth`; control buyers' orders) and h(x) the shopper's responsiveness, learned by the
    R-learner (Nie & Wager 2021) with depth as a continuous dose: pseudo-outcome (y - m(x)) / (d - e),
    weight (d - e)^2, with m(x) cross-fitted and e the mean dose of the row's randomisation group
    (`groups`, e.g. the campaign id; randomised assignment makes it known).

    Cost is priced from the gross basket (net spend plus the redeemed discount, recovered from the
    terms): one order-value model over buyers with a treated indicator, its lognormal spread, and the
    share of buyers reaching the minimum spend who redeem (`redeem_rate_`). `coupons` carry the
    planner's columns (coupon_id, face_value, min_spend, kind, cap); rows of coupons whose
    `scope_type` is not `platform` are left out of the uplift fit (a scoped coupon's effect depends on
    the shopper's taste for its scope, which depth alone does not describe).
    """

    def __init__(
        self,
        control="control",
        effect_learner: str = "r",
        n_folds: int = 3,
        calibrate: bool = True,
        selected_share: float = 0.1,
        cost_confidence: float = 0.75,
        random_state: int | None = 0,
    ):
        self.control = control
        self.effect_learner = effect_learner
        self.n_folds = n_folds
        self.calibrate = calibrate
        self.selected_share = selected_share
        self.cost_confidence = cost_confidence
        self.random_state = random_state

    def fit(
        self, X, treatment, outcome, spend, redeemed, coupons: pd.DataFrame, groups=None, assignment=None
    ):
        """`treatment`: coupon id or control per row; `outcome`: converted (0/1); `spend`, `redeemed`
        per row; `coupons`: the terms of every treatment coupon. `assignment` (optional, a DataFrame
        with one column per arm id, one row per row of X): the known probability of each arm where a
        row's arm was drawn from its own distribution (a targeted design); the R-learner's expected
        dose of such a row is its mean under that distribution instead of its group's mean dose.
        Rows with any missing probability keep their group's mean.

        With `calibrate`, first measure `cost_factor_` on held-out campaigns: leave each group
        (campaign) out in turn, fit on the others, and compare realised with predicted coupon cost
        on the held-out treated rows a planner would pick (the top `selected_share` by predicted
        uplift per cost), taking the one-sided `cost_confidence` upper bound of that ratio; without
        groups, on a random 30% of rows. A held-out campaign brings coupons and a moment the model
        never saw, as a new campaign does; and picking the options whose cost looks lowest favours
        underestimates. `plan_campaign(..., cost_safety=model.cost_factor_)` keeps the true cost of
        a plan within budget by that margin (never below 1)."""
        from scipy.special import ndtri
        from sklearn.model_selection import train_test_split

        arm, converted = treatment, outcome
        if not 0 < self.selected_share <= 1 or not 0 < self.cost_confidence < 1:
            raise ValueError("selected_share must be in (0, 1] and cost_confidence in (0, 1)")
        if self.effect_learner not in ("x", "r"):
            raise ValueError(f"effect_learner must be 'x' or 'r', got {self.effect_learner!r}")
        sizes = {
            len(v)
            for v in (X, arm, converted, spend, redeemed)
            + tuple(v for v in (groups, assignment) if v is not None)
        }
        if len(sizes) > 1:
            raise ValueError("X, arm, converted, spend, redeemed and groups need one value per row")
        self.cost_factor_ = 1.0
        if self.calibrate:
            arm_ = np.asarray(arm).astype(object)
            if groups is not None and len(np.unique(np.asarray(groups).astype(str))) > 1:
                g = np.asarray(groups).astype(str)
                splits = [(np.flatnonzero(g != k), np.flatnonzero(g == k)) for k in np.unique(g)]
            else:
                splits = [
                    train_test_split(
                        np.arange(len(arm_)),
                        test_size=0.3,
                        random_state=self.random_state,
                        stratify=arm_.astype(str),
                    )
                ]

            def take(v, rows):
                if v is None:
                    return None
                return v.iloc[rows] if isinstance(v, (pd.DataFrame, pd.Series)) else np.asarray(v)[rows]

            realised = predicted = variance = 0.0
            for fit_rows, held in splits:
                part = clone(self).set_params(calibrate=False)
                part._fit(
                    *(take(v, fit_rows) for v in (X, arm, converted, spend, redeemed)),
                    coupons,
                    take(groups, fit_rows),
                    take(assignment, fit_rows),
                )
                r, p, v = part._selected_cost(*(take(v, held) for v in (X, arm, spend, redeemed)), coupons)
                realised, predicted, variance = realised + r, predicted + p, variance + v
            # one-sided upper bound: redemptions are rare events, Var(sum) ~ sum of squared discounts
            upper = realised + ndtri(self.cost_confidence) * np.sqrt(variance)
            self.cost_factor_ = float(max(1.0, upper / predicted)) if predicted > 0 else 1.0
        return self._fit(X, arm, converted, spend, redeemed, coupons, groups, assignment)

    def _selected_cost(self, X, arm, spend, redeemed, coupons) -> tuple[float, float, float]:
        """(realised, predicted, sum of squared realised discounts) coupon cost of the held-out treated
        rows a planner would pick."""
        arm = np.asarray(arm).astype(object)
        treated = np.flatnonzero(arm != self.control)
        terms = coupon_terms(coupons)
        cands = []
        for coupon, rows in pd.Series(treated).groupby(arm[treated]):
            rows = rows.to_numpy()
            Xr = X.iloc[rows] if isinstance(X, pd.DataFrame) else X[rows]
            c = self.predict_candidates(Xr, rows, terms[terms["coupon_id"] == coupon])
            cands.append(c)
        opts = score_options(pd.concat(cands, ignore_index=True), coupons, 1.0)
        ratio = opts["inc_conversions"] / opts["cost"].where(opts["cost"] > 0, np.nan)
        top = opts.loc[
            ratio.fillna(np.inf).rank(ascending=False, method="first") <= self.selected_share * len(opts)
        ]
        rows = top["shopper_id"].to_numpy(dtype=int)
        row_terms = terms.set_index("coupon_id").reindex(arm[rows])
        net = np.asarray(spend, dtype=float)[rows]
        used = np.asarray(redeemed, dtype=float)[rows] == 1
        discount = gross_basket(net, used, row_terms) - net
        return float(discount.sum()), float(top["cost"].sum()), float((discount**2).sum())

    def _fit(self, X, arm, converted, spend, redeemed, coupons: pd.DataFrame, groups=None, assignment=None):
        from sklearn.model_selection import KFold

        self.feature_names_in_ = np.asarray(X.columns, dtype=object) if isinstance(X, pd.DataFrame) else None
        X = np.asarray(X, dtype=float)
        arm = np.asarray(arm).astype(object)
        converted = np.asarray(converted, dtype=float)
        spend = np.asarray(spend, dtype=float)
        redeemed = np.asarray(redeemed, dtype=float)
        groups = np.zeros(len(X)) if groups is None else np.asarray(groups).astype(object)
        if not (len(arm) == len(converted) == len(spend) == len(redeemed) == len(groups) == len(X)):
            raise ValueError("X, arm, converted, spend, redeemed and groups need one value per row")
        if not np.isin(converted, [0, 1]).all() or not np.isin(redeemed, [0, 1]).all():
            raise ValueError("converted and redeemed must be 0/1")
        if (redeemed > converted).any():
            raise ValueError("a redemption without a purchase: redeemed must imply converted")
        if (spend < 0).any() or not np.isfinite(spend).all():
            raise ValueError("spend must be finite and non-negative")
        control = arm == self.control
        treated = ~control
        terms = coupon_terms(coupons).set_index("coupon_id")
        if unknown := sorted(set(arm[treated]) - set(terms.index)):
            raise ValueError(f"arms name coupons absent from `coupons`: {unknown[:5]}")
        buyers = converted == 1
        if (buyers & control).sum() < 20 or (buyers & treated).sum() < 20:
            raise ValueError("need at least 20 buyers in control and 20 among the treated")
        row_terms = terms.reindex(np.where(treated, arm, terms.index[0]))
        gross = np.where(treated, gross_basket(spend, redeemed == 1, row_terms), spend)
        # organic baskets (control buyers) set the scale against which a discount is deep or shallow
        self.reference_baskets_ = np.quantile(spend[buyers & control], (np.arange(64) + 0.5) / 64)
        depth = pd.Series(coupon_depth(terms.reset_index(), self.reference_baskets_), index=terms.index)
        dose = np.where(treated, depth.reindex(arm).to_numpy(), 0.0)
        scoped = set()
        if "scope_type" in coupons.columns:
            scoped = set(coupons.loc[coupons["scope_type"].fillna("platform") != "platform", "coupon_id"])
        use = ~(treated & np.isin(arm, list(scoped)))
        self.baseline_conversion_ = default_estimator(True, self.random_state).fit(
            X[control], converted[control]
        )
        if self.effect_learner == "x":
            # treated rows against the control-fitted baseline (out of sample for them)
            rows = use & treated & (dose > 1e-9)
            if not rows.any():
                raise ValueError("no treated rows with a positive discount depth to learn from")
            resid_y = converted[rows] - self.baseline_conversion_.predict_proba(X[rows])[:, 1]
            resid_d, Xe = dose[rows], X[rows]
        else:
            Xu, yu, du, gu = X[use], converted[use], dose[use], groups[use]
            m_hat = np.empty(len(Xu))
            folds = KFold(self.n_folds, shuffle=True, random_state=self.random_state)
            for fit_rows, out_rows in folds.split(Xu):
                model = default_estimator(True, self.random_state).fit(Xu[fit_rows], yu[fit_rows])
                m_hat[out_rows] = model.predict_proba(Xu[out_rows])[:, 1]
            expected = pd.Series(du).groupby(gu).transform("mean").to_numpy()
            if assignment is not None:  # rows drawn from their own known distribution over arms
                probs = pd.DataFrame(assignment).reset_index(drop=True)[use]
                arm_dose = [0.0 if a == self.control else float(depth[a]) for a in probs.columns]
                known = probs.notna().all(axis=1).to_numpy()
                expected[known] = probs.to_numpy(dtype=float)[known] @ np.asarray(arm_dose)
            resid_d = du - expected
            keep = np.abs(resid_d) > 1e-9
            if not keep.any():
                raise ValueError("the coupons' depths do not vary within any group: no dose to learn from")
            resid_y, resid_d, Xe = yu[keep] - m_hat[keep], resid_d[keep], Xu[keep]
        weight = resid_d**2  # normalised: LightGBM's L2 penalty is on the scale of the weights
        self.responsiveness_ = default_estimator(False, self.random_state).fit(
            Xe, resid_y / resid_d, sample_weight=weight / weight.mean()
        )
        self.order_value_ = _value_model(self.random_state, int(buyers.sum())).fit(
            np.hstack([X[buyers], treated[buyers, None].astype(float)]), gross[buyers]
        )
        fitted = self.order_value_.predict(np.hstack([X[buyers], treated[buyers, None].astype(float)]))
        ok = (gross[buyers] > 0) & (fitted > 0)
        self.basket_sigma_ = float(np.std(np.log(gross[buyers][ok] / fitted[ok])))
        eligible = treated & buyers & (gross >= row_terms["min_spend"].to_numpy())
        self.redeem_rate_ = float(redeemed[eligible].mean()) if eligible.any() else 1.0
        return self

    def _input(self, X) -> np.ndarray:
        if not hasattr(self, "responsiveness_"):
            raise RuntimeError("CouponTermsEffectModel is not fitted; call fit first")
        names = self.feature_names_in_
        if names is not None and isinstance(X, pd.DataFrame):
            if missing := [c for c in names if c not in X.columns]:
                raise ValueError(f"X lacks the training features {missing[:5]}")
            X = X[list(names)]
        return np.asarray(X, dtype=float)

    def predict_uplift(self, X, coupons: pd.DataFrame | None = None) -> np.ndarray:
        """(n, n_coupons): each coupon's uplift on purchase probability, depth x responsiveness."""
        if coupons is None:
            raise ValueError("CouponTermsEffectModel prices coupons by their terms: pass `coupons`")
        X = self._input(X)
        depth = coupon_depth(coupon_terms(coupons), self.reference_baskets_)
        return self.responsiveness_.predict(X)[:, None] * depth[None, :]

    def predict_candidates(self, X, shopper_ids, coupons: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per (shopper, coupon): the planner's columns plus basket_mean (gross order value
        under the coupon), basket_sigma and redeem_rate, so the planner prices each coupon's terms."""
        if coupons is None:
            raise ValueError("CouponTermsEffectModel prices coupons by their terms: pass `coupons`")
        X = self._input(X)
        shopper_ids = np.asarray(shopper_ids)
        if len(shopper_ids) != len(X):
            raise ValueError("one shopper id per row of X is needed")
        terms = coupon_terms(coupons)
        p0 = self.baseline_conversion_.predict_proba(X)[:, 1]
        v0 = np.maximum(self.order_value_.predict(np.hstack([X, np.zeros((len(X), 1))])), 0.0)
        v1 = np.maximum(self.order_value_.predict(np.hstack([X, np.ones((len(X), 1))])), 0.0)
        h = self.responsiveness_.predict(X)
        depth = coupon_depth(terms, self.reference_baskets_)
        sigma = np.full(len(X), self.basket_sigma_)
        frames = []
        for j, row in enumerate(terms.itertuples(index=False)):
            p1 = np.clip(p0 + depth[j] * h, 0.0, 1.0)
            rows = terms.iloc[np.full(len(X), j)].reset_index(drop=True)
            _, discount = basket_terms(v1, sigma, rows)
            frames.append(
                pd.DataFrame(
                    {
                        "shopper_id": shopper_ids,
                        "coupon_id": row.coupon_id,
                        "p_control": p0,
                        "p_treated": p1,
                        "spend_control": p0 * v0,
                        "spend_treated": p1 * np.maximum(v1 - self.redeem_rate_ * discount, 0.0),
                        "basket_mean": v1,
                        "basket_sigma": self.basket_sigma_,
                        "redeem_rate": self.redeem_rate_,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)


class ServedCouponUplift(CouponUpliftModel):
    """What the registry holds and the API loads: a fitted coupon effect model (a `CouponEffectModel`
    whose arms are coupon kinds), so the API can score `predict(DataFrame[shopper_id, coupon_id[,
    kind], <the model's feature columns>])` -> each row's predicted uplift in purchase probability.
    The uplift contract (`predict_uplift`, `predict_candidates`, `arms_`, `feature_names_in_`,
    `cost_factor_`) is the effect model's, so planning takes either.

    It holds no shopper's data: the caller passes each row's features as of now, computed from the
    current event tables (`marketing.audience.current_features`; the API does this per request), so
    the artifact's size does not grow with the number of shoppers and scores are never stale. A row
    whose features are missing (a shopper without history, or a caller that passes none) is scored
    as a newcomer (`new_shopper`). A coupon's kind comes from the row's `kind` column when given,
    else from `coupon_kinds` (coupon_id -> kind); a coupon of unknown kind gets the mean uplift over
    the learned kinds.
    """

    def __init__(self, effect_model=None, new_shopper=None, coupon_kinds=None):
        self.effect_model = effect_model
        self.new_shopper = new_shopper
        self.coupon_kinds = coupon_kinds

    def fit(self, X, treatment, outcome, **fit_params) -> ServedCouponUplift:
        """Refit the effect model."""
        self.effect_model.fit(X, treatment, outcome, **fit_params)
        return self

    @property
    def arms_(self) -> np.ndarray:
        return self.effect_model.arms_

    @property
    def feature_names_in_(self) -> np.ndarray:
        return self.effect_model.feature_names_in_

    @property
    def cost_factor_(self) -> float:
        return self.effect_model.cost_factor_

    def predict_uplift(self, X, coupons: pd.DataFrame | None = None) -> np.ndarray:
        return self.effect_model.predict_uplift(X, coupons)

    def predict_candidates(self, X, shopper_ids, coupons: pd.DataFrame | None = None) -> pd.DataFrame:
        return self.effect_model.predict_candidates(X, shopper_ids, coupons)

    def save(self, path: str | Path) -> None:
        """Write the fitted bundle to one joblib file (format-tagged, checked by `load`)."""
        with atomic_path(path) as tmp:  # a full disk leaves the previous artifact, not half of this one
            joblib.dump({"format": SERVED_FORMAT, "model": self}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> ServedCouponUplift:
        """Read a bundle written by `save`; ValueError for any other file."""
        saved = joblib.load(path)
        if not isinstance(saved, dict) or saved.get("format") != SERVED_FORMAT:
            raise ValueError(f"{path} is not a CrossCart uplift artifact ({SERVED_FORMAT})")
        return saved["model"]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in ("shopper_id", "coupon_id") if c not in frame.columns]
        if missing:
            raise ValueError(f"input needs columns shopper_id and coupon_id; {missing} are missing")
        if frame.empty:
            return np.zeros(0)
        columns = list(self.effect_model.feature_names_in_)
        X = frame.reindex(columns=columns).astype(float).reset_index(drop=True)
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
