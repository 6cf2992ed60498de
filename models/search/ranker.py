"""LightGBM gradient boosting over search features (features.search_features.FEATURES), trained with a
LambdaRank objective that takes per-document inverse-propensity weights.

Why not LightGBM's own lambdarank: it normalises each query's pair updates by that query's ideal DCG
of the labels. Scaling a clicked result's label by 1 / propensity is then cancelled whenever a list
has one click (most lists): the click's gain appears in both the pair's DCG change and the ideal DCG.
Its sample weights multiply a document's summed gradient, not the pairs the weighted click is part of,
so they cannot carry a clicked document's propensity into the updates of the documents below it either.

`IPWLambdaRank` is propensity-weighted LambdaRank (Joachims et al. 2017; Hu et al. 2019): the gain of
each result is grade x weight (weight 1 / theta_k for an outcome logged at position k, 1 when not
debiasing); a pair (i, j) with gain_i > gain_j gets the LambdaRank update sigma x rho_ij x |delta DCG_ij|
with delta DCG from those gains, normalised by the ideal DCG of the unweighted grades (a per-query
constant that does not depend on the weights, so the weights survive). With all weights 1 it is
LambdaRank with linear gains.
"""

from __future__ import annotations

import hashlib

import lightgbm as lgb
import numpy as np

MAX_LABEL = 60


class IPWLambdaRank:
    """LightGBM custom objective over fixed groups: (grad, hess) for the current scores."""

    def __init__(self, labels: np.ndarray, weights: np.ndarray, group_sizes: np.ndarray, sigma: float = 1.0):
        sizes = np.asarray(group_sizes)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        width = int(sizes.max())
        offsets = np.arange(width)
        self.valid = offsets[None, :] < sizes[:, None]  # (queries, width)
        self.index = np.where(self.valid, starts[:, None] + offsets[None, :], 0)
        self.n = int(sizes.sum())
        self.sigma = sigma
        grades = np.where(self.valid, np.asarray(labels, dtype=np.float64)[self.index], 0.0)
        gains = grades * np.where(self.valid, np.asarray(weights, dtype=np.float64)[self.index], 0.0)
        ideal = np.sort(grades, axis=1)[:, ::-1] @ (1.0 / np.log2(offsets + 2.0))
        inv_ideal = np.divide(1.0, ideal, out=np.zeros_like(ideal), where=ideal > 0)
        # The pairs (higher gain i, lower gain j), as row indices, with their normalised gain difference.
        diff = gains[:, :, None] - gains[:, None, :]
        q, a, b = np.nonzero((diff > 0) & self.valid[:, :, None] & self.valid[:, None, :])
        self.hi, self.lo = self.index[q, a], self.index[q, b]
        self.gain_diff = diff[q, a, b] * inv_ideal[q]

    def gradients(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.where(self.valid, scores[self.index], -np.inf)
        rank = np.empty_like(self.index)
        np.put_along_axis(rank, np.argsort(-s, axis=1, kind="stable"), np.arange(s.shape[1])[None, :], axis=1)
        disc = np.zeros(self.n)
        disc[self.index[self.valid]] = 1.0 / np.log2(rank[self.valid] + 2.0)
        delta = self.gain_diff * np.abs(disc[self.hi] - disc[self.lo])
        rho = 1.0 / (1.0 + np.exp(np.clip(self.sigma * (scores[self.hi] - scores[self.lo]), -50, 50)))
        lam = self.sigma * rho * delta
        hes = self.sigma**2 * rho * (1.0 - rho) * delta
        # the higher-gain side is pushed up (negative gradient), the lower one down
        grad = np.bincount(self.lo, lam, self.n) - np.bincount(self.hi, lam, self.n)
        hess = np.bincount(self.lo, hes, self.n) + np.bincount(self.hi, hes, self.n)
        return grad, np.maximum(hess, 1e-9)

    def __call__(self, y_true, y_pred, *_):
        return self.gradients(np.asarray(y_pred, dtype=np.float64))


class SearchRanker:
    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        random_state: int = 0,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state

    def fit(
        self, X: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray, weights: np.ndarray | None = None
    ) -> SearchRanker:
        """`labels`: graded outcomes (integers in [0, MAX_LABEL]); `weights`: per-row inverse propensity
        of the position the outcome was logged at (None: unweighted)."""
        labels = np.asarray(labels)
        if labels.min() < 0 or labels.max() > MAX_LABEL or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers in [0, {MAX_LABEL}]")
        if int(np.sum(group_sizes)) != len(X):
            raise ValueError("group sizes must add up to the number of rows")
        weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != labels.shape or np.any(weights <= 0):
            raise ValueError("weights must be positive, one per row")
        model = lgb.LGBMRanker(
            objective=IPWLambdaRank(labels, weights, np.asarray(group_sizes)),
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.random_state,
            n_jobs=1,
            verbose=-1,
        )
        model.fit(np.asarray(X, dtype=np.float32), labels, group=np.asarray(group_sizes))
        self.booster_ = model.booster_  # the objective (training arrays) is not kept
        digest = hashlib.blake2b(self.booster_.model_to_string().encode(), digest_size=6).hexdigest()
        self.version_ = f"lambdarank-{digest}"
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.booster_.predict(np.asarray(X, dtype=np.float32))
