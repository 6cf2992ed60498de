"""Popularity baselines: all-time popularity and trending (recent, time-decayed), globally or by group.

They are the floor every learned model must beat and the cold-start answer for new shoppers
(`popular_items(group=...)`). Grouping by a user column (e.g. `region`, `segment`) ranks what that
group buys; grouping by an item column (e.g. `category_id`) weights global popularity by the shopper's
affinity for the item's group. Group figures are shrunk toward the global ones (`smoothing`) so
small groups do not produce noise.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.interactions import InteractionData
from models.recommenders.base import Ranked
from models.recommenders.common import MatrixRecommender, check_n, top_n

_NO_GROUP = "__none__"


class PopularityRecommender(MatrixRecommender):
    """Most popular items (distinct shoppers per item), optionally per user or item group.

    `by`: None (global), a `user_features` column (popularity within the shopper's group) or an
    `item_features` column (popularity x the shopper's smoothed share of interactions in the item's
    group). A missing column falls back to global popularity with a warning.
    """

    name = "popularity"

    def __init__(self, by: str | None = None, smoothing: float = 10.0):
        self.by = by
        self.smoothing = smoothing

    # what each interaction contributes; trending overrides this with time-decayed events
    def _contributions(self, data: InteractionData, matrix: sp.csr_matrix) -> sp.csr_matrix:
        binary = matrix.copy()
        binary.data[:] = 1.0
        return binary

    def _fit(self, data: InteractionData, matrix: sp.csr_matrix) -> None:
        if self.smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {self.smoothing}")
        contrib = self._contributions(data, matrix)
        counts = np.asarray(contrib.sum(axis=0)).ravel()
        total = counts.sum()
        self.item_pop_ = (counts / total if total > 0 else counts).astype(np.float64)
        self.mode_ = "global"
        self.group_keys_ = np.array([], dtype=object)
        self.group_pop_ = np.zeros((0, len(counts)))
        if self.by is None:
            return
        ufeat, ifeat = data.user_features, data.item_features
        if ufeat is not None and self.by in ufeat.columns:
            self._fit_user_groups(data, contrib, ufeat[self.by])
        elif ifeat is not None and self.by in ifeat.columns:
            self._fit_item_groups(data, contrib, ifeat[self.by])
        else:
            warnings.warn(
                f"{type(self).__name__}: no user or item feature {self.by!r}; using global popularity",
                stacklevel=3,
            )

    def _fit_user_groups(self, data: InteractionData, contrib: sp.csr_matrix, column: pd.Series) -> None:
        labels = column.reindex(pd.Index(data.user_ids)).astype(object).fillna(_NO_GROUP).to_numpy()
        keys, user_group = np.unique(labels.astype(str), return_inverse=True)
        onehot = sp.csr_matrix(
            (np.ones(len(user_group)), (user_group, np.arange(len(user_group)))),
            shape=(len(keys), len(user_group)),
        )
        group_counts = np.asarray((onehot @ contrib).todense())
        m = self.smoothing
        totals = group_counts.sum(axis=1, keepdims=True)
        self.group_pop_ = (group_counts + m * self.item_pop_) / (totals + m)
        self.group_keys_ = keys.astype(object)
        self.user_group_ = user_group.astype(np.int64)
        # every known shopper's group is known at fit time, so ranking users needs no feature lookup
        self.mode_ = "user"

    def _fit_item_groups(self, data: InteractionData, contrib: sp.csr_matrix, column: pd.Series) -> None:
        labels = column.reindex(pd.Index(data.item_ids)).astype(object).fillna(_NO_GROUP).to_numpy()
        keys, item_group = np.unique(labels.astype(str), return_inverse=True)
        onehot = sp.csr_matrix(
            (np.ones(len(item_group)), (np.arange(len(item_group)), item_group)),
            shape=(len(item_group), len(keys)),
        )
        user_counts = np.asarray((contrib @ onehot).todense())  # users x groups
        prior = np.asarray(onehot.T @ self.item_pop_).ravel()  # global share of each group
        m = self.smoothing
        self.user_affinity_ = (user_counts + m * prior) / (user_counts.sum(axis=1, keepdims=True) + m)
        pop_in_group = np.zeros((len(keys), len(item_group)))
        pop_in_group[item_group, np.arange(len(item_group))] = self.item_pop_
        self.group_pop_ = pop_in_group
        self.group_keys_ = keys.astype(object)
        self.item_group_ = item_group.astype(np.int64)
        self.mode_ = "item"

    def _score_users(self, rows: np.ndarray) -> np.ndarray:
        if self.mode_ == "user":
            scores = self.group_pop_[self.user_group_[rows]]
        elif self.mode_ == "item":
            scores = self.user_affinity_[rows][:, self.item_group_] * self.item_pop_
        else:
            scores = np.broadcast_to(self.item_pop_, (len(rows), len(self.item_pop_)))
        return np.where(scores > 0, scores, -np.inf)  # an item nobody took (recently) is not popular

    def _item_scores(self, col: int) -> np.ndarray:
        if self.mode_ == "item":  # popular items of the same group first, then the rest
            same = self.item_group_ == self.item_group_[col]
            return np.where(same, 1.0 + self.item_pop_, self.item_pop_)
        return self.item_pop_.copy()

    def popular_items(
        self, n: int = 10, group: str | None = None, candidates: Collection[str] | None = None
    ) -> Ranked:
        """Top-n items for anyone, or for one group (a value of the `by` column): the cold-start list.

        An unknown group gets the global list."""
        self._check_fitted()
        n = check_n(n)
        scores = self.item_pop_.copy()
        if group is not None and self.mode_ != "global":
            where = np.flatnonzero(self.group_keys_ == str(group))
            if where.size:
                scores = self.group_pop_[where[0]].astype(np.float64).copy()
                if self.mode_ == "item":
                    scores[self.item_group_ != where[0]] = -np.inf
        scores[scores <= 0] = -np.inf
        allowed = self._candidate_mask(candidates)
        if allowed is not None:
            scores[~allowed] = -np.inf
        return [(str(self.item_ids_[j]), float(scores[j])) for j in top_n(scores, n)]


class TrendingRecommender(PopularityRecommender):
    """Popularity over recent events only: each shopper counts once per item, weighted by exp-decay of
    the age of their latest event there.

    The reference time is the latest event in the data (so refits are deterministic and offline
    evaluation cannot peek past the training cut). Events older than `window_days` count nothing.
    Needs `data.events` with a `ts` column. By default it is personal: recent popularity weighted by the
    shopper's category affinity (global when there is no `category_id`), which beat plain popularity
    on the synthetic marketplace where global trending did not.
    """

    name = "trending"

    def __init__(
        self,
        by: str | None = "category_id",
        smoothing: float = 10.0,
        window_days: float = 60.0,
        half_life_days: float = 30.0,
    ):
        super().__init__(by=by, smoothing=smoothing)
        self.window_days = window_days
        self.half_life_days = half_life_days

    def _contributions(self, data: InteractionData, matrix: sp.csr_matrix) -> sp.csr_matrix:
        if self.window_days <= 0 or self.half_life_days <= 0:
            raise ValueError("window_days and half_life_days must be > 0")
        events = data.events
        if events is None or "ts" not in events.columns or events["ts"].isna().all():
            raise ValueError("trending needs data.events with timestamps (column 'ts')")
        rows = events["user_id"].map(data.user_index)
        cols = events["item_id"].map(data.item_index)
        ts = pd.to_datetime(events["ts"], utc=True)
        keep = rows.notna() & cols.notna() & ts.notna()
        ts = ts[keep]
        age_days = (ts.max() - ts).dt.total_seconds().to_numpy() / 86400.0
        weight = np.where(age_days <= self.window_days, 0.5 ** (age_days / self.half_life_days), 0.0)
        self.reference_time_ = ts.max()
        # One shopper counts once per item, by their most recent event: repeating an event (a flood of
        # views) must not lift an item, as in plain popularity.
        pairs = pd.DataFrame(
            {"row": rows[keep].astype(np.int64).to_numpy(), "col": cols[keep].astype(np.int64).to_numpy(),
             "w": weight}
        ).groupby(["row", "col"], sort=False)["w"].max()  # fmt: skip
        return sp.csr_matrix(
            (pairs.to_numpy(), (pairs.index.get_level_values(0), pairs.index.get_level_values(1))),
            shape=matrix.shape,
        )
