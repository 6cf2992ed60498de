"""The uplift-model interface: `fit(X, treatment, outcome, **fit_params)` then
`predict_uplift(X, coupons=None)`; coupon effect models add `predict_candidates` for the planner.

`treatment` holds one label per row: `control` (default 0) for the control group, anything else names
a treatment arm (e.g. a coupon id). Each arm is compared with the one control group. Outcomes that are
all 0/1 are treated as binary (probabilities are modelled); anything else as continuous (e.g. spend).
`coupons` (the planner's terms: coupon_id, kind, face_value, min_spend, cap) asks for one column per
coupon instead of one per learned arm; only coupon effect models can answer it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier

__all__ = ["UpliftModel", "CouponUpliftModel", "BaseUpliftModel", "default_estimator", "is_binary_outcome"]


def default_estimator(binary: bool, random_state: int | None = 0):
    """A heavily regularised LightGBM: shallow trees, large leaves, shrinkage, subsampling.

    Uplift is a small difference between two noisy rates; trees that may split on a few dozen rows
    fit noise far more than signal, so the defaults trade variance for bias.
    """
    from lightgbm import LGBMClassifier, LGBMRegressor

    params = dict(
        n_estimators=150,
        learning_rate=0.03,
        num_leaves=8,
        max_depth=3,
        min_child_samples=200,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        reg_lambda=10.0,
        n_jobs=1,
        verbose=-1,
        random_state=random_state,
    )
    return LGBMClassifier(**params) if binary else LGBMRegressor(**params)


def is_binary_outcome(y: np.ndarray) -> bool:
    return bool(np.isin(np.unique(y), [0, 1]).all())


def predict_outcome(model, X) -> np.ndarray:
    """Probability of the positive class for classifiers, the prediction for regressors."""
    if is_classifier(model):
        return model.predict_proba(X)[:, 1]
    return np.asarray(model.predict(X), dtype=float)


class UpliftModel(BaseEstimator, ABC):
    """What every production uplift model implements (as `Recommender` for recommenders): after
    `fit`, `arms_` lists the learned treatment arms in the column order of `predict_uplift`."""

    @abstractmethod
    def fit(self, X, treatment, outcome, **fit_params) -> UpliftModel:
        """Learn each arm's effect on `outcome` against the control rows; returns self."""

    @abstractmethod
    def predict_uplift(self, X, coupons: pd.DataFrame | None = None) -> np.ndarray:
        """Effect per row: (n,) with one arm, (n, n_arms) otherwise; (n, n_coupons) for `coupons`."""


def no_coupon_terms(model: UpliftModel, coupons) -> None:
    """Arm-label models learn no coupon terms: refuse them rather than silently predict per arm."""
    if coupons is not None:
        raise ValueError(f"{type(model).__name__} predicts per learned arm; it cannot price coupon terms")


class CouponUpliftModel(UpliftModel):
    """An uplift model that prices coupons for the campaign planner. Besides `arms_` it has
    `feature_names_in_` (the columns it reads) and `cost_factor_` (>= 1: the margin the planner keeps
    on predicted coupon cost, see `planner.plan_campaign(cost_safety=...)`)."""

    @abstractmethod
    def predict_candidates(self, X, shopper_ids, coupons: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per (shopper, coupon) with the planner's candidate columns; without `coupons`,
        one per learned arm."""


class BaseUpliftModel(UpliftModel):
    """Shared validation and arm bookkeeping; subclasses implement `_fit_arms` and `_predict_arms`."""

    def __init__(self, estimator=None, control=0, random_state: int | None = 0):
        self.estimator = estimator
        self.control = control
        self.random_state = random_state

    # -- helpers for subclasses -------------------------------------------------------------------
    def _make(self, binary: bool, estimator=None):
        """A fresh copy of the configured base learner (or the default for this outcome type)."""
        base = estimator if estimator is not None else self.estimator
        if base is None:
            return default_estimator(binary, self.random_state)
        model = clone(base)
        if "random_state" in model.get_params():
            model.set_params(random_state=self.random_state)
        if binary is False and is_classifier(model):
            raise ValueError(
                f"{type(model).__name__} is a classifier but this stage models a continuous target; "
                "pass a regressor (effect_estimator for the X and DR learners)"
            )
        return model

    def _validate(self, X, treatment=None, outcome=None):
        if isinstance(X, pd.DataFrame):
            bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
            if bad:
                raise ValueError(f"X has non-numeric columns {bad}; encode them first")
            X = X.to_numpy(dtype=float)
        X = np.asarray(X, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        if treatment is None:
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, the model was fit on {self.n_features_in_}")
            return X
        t = np.asarray(treatment).ravel()
        y = np.asarray(outcome, dtype=float).ravel()
        if not (len(X) == len(t) == len(y)):
            raise ValueError(f"X, treatment and outcome differ in length: {len(X)}, {len(t)}, {len(y)}")
        if not np.isfinite(y).all():
            raise ValueError("outcome has missing or infinite values")
        if not (t == self.control).any():
            raise ValueError(f"no control rows (treatment == {self.control!r})")
        arms = np.unique(t[t != self.control])
        if len(arms) == 0:
            raise ValueError("no treated rows")
        return X, t, y, arms

    def fit(self, X, treatment, outcome, **fit_params):
        """Learn the effect of every arm against control; returns self. `fit_params` go to
        `_fit_arms` (a learner that takes none refuses them)."""
        X, t, y, arms = self._validate(X, treatment, outcome)
        self.arms_ = arms
        self.n_features_in_ = X.shape[1]
        self.binary_ = is_binary_outcome(y)
        self._fit_arms(X, t, y, **fit_params)
        return self

    def predict_uplift(self, X, coupons: pd.DataFrame | None = None) -> np.ndarray:
        """Predicted effect per row: shape (n,) with one arm, (n, n_arms) in `arms_` order otherwise."""
        no_coupon_terms(self, coupons)
        if not hasattr(self, "arms_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        X = self._validate(X)
        effects = np.column_stack([self._predict_arm(X, arm) for arm in self.arms_])
        return effects[:, 0] if len(self.arms_) == 1 else effects

    @abstractmethod
    def _fit_arms(self, X, t, y) -> None:
        """Fit the learned state for every arm in `self.arms_` (X validated, t labels, y floats)."""

    @abstractmethod
    def _predict_arm(self, X, arm) -> np.ndarray:
        """Predicted effect of `arm` against control for each row of X."""
