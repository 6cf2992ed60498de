"""Repeat-aware baselines of next-basket recommendation (Li et al., "A Next Basket Recommendation
Reality Check", TOIS 2023): they score the shopper's own past items, so they are meant for lists
that keep seen items (`recommend(..., exclude_seen=False)`, `evaluate ... --include-seen`).

- `PersonalTopFreqRecommender` ("personal-topfreq"): how often the shopper bought each item, each
  basket down-weighted by `basket_decay` per later basket; `GPTopFreqRecommender` ("gp-topfreq") is
  the same list filled up with the globally most frequent items.
- `TIFUKNNRecommender` ("tifuknn", Hu et al., SIGIR 2020): the shopper's time-decayed item-frequency
  vector (baskets in `n_groups` time-ordered groups; decay `within_decay` inside a group,
  `group_decay` across groups) blended with the mean vector of the `k` nearest shoppers (Euclidean).
  Defaults are the published Ta-Feng settings: k=300, r_b=0.9, r_g=0.7, alpha=0.7, m=7.

With `fill_popular`, items without personal (or neighbour) evidence are ranked by global basket
frequency below every item with evidence, so a list is never short; without it they are left out.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import scipy.sparse as sp

from features.interactions import InteractionData
from models.recommenders.baskets import basket_table
from models.recommenders.common import MatrixRecommender


class _BasketRecommender(MatrixRecommender):
    """Shared parts: global basket frequency (the fill), co-purchase similar items, evidence -> scores."""

    fill_popular: bool

    def _fit(self, data: InteractionData, matrix: sp.csr_matrix) -> None:
        table = basket_table(data)
        if table.empty:
            raise ValueError(f"{type(self).__name__}: no purchases (all weights <= 0)")
        n_items = matrix.shape[1]
        freq = np.bincount(table["i"].to_numpy(), minlength=n_items).astype(np.float64)
        self.item_freq_ = freq / freq.max()
        binary = sp.csr_matrix(matrix.T, dtype=np.float32, copy=True)  # items x users
        binary.data[:] = 1.0
        self.item_users_ = binary
        self._fit_baskets(table, matrix.shape)

    @abstractmethod
    def _fit_baskets(self, table, shape: tuple[int, int]) -> None:
        """Learn from the `basket_table` rows."""

    @abstractmethod
    def _evidence(self, rows: np.ndarray) -> np.ndarray:
        """Dense (len(rows), n_items) evidence, > 0 where the model has any."""

    def _score_users(self, rows: np.ndarray) -> np.ndarray:
        evidence = self._evidence(rows)
        if self.fill_popular:  # fill values stay below 1, evidence is shifted above it
            return np.where(evidence > 0, 1.0 + evidence, self.item_freq_ * (1.0 - 1e-6))
        return np.where(evidence > 0, evidence, -np.inf)

    def _item_scores(self, col: int) -> np.ndarray:
        """Cosine of the items' buyer sets: what the same shoppers buy."""
        x = self.item_users_
        co = np.asarray((x @ x[col].T).todense()).ravel()
        counts = np.diff(x.indptr).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(co / np.sqrt(counts * counts[col]))


class PersonalTopFreqRecommender(_BasketRecommender):
    """The shopper's most frequently bought items, recent baskets weighing more (see the module)."""

    name = "personal-topfreq"

    def __init__(self, basket_decay: float = 0.9, fill_popular: bool = False):
        self.basket_decay = basket_decay
        self.fill_popular = fill_popular

    def _fit_baskets(self, table, shape: tuple[int, int]) -> None:
        if not 0.0 < self.basket_decay <= 1.0:
            raise ValueError(f"basket_decay must be in (0, 1], got {self.basket_decay}")
        ago = (table["n_baskets"] - 1 - table["b"]).to_numpy()
        weight = self.basket_decay ** ago.astype(np.float64)
        self.frequency_ = sp.csr_matrix((weight, (table["u"].to_numpy(), table["i"].to_numpy())), shape=shape)

    def _evidence(self, rows: np.ndarray) -> np.ndarray:
        return self.frequency_[rows].toarray()


class GPTopFreqRecommender(PersonalTopFreqRecommender):
    """Personal top-frequency, filled up with the globally most frequent items (GP-TopFreq)."""

    name = "gp-topfreq"

    def __init__(self, basket_decay: float = 0.9, fill_popular: bool = True):
        super().__init__(basket_decay=basket_decay, fill_popular=fill_popular)


def tifu_user_vectors(
    table, shape: tuple[int, int], n_groups: int, within_decay: float, group_decay: float
) -> sp.csr_matrix:
    """TIFU-KNN's user vectors from a `basket_table`: a user's n baskets fall into m = min(n_groups, n)
    contiguous groups (basket b in group floor(b m / n)); basket weight within_decay^(baskets until
    the group's last) / group size; group weight group_decay^(groups until the last) / m."""
    b = table["b"].to_numpy()
    n = table["n_baskets"].to_numpy()
    m = np.minimum(n_groups, n)
    g = (b * m) // n
    first = (g * n + m - 1) // m
    last = ((g + 1) * n + m - 1) // m - 1
    weight = (
        within_decay ** (last - b).astype(np.float64)
        / (last - first + 1)
        * group_decay ** (m - 1 - g).astype(np.float64)
        / m
    )
    return sp.csr_matrix((weight, (table["u"].to_numpy(), table["i"].to_numpy())), shape=shape)


class TIFUKNNRecommender(_BasketRecommender):
    """Temporal item-frequency user vectors blended with their k nearest neighbours' (see the module).

    `n_jobs` is passed to scikit-learn's neighbour search."""

    name = "tifuknn"

    def __init__(
        self,
        k: int = 300,
        n_groups: int = 7,
        within_decay: float = 0.9,
        group_decay: float = 0.7,
        alpha: float = 0.7,
        fill_popular: bool = True,
        n_jobs: int = 1,
    ):
        self.k = k
        self.n_groups = n_groups
        self.within_decay = within_decay
        self.group_decay = group_decay
        self.alpha = alpha
        self.fill_popular = fill_popular
        self.n_jobs = n_jobs

    def _fit_baskets(self, table, shape: tuple[int, int]) -> None:
        from sklearn.neighbors import NearestNeighbors

        if self.k < 1 or self.n_groups < 1:
            raise ValueError(f"k and n_groups must be >= 1, got k={self.k}, n_groups={self.n_groups}")
        for name in ("within_decay", "group_decay", "alpha"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        vectors = tifu_user_vectors(table, shape, self.n_groups, self.within_decay, self.group_decay)
        self.user_vectors_ = vectors
        n_users = shape[0]
        k = min(self.k, n_users - 1)
        if k < 1:
            self.neighbors_ = np.zeros((n_users, 0), dtype=np.int64)
            return
        search = NearestNeighbors(
            n_neighbors=k + 1, metric="euclidean", algorithm="brute", n_jobs=self.n_jobs
        )
        found = search.fit(vectors).kneighbors(vectors, return_distance=False)
        # drop each user from their own list (or the farthest one when ties pushed the user out)
        own = found == np.arange(n_users)[:, None]
        own[~own.any(axis=1), -1] = True
        self.neighbors_ = found[~own].reshape(n_users, k).astype(np.int64)

    def _evidence(self, rows: np.ndarray) -> np.ndarray:
        own = self.user_vectors_[rows].toarray()
        k = self.neighbors_.shape[1]
        if k == 0:
            return own
        pick = sp.csr_matrix(
            (
                np.full(len(rows) * k, 1.0 / k),
                self.neighbors_[rows].ravel(),
                np.arange(0, len(rows) * k + 1, k),
            ),
            shape=(len(rows), self.user_vectors_.shape[0]),
        )
        neighbours = (pick @ self.user_vectors_).toarray()
        return self.alpha * own + (1.0 - self.alpha) * neighbours
