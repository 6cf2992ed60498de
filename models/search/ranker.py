"""LightGBM lambdarank over search features (features.search_features.FEATURES).

Labels are small integers with a *linear* gain (label_gain = 0, 1, 2, ...), so a label can carry an
inverse-propensity weight: a click seen at a rarely examined position gets a proportionally larger
gain, and lambdarank's pairwise updates (proportional to the gain difference) are IPW-weighted.
LightGBM's own weights cannot do this: for ranking they apply per query, not per document.
"""

from __future__ import annotations

import hashlib

import lightgbm as lgb
import numpy as np

MAX_LABEL = 60


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

    def fit(self, X: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray) -> SearchRanker:
        labels = np.asarray(labels)
        if labels.min() < 0 or labels.max() > MAX_LABEL or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers in [0, {MAX_LABEL}]")
        if int(np.sum(group_sizes)) != len(X):
            raise ValueError("group sizes must add up to the number of rows")
        self.model_ = lgb.LGBMRanker(
            objective="lambdarank",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            label_gain=list(range(MAX_LABEL + 1)),
            lambdarank_truncation_level=20,
            random_state=self.random_state,
            n_jobs=1,
            verbose=-1,
        )
        self.model_.fit(np.asarray(X, dtype=np.float32), labels, group=np.asarray(group_sizes))
        digest = hashlib.blake2b(self.model_.booster_.model_to_string().encode(), digest_size=6).hexdigest()
        self.version_ = f"lambdarank-{digest}"
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(np.asarray(X, dtype=np.float32))
