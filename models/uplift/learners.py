"""Meta-learners for uplift: S, T, X, DR and class transformation, over any scikit-learn-style learner.

All assume a randomised campaign: the propensity of each arm is its share of the (arm + control) rows,
so no propensity model is fitted (one would only add noise when assignment was random).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold

from models.uplift.base import BaseUpliftModel, predict_outcome

__all__ = [
    "SLearner", "TLearner", "XLearner", "DRLearner", "ClassTransformation", "TwoPartLearner", "FunnelLearner",
]  # fmt: skip


def _fit_weighted(model, X, y, weights):
    """Fit with sample weights, routing them to the last step when the model is a Pipeline."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return model.fit(X, y, **{f"{model.steps[-1][0]}__sample_weight": weights})
    return model.fit(X, y, sample_weight=weights)


class SLearner(BaseUpliftModel):
    """One model on features plus arm indicators; uplift = f(x, arm) - f(x, control).

    Shares all data between arms (low variance) but may ignore a weak treatment signal (bias to 0).
    `interactions=True` adds feature x arm products, which a linear base learner needs to express an
    effect that varies with x (Lo 2002); trees find such interactions themselves.
    """

    def __init__(self, estimator=None, interactions: bool = False, control=0, random_state: int | None = 0):
        self.estimator = estimator
        self.interactions = interactions
        self.control = control
        self.random_state = random_state

    def _design(self, X: np.ndarray, flags: np.ndarray) -> np.ndarray:
        parts = [X, flags]
        if self.interactions:
            parts += [X * flags[:, [j]] for j in range(flags.shape[1])]
        return np.hstack(parts)

    def _flags(self, n: int, arm) -> np.ndarray:
        flags = np.zeros((n, len(self.arms_)))
        if arm is not None:
            flags[:, int(np.flatnonzero(self.arms_ == arm)[0])] = 1.0
        return flags

    def _fit_arms(self, X, t, y) -> None:
        flags = (t[:, None] == self.arms_[None, :]).astype(float)
        self.model_ = self._make(self.binary_).fit(self._design(X, flags), y)

    def predict_level(self, X: np.ndarray, arm=None) -> np.ndarray:
        """Predicted outcome (probability for 0/1 outcomes) of each row under `arm` (None: control)."""
        return predict_outcome(self.model_, self._design(X, self._flags(len(X), arm)))

    def _predict_arm(self, X, arm) -> np.ndarray:
        return self.predict_level(X, arm) - self.predict_level(X, None)


class TLearner(BaseUpliftModel):
    """Separate outcome models for control and for each arm; uplift = f_arm(x) - f_control(x)."""

    def _fit_arms(self, X, t, y) -> None:
        control = t == self.control
        self.control_model_ = self._make(self.binary_).fit(X[control], y[control])
        self.arm_models_ = {arm: self._make(self.binary_).fit(X[t == arm], y[t == arm]) for arm in self.arms_}

    def _predict_arm(self, X, arm) -> np.ndarray:
        return predict_outcome(self.arm_models_[arm], X) - predict_outcome(self.control_model_, X)


class XLearner(BaseUpliftModel):
    """Künzel et al. (2019): impute individual effects from T-learner outcome models, regress them, and
    blend the two effect models by the propensity. Strong when arms are unbalanced in size.
    """

    def __init__(self, estimator=None, effect_estimator=None, control=0, random_state: int | None = 0):
        self.estimator = estimator
        self.effect_estimator = effect_estimator
        self.control = control
        self.random_state = random_state

    def _fit_arms(self, X, t, y) -> None:
        control = t == self.control
        mu0 = self._make(self.binary_).fit(X[control], y[control])
        self.effect_models_ = {}
        self.propensity_ = {}
        for arm in self.arms_:
            treated = t == arm
            mu1 = self._make(self.binary_).fit(X[treated], y[treated])
            d1 = y[treated] - predict_outcome(mu0, X[treated])
            d0 = predict_outcome(mu1, X[control]) - y[control]
            tau1 = self._make(False, self.effect_estimator).fit(X[treated], d1)
            tau0 = self._make(False, self.effect_estimator).fit(X[control], d0)
            self.effect_models_[arm] = (tau0, tau1)
            self.propensity_[arm] = treated.sum() / (treated.sum() + control.sum())

    def _predict_arm(self, X, arm) -> np.ndarray:
        tau0, tau1 = self.effect_models_[arm]
        e = self.propensity_[arm]
        return e * predict_outcome(tau0, X) + (1 - e) * predict_outcome(tau1, X)


class DRLearner(BaseUpliftModel):
    """Doubly robust learner (Kennedy 2020): regress the cross-fitted AIPW pseudo-outcome on X.

    Cross-fitting keeps each row's outcome predictions out of the data that fitted them, so the
    pseudo-outcome is unbiased for the effect whatever the outcome models' errors.
    """

    def __init__(
        self, estimator=None, effect_estimator=None, n_folds: int = 2, control=0, random_state: int | None = 0
    ):
        self.estimator = estimator
        self.effect_estimator = effect_estimator
        self.n_folds = n_folds
        self.control = control
        self.random_state = random_state

    def _fit_arms(self, X, t, y) -> None:
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        self.effect_models_ = {}
        for arm in self.arms_:
            rows = (t == arm) | (t == self.control)
            Xa, ya, ta = X[rows], y[rows], (t[rows] == arm).astype(float)
            e = ta.mean()
            mu0, mu1 = np.zeros(len(ya)), np.zeros(len(ya))
            folds = KFold(self.n_folds, shuffle=True, random_state=self.random_state)
            for train, test in folds.split(Xa):
                for flag, out in ((0.0, mu0), (1.0, mu1)):
                    sel = train[ta[train] == flag]
                    out[test] = predict_outcome(self._make(self.binary_).fit(Xa[sel], ya[sel]), Xa[test])
            pseudo = mu1 - mu0 + ta * (ya - mu1) / e - (1 - ta) * (ya - mu0) / (1 - e)
            self.effect_models_[arm] = self._make(False, self.effect_estimator).fit(Xa, pseudo)

    def _predict_arm(self, X, arm) -> np.ndarray:
        return predict_outcome(self.effect_models_[arm], X)


class ClassTransformation(BaseUpliftModel):
    """Jaskowski & Jaroszewicz (2012): learn Z = 1 when (treated and responded) or (control and not).

    Rows are re-weighted so treated and control weigh the same, which makes uplift = 2 P(Z=1) - 1 hold
    for unbalanced groups too. Continuous outcomes use the transformed outcome
    Y* = Y (T - e) / (e (1 - e)), whose expectation given x is the uplift (Athey & Imbens 2016).
    """

    def _fit_arms(self, X, t, y) -> None:
        self.arm_models_ = {}
        for arm in self.arms_:
            rows = (t == arm) | (t == self.control)
            Xa, ya, ta = X[rows], y[rows], (t[rows] == arm).astype(float)
            e = ta.mean()
            if self.binary_:
                z = (ya == ta).astype(int)
                weights = np.where(ta == 1, 0.5 / e, 0.5 / (1 - e))
                model = _fit_weighted(self._make(True), Xa, z, weights)
            else:
                model = self._make(False).fit(Xa, ya * (ta - e) / (e * (1 - e)))
            self.arm_models_[arm] = model

    def _predict_arm(self, X, arm) -> np.ndarray:
        model = self.arm_models_[arm]
        if self.binary_:
            return 2 * predict_outcome(model, X) - 1
        return predict_outcome(model, X)


class TwoPartLearner(BaseUpliftModel):
    """Two-part (hurdle) uplift for a non-negative outcome that is mostly zero, such as spend:
    uplift = (P(y > 0 | x, arm) - P(y > 0 | x, control)) x E[y | y > 0, x].

    Spend on a campaign is a rare purchase times a heavy-tailed order value; regressing spend itself
    lets a few large orders steer the model. Here `uplift_learner` (an uplift model on the 0/1 target
    y > 0) learns who the mail makes buy, and one regressor over every arm's buyers (`estimator`,
    the regularised LightGBM by default) the order value. The mail is assumed to move whether a
    shopper buys rather than how much a buyer spends (so the order value model ignores the arm).
    With a `FunnelLearner` as `uplift_learner`, `fit(..., gate=visit)` learns the purchase through
    its visit: E[spend] = P(visit) x P(buy | visit) x E[spend | buy].
    """

    def __init__(self, uplift_learner=None, estimator=None, control=0, random_state: int | None = 0):
        self.uplift_learner = uplift_learner
        self.estimator = estimator
        self.control = control
        self.random_state = random_state

    def _fit_arms(self, X, t, y, gate=None) -> None:
        if (y < 0).any():
            raise ValueError("a two-part model needs a non-negative outcome")
        bought = y > 0
        if bought.sum() < 2:
            raise ValueError("a two-part model needs at least two rows with a positive outcome")
        inner = self.uplift_learner if self.uplift_learner is not None else SLearner()
        self.purchase_ = clone(inner).set_params(control=self.control, random_state=self.random_state)
        # a gate (a visit) goes to a purchase learner that takes one (`FunnelLearner`); others refuse it
        self.purchase_.fit(X, t, bought.astype(float), **({} if gate is None else {"gate": gate}))
        self.value_ = self._make(False).fit(X[bought], y[bought])

    def _predict_arm(self, X, arm) -> np.ndarray:
        effects = np.asarray(self.purchase_.predict_uplift(X)).reshape(len(X), -1)
        column = int(np.flatnonzero(self.purchase_.arms_ == arm)[0])
        return effects[:, column] * np.maximum(predict_outcome(self.value_, X), 0.0)


class FunnelLearner(BaseUpliftModel):
    """Uplift on an outcome reached only through an earlier, more frequent step of the same campaign
    (`gate`: a purchase needs a visit), through the identity E[y | x, arm] = P(gate | x, arm) x
    E[y | gate, x, arm]: uplift = p_arm q_arm - p_control q_control.

    A rare outcome (Hillstrom's ~1% conversion) holds too few events to rank shoppers by; its gate
    (~15% visits) holds ten times more, and the mail moves both. Fitting `P(gate | x, arm)` on every row
    and the outcome given the gate on the gated rows only (both S-learners on `estimator`, the
    regularised LightGBM by default) borrows the gate's events for the first factor, and still lets
    the mail change the second: the product is exact whenever y is nonzero only where the gate is,
    whatever each factor's effect. `fit(X, treatment, outcome, gate=...)`; a gate that is 0 on a row
    where the outcome is not is refused (not a funnel step).
    """

    def _fit_arms(self, X, t, y, gate=None) -> None:
        if gate is None:
            raise ValueError("FunnelLearner needs gate=: the 0/1 step the outcome is reached through")
        g = np.asarray(gate, dtype=float).ravel()
        if len(g) != len(y) or not np.isin(g, [0, 1]).all():
            raise ValueError(f"gate must be 0/1 with one value per row ({len(y)}), got {len(g)} values")
        if ((y != 0) & (g == 0)).any():
            raise ValueError("the outcome is nonzero on rows where the gate is 0: the gate is no funnel step")
        passed = g == 1
        for arm in [self.control, *self.arms_]:
            if not (passed & (t == arm)).any():
                raise ValueError(f"no gated rows in arm {arm!r}: nothing to learn the outcome given the gate")
        if self.binary_ and len(np.unique(y[passed])) < 2:
            raise ValueError("the outcome takes one value on the gated rows: the gate is the outcome itself")
        learner = SLearner(self.estimator, control=self.control, random_state=self.random_state)
        self.gate_ = clone(learner).fit(X, t, g)
        self.given_gate_ = clone(learner).fit(X[passed], t[passed], y[passed])

    def _predict_arm(self, X, arm) -> np.ndarray:
        def level(a):
            return self.gate_.predict_level(X, a) * self.given_gate_.predict_level(X, a)

        return level(arm) - level(None)
