"""LightGBM base learners trained through `lightgbm.dask`, for the uplift meta-learners at scale.

Pass one as the `estimator` of an S/T learner (or a regressor as `effect_estimator`) inside a
`distributed.Client` context: `fit` sends the rows to the workers in one chunk per worker and trains
data-parallel; the learned model is the ordinary local LightGBM model, so prediction, pickling and
the registry artifact are unchanged. `scheduler` names a cluster explicitly; by default the current
client (`distributed.get_client()`) is used. The defaults mirror `base.default_estimator`.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin


class _DaskLightGBM(BaseEstimator):
    _dask_class = ""

    def __init__(
        self,
        n_estimators: int = 150,
        learning_rate: float = 0.03,
        num_leaves: int = 8,
        max_depth: int = 3,
        min_child_samples: int = 200,
        reg_lambda: float = 10.0,
        scheduler: str | None = None,
        random_state: int | None = 0,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.scheduler = scheduler
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        import dask.array as da
        import lightgbm.dask
        from distributed import Client, get_client

        client = Client(self.scheduler) if self.scheduler else get_client()
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
        n_workers = max(1, len(client.scheduler_info()["workers"]))
        rows = -(-len(X) // n_workers)
        x_dask = da.from_array(X, chunks=(rows, X.shape[1]))
        y_dask = da.from_array(y, chunks=rows)
        w_dask = (
            None if sample_weight is None else da.from_array(np.asarray(sample_weight, float), chunks=rows)
        )
        model = getattr(lightgbm.dask, self._dask_class)(
            client=client,
            tree_learner="data",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            max_depth=self.max_depth,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            reg_lambda=self.reg_lambda,
            random_state=self.random_state,
            verbose=-1,
        )
        model.fit(x_dask, y_dask, sample_weight=w_dask)
        self.model_ = model.to_local()
        self.n_features_in_ = X.shape[1]
        if self.scheduler:
            client.close()
        return self

    def predict(self, X):
        return self.model_.predict(np.asarray(X, dtype=np.float64))


class DaskLightGBMClassifier(ClassifierMixin, _DaskLightGBM):
    """Binary outcome model (visit, conversion) trained on the Dask cluster."""

    _dask_class = "DaskLGBMClassifier"

    def fit(self, X, y, sample_weight=None):
        super().fit(X, y, sample_weight)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(np.asarray(X, dtype=np.float64))


class DaskLightGBMRegressor(RegressorMixin, _DaskLightGBM):
    """Continuous outcome or effect model (spend, imputed effects) trained on the Dask cluster."""

    _dask_class = "DaskLGBMRegressor"
