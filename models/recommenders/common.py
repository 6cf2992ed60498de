"""Shared machinery: id maps, top-n selection with seen/candidate filters, and the saved-artifact format.

Every concrete model scores users against all known items (`_score_users`) and items against items
(`_item_scores`); filtering, ranking, unknown ids and persistence live here once, so each model file
holds only its learning rule.

Artifacts are one joblib file holding a dict {format, class, params, state}: `params` are the
constructor arguments, `state` the fitted attributes (names ending in `_`: numpy arrays, scipy sparse
matrices, dicts, pandas frames and, for the ranker, nested CrossCart models). joblib is pickle
underneath, so loading runs pickle: load artifacts only from a trusted registry, never user uploads.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Self

import joblib
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from commerce.files import atomic_path
from features.interactions import InteractionData
from models.artifacts import read_artifact
from models.recommenders.base import Ranked, Recommender

ARTIFACT_FORMAT = "crosscart-recommender/1"
_BATCH = 512  # users scored per dense block: bounds memory at 512 x n_items floats
_SAMPLE_ABOVE = 64  # rows longer than 64 x n are cut by a sampled threshold first (see top_n)
_ROW_CUT = 8  # top_n_rows: the threshold is the 8th largest of the sample (about 4n items pass)


def check_data(data: InteractionData) -> sp.csr_matrix:
    """The interaction matrix as float32 CSR with sorted indices; clear errors for unusable input."""
    if not isinstance(data, InteractionData):
        raise TypeError(f"fit expects InteractionData, got {type(data).__name__}")
    if data.n_users == 0 or data.n_items == 0 or data.matrix.nnz == 0:
        raise ValueError("cannot fit on empty interaction data")
    matrix = sp.csr_matrix(data.matrix, dtype=np.float32)
    if matrix.data.min() < 0:
        raise ValueError("interaction weights must be >= 0")
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest finite scores, best first (ties broken by lower index: deterministic).

    Serving ranks one shopper's 100k-item row per request, so a long row is first cut to a few hundred
    candidates by a threshold read off a strided sample (a cheap compare instead of a full partition);
    the cut is exact whenever at least n scores pass it, else the full row is used. The n-th largest
    value then comes from `np.partition` (values only), keeping what beats it plus the lowest-index ties."""
    finite = np.isfinite(scores)
    if not finite.all():
        kept = np.flatnonzero(finite)
        return kept[top_n(scores[kept], n)]
    if scores.size >= _SAMPLE_ABOVE * n:
        step = scores.size // (_SAMPLE_ABOVE // 2 * n)
        sample = np.sort(scores[::step])
        cut = np.flatnonzero(scores >= sample[-1 - 2 * n // step])
        if n <= cut.size <= scores.size // 4:  # else heavy ties at the threshold: no gain
            return cut[_top_n_full(scores[cut], n)]
    return _top_n_full(scores, n)


def top_n_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_n` of every row of a (users, items) block at once: (cols, counts), where
    `cols[i, :counts[i]]` equals `top_n(scores[i], n)` (the rest is -1).

    Batch scoring ranks a million rows; a Python call per row cost more than the matrix product. Each
    row's threshold is its `_ROW_CUT`-th largest score among every (n // 2)-th item (about 4n items
    pass it); the passing cells of the whole block are found with one `nonzero` over the mask read as
    64-bit words, and ordered with one `lexsort` (row, score down, index up). The cut is exact when at
    least n scores pass it and all of them are finite; other rows (or rows where ties make the cut
    useless, more than a quarter passing) go through `top_n` one by one."""
    rows, m = scores.shape
    cols = np.full((rows, min(n, m)), -1, dtype=np.int64)
    counts = np.zeros(rows, dtype=np.int64)
    fast = np.zeros(rows, dtype=bool)
    sample = scores[:, :: max(1, n // 2)]
    if rows and m >= _SAMPLE_ABOVE * n and sample.shape[1] > _ROW_CUT:
        width = -(-m // 8) * 8  # whole 64-bit words per row
        cut = np.partition(sample, sample.shape[1] - _ROW_CUT, axis=1)[:, sample.shape[1] - _ROW_CUT]
        passing = np.zeros((rows, width), dtype=bool)
        np.greater_equal(scores, cut[:, None], out=passing[:, :m])
        passed = np.count_nonzero(passing, axis=1)
        passing[passed > m // 4] = False  # heavy ties: too many cells to gather
        words = np.flatnonzero(passing.view(np.uint64))
        cells = (words[:, None] * 8 + np.arange(8)).ravel()
        cells = cells[passing.ravel()[cells]]
        del passing
        r, c = np.divmod(cells, width)
        values = scores[r, c]
        fast = (passed >= n) & (passed <= m // 4)
        fast[r[~np.isfinite(values)]] = False
        keep = fast[r]
        r, c, values = r[keep], c[keep], values[keep]
        order = np.lexsort((c, -values, r))
        r, c = r[order], c[order]
        rank = np.arange(len(r)) - np.searchsorted(r, np.arange(rows))[r]
        first = rank < n
        cols[r[first], rank[first]] = c[first]
        counts[fast] = n
    for i in np.flatnonzero(~fast):
        best = top_n(scores[i], n)
        cols[i, : len(best)] = best
        counts[i] = len(best)
    return cols, counts


def _top_n_full(scores: np.ndarray, n: int) -> np.ndarray:
    if scores.size > n:
        kth = np.partition(scores, scores.size - n)[scores.size - n]
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)[: n - above.size]
        best = np.concatenate((above, ties))
    else:
        best = np.arange(scores.size)
    return best[np.lexsort((best, -scores[best]))]


def check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


class PersistentRecommender(BaseEstimator, Recommender):
    """scikit-learn parameters plus the artifact format: every CrossCart model saves and loads alike."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_index_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() first")

    def knows_user(self, user_id: str) -> bool:
        return user_id in getattr(self, "user_index_", ())

    # persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def save(self, path: str | Path) -> None:
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        artifact = {
            "format": ARTIFACT_FORMAT,
            "class": type(self).__name__,
            "params": self.get_params(deep=False),
            "state": self._state(),
        }
        with atomic_path(path) as tmp:  # a full disk leaves the previous artifact, not half of this one
            joblib.dump(artifact, tmp, compress=3)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        artifact = read_artifact(path, ARTIFACT_FORMAT, "recommender")
        if artifact["class"] != cls.__name__:
            raise ValueError(f"{path} holds a {artifact['class']}, not a {cls.__name__}")
        return cls._from_artifact(artifact)

    @classmethod
    def _from_artifact(cls, artifact: dict[str, Any]) -> Self:
        model = cls(**artifact["params"])
        for key, value in artifact["state"].items():
            setattr(model, key, value)
        return model


class MatrixRecommender(PersistentRecommender):
    """Base for models that can score every known item for a known user.

    Subclasses implement `_fit(data, matrix)`, `_score_users(rows) -> (len(rows), n_items)` and
    `_item_scores(col) -> (n_items,)`; `fit` stores the id maps and the seen matrix `user_items_`.
    """

    def fit(self, data: InteractionData) -> Self:
        matrix = check_data(data)
        self.user_ids_ = np.asarray(data.user_ids)
        self.item_ids_ = np.asarray(data.item_ids)
        self.user_index_ = dict(data.user_index)
        self.item_index_ = dict(data.item_index)
        self.user_items_ = matrix
        self._fit(data, matrix)
        return self

    @abstractmethod
    def _fit(self, data: InteractionData, matrix: sp.csr_matrix) -> None:
        """Learn the model state from the checked matrix (and the optional side tables in `data`)."""

    @abstractmethod
    def _score_users(self, rows: np.ndarray) -> np.ndarray:
        """Scores of every item for the given user rows, shape (len(rows), n_items); higher is better."""

    @abstractmethod
    def _item_scores(self, col: int) -> np.ndarray:
        """Similarity of every item to item `col`, shape (n_items,)."""

    def _start_request(
        self, user_ids: Sequence[str], n: int, candidates: Collection[str] | None
    ) -> tuple[int, list[Ranked], list[tuple[int, int]], np.ndarray | None]:
        """Validate a `recommend` call: (n, an empty list per user, (position, row) of the users known
        at fit time, the allowed-items mask or None)."""
        self._check_fitted()
        n = check_n(n)
        if isinstance(user_ids, str):
            raise TypeError("user_ids must be a sequence of ids, not a single string")
        out: list[Ranked] = [[] for _ in user_ids]
        known = [(pos, self.user_index_[u]) for pos, u in enumerate(user_ids) if u in self.user_index_]
        return n, out, known, self._candidate_mask(candidates)

    def _candidate_mask(self, candidates: Collection[str] | None) -> np.ndarray | None:
        if candidates is None:
            return None
        mask = np.zeros(len(self.item_ids_), dtype=bool)
        cols = [self.item_index_[c] for c in candidates if c in self.item_index_]
        mask[cols] = True
        return mask

    def recommend(
        self,
        user_ids: Sequence[str],
        n: int = 10,
        exclude_seen: bool = True,
        candidates: Collection[str] | None = None,
    ) -> list[Ranked]:
        n, out, known, allowed = self._start_request(user_ids, n, candidates)
        if allowed is not None and not allowed.any():
            return out
        positions = [pos for pos, _ in known]
        rows = np.fromiter((r for _, r in known), dtype=np.int64, count=len(known))
        for block, cols, counts, scores in self.ranked_blocks(rows, n, exclude_seen, allowed):
            for k, pos in enumerate(positions[block.start : block.stop]):
                best = cols[k, : counts[k]]
                out[pos] = [(str(self.item_ids_[j]), float(scores[k, j])) for j in best]
        return out

    def ranked_blocks(
        self, rows: np.ndarray, n: int, exclude_seen: bool = True, allowed: np.ndarray | None = None
    ):
        """`recommend`'s ranking as arrays, `_BATCH` user rows at a time: yields (slice of `rows`,
        item columns (k, n) from `top_n_rows`, their counts, the block's scores). Batch scoring reads
        these directly instead of building a list of tuples per shopper."""
        for start in range(0, len(rows), _BATCH):
            block = rows[start : start + _BATCH]
            scores = np.asarray(self._score_users(block))
            if not np.issubdtype(scores.dtype, np.floating):
                scores = scores.astype(np.float64)
            if exclude_seen:
                seen = self.user_items_[block]
                scores[np.repeat(np.arange(len(block)), np.diff(seen.indptr)), seen.indices] = -np.inf
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            cols, counts = top_n_rows(scores, n)
            yield slice(start, start + len(block)), cols, counts, scores

    def scored_items(self) -> np.ndarray:
        self._check_fitted()
        return self.item_ids_

    def user_scores(self, user_id: str) -> np.ndarray | None:
        """Every item's score for one user (seen items included), or None for an unknown user.

        The serving path scores one uncached shopper per request: this is `recommend`'s scoring without
        the batching, the seen-item mask and the id lists, and the same `_score_users` arithmetic, so
        `item_ids_[top_n(user_scores(u), n)]` equals `recommend([u], n, exclude_seen=False)`."""
        self._check_fitted()
        row = self.user_index_.get(user_id)
        if row is None:
            return None
        return np.asarray(self._score_users(np.array([row], dtype=np.int64)))[0]

    def similar_items(self, item_id: str, n: int = 10) -> Ranked:
        self._check_fitted()
        n = check_n(n)
        col = self.item_index_.get(item_id)
        if col is None:
            return []
        scores = np.asarray(self._item_scores(col), dtype=np.float64).copy()
        scores[col] = -np.inf
        return [(str(self.item_ids_[j]), float(scores[j])) for j in top_n(scores, n)]
