"""Delivery-time quantiles: LightGBM quantile regression, conformally calibrated per partner.

Quantile regression alone under-covers on held-out data (it fits the training sample's quantiles);
split-conformal calibration (Romano et al. 2019, "Conformalized Quantile Regression") shifts each
quantile by the matching empirical quantile of its errors on a held-out calibration share, per partner,
so that e.g. the 10%-90% band holds about 80% of real deliveries for every partner.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.logistics import CATEGORICAL, FEATURES

MIN_CALIBRATION_ROWS = 30


def quantile_column(q: float) -> str:
    return f"q{round(q * 100):02d}"


class DeliveryTimeModel:
    """Predicts quantiles of the days from order to delivery for a parcel (see `features.logistics`)."""

    def __init__(
        self,
        quantiles: tuple[float, ...] = (0.1, 0.5, 0.8, 0.9),
        calibration_share: float = 0.25,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        random_state: int = 0,
    ):
        self.quantiles = quantiles
        self.calibration_share = calibration_share
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = set(FEATURES) - set(X.columns)
        if missing:
            raise ValueError(f"delivery features missing: {sorted(missing)}")
        frame = X[list(FEATURES)].copy()
        for col in CATEGORICAL:
            frame[col] = pd.Categorical(frame[col].astype(str), categories=self.categories_[col])
        return frame

    def fit(self, X: pd.DataFrame, y) -> DeliveryTimeModel:
        import lightgbm as lgb

        y = np.asarray(y, dtype=float)
        if len(y) != len(X) or len(y) < 2 * MIN_CALIBRATION_ROWS:
            raise ValueError(f"need at least {2 * MIN_CALIBRATION_ROWS} deliveries with one target each")
        if not 0 < self.calibration_share < 1 or not all(0 < q < 1 for q in self.quantiles):
            raise ValueError("calibration_share and quantiles must lie strictly between 0 and 1")
        self.categories_ = {col: sorted(X[col].astype(str).unique()) for col in CATEGORICAL}
        frame = self._frame(X)
        rng = np.random.default_rng(self.random_state)
        calibrate = rng.random(len(y)) < self.calibration_share
        self.models_ = []
        for q in self.quantiles:
            model = lgb.LGBMRegressor(
                objective="quantile", alpha=q, n_estimators=self.n_estimators,
                learning_rate=self.learning_rate, num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples, random_state=self.random_state, verbose=-1,
                n_jobs=1,
            )  # fmt: skip
            model.fit(frame[~calibrate], y[~calibrate])
            self.models_.append(model)
        raw = self._raw(frame[calibrate])
        residual = y[calibrate][:, None] - raw
        partner = frame["partner_id"][calibrate].astype(str).to_numpy()
        self.shift_global_ = self._shifts(residual)
        self.shift_ = {
            p: self._shifts(residual[partner == p])
            for p in np.unique(partner)
            if (partner == p).sum() >= MIN_CALIBRATION_ROWS
        }
        return self

    def _raw(self, frame: pd.DataFrame) -> np.ndarray:
        return np.column_stack([m.predict(frame) for m in self.models_])

    def _shifts(self, residual: np.ndarray) -> np.ndarray:
        """Per quantile q, the conformal quantile of (actual - predicted) at level q (finite-sample)."""
        n = len(residual)
        levels = [
            min(1.0, np.ceil((n + 1) * q) / n) if q >= 0.5 else max(0.0, np.floor((n + 1) * q) / n)
            for q in self.quantiles
        ]
        return np.array([np.quantile(residual[:, j], lv) for j, lv in enumerate(levels)])

    def predict_quantiles(self, X: pd.DataFrame) -> pd.DataFrame:
        """Days to delivery at each quantile, calibrated, non-decreasing across quantiles, never negative."""
        if not hasattr(self, "models_"):
            raise RuntimeError("fit the model first")
        frame = self._frame(X)
        raw = self._raw(frame)
        partner = frame["partner_id"].astype(str).to_numpy()
        shift = np.vstack([self.shift_.get(p, self.shift_global_) for p in partner]) if len(partner) else raw
        values = np.clip(np.sort(raw + shift, axis=1), 0.0, None)
        return pd.DataFrame(values, columns=[quantile_column(q) for q in self.quantiles], index=X.index)
