"""Item-to-item nearest neighbours on co-occurrence ("shoppers who bought this also bought").

Similarity between item columns of the shopper x item matrix, cosine or BM25-weighted (implicit's
`bm25_weight`, which damps heavy users and very popular items), keeping the `k` nearest neighbours per
item. A shopper's score for an item is the sum of its similarities to the items they interacted with.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight
from sklearn.preprocessing import normalize

from features.interactions import InteractionData
from models.recommenders.common import MatrixRecommender

_BLOCK_CELLS = 20_000_000  # dense cells per block when picking the top-k neighbours


def top_k_rows(sim: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest positive entries of each row (the diagonal removed); deterministic ties."""
    n = sim.shape[0]
    block = max(1, _BLOCK_CELLS // max(n, 1))
    rows, cols, vals = [], [], []
    for start in range(0, n, block):
        dense = sim[start : start + block].toarray()
        idx = np.arange(dense.shape[0])
        dense[idx, start + idx] = 0.0
        kk = min(k, n)
        top = (
            np.argpartition(-dense, kk - 1, axis=1)[:, :kk]
            if kk < n
            else np.tile(np.arange(n), (len(idx), 1))
        )
        v = np.take_along_axis(dense, top, axis=1)
        keep = v > 0
        rows.append(np.repeat(start + idx, kk)[keep.ravel()])
        cols.append(top[keep])
        vals.append(v[keep])
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=sim.shape,
        dtype=np.float32,
    )


class ItemKNNRecommender(MatrixRecommender):
    """Item kNN. `weighting`: "cosine" or "bm25" (with `bm25_k1`, `bm25_b`); `k`: neighbourhood size."""

    name = "itemknn"

    def __init__(
        self,
        k: int = 200,
        weighting: str = "bm25",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        binary: bool = True,
    ):
        self.k = k
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.binary = binary

    def _fit(self, data: InteractionData, matrix: sp.csr_matrix) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        x = matrix.copy()
        if self.binary:
            x.data[:] = 1.0
        if self.weighting == "cosine":
            w = normalize(x.tocsc(), norm="l2", axis=0)
        elif self.weighting == "bm25":
            # items are the documents and shoppers the terms, as in implicit's BM25Recommender
            w = sp.csc_matrix(bm25_weight(x.T, K1=self.bm25_k1, B=self.bm25_b).T)
        else:
            raise ValueError(f"weighting must be 'cosine' or 'bm25', got {self.weighting!r}")
        sim = sp.csr_matrix(w.T @ w)
        self.similarity_ = top_k_rows(sim, self.k)
        self.input_ = x

    def _score_users(self, rows: np.ndarray) -> np.ndarray:
        # row i of similarity_ lists i's neighbours: user score for j sums sim(i, j) over seen i
        return (self.input_[rows] @ self.similarity_).toarray()

    def _item_scores(self, col: int) -> np.ndarray:
        """Stored neighbours only: an item outside the k nearest is not "similar" at score 0."""
        row = self.similarity_[col]
        scores = np.full(self.similarity_.shape[1], -np.inf)
        scores[row.indices] = row.data
        return scores
