"""Matrix factorisation with implicit's CPU solvers: ALS (Hu, Koren, Volinsky 2008) and BPR (Rendle 2009).

Only the learned factors are kept (numpy arrays), so artifacts do not depend on implicit's own pickles.
Both default to one thread: the ALS conjugate-gradient solver is deterministic at any thread count, but
BPR's parallel SGD is not, and the shared CPU budget is small anyway.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight

from features.interactions import InteractionData
from models.recommenders.common import MatrixRecommender

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns (and slows) when BLAS threads
_UPDATES = 1_000_000  # BPR's default SGD budget (tuned on MovieLens 100K and the tiny marketplace)


class _FactorModel(MatrixRecommender):
    def _score_users(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[rows] @ self.item_factors_.T

    def _item_scores(self, col: int) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors_, axis=1)
        norms[norms == 0] = 1.0
        return (self.item_factors_ @ self.item_factors_[col]) / (norms * norms[col])

    def _store(self, model) -> None:
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)


class ALSRecommender(_FactorModel):
    """Implicit-feedback ALS. Confidence = 1 + alpha * weight, where weight is the (BM25-weighted when
    `bm25=True`) interaction strength."""

    name = "als"

    def __init__(
        self,
        factors: int = 128,
        regularization: float = 40.0,
        alpha: float = 2.0,
        iterations: int = 20,
        bm25: bool = True,
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        binary: bool = True,
        num_threads: int = 1,
        random_state: int | None = 42,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.bm25 = bm25
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.binary = binary
        self.num_threads = num_threads
        self.random_state = random_state

    def _fit(self, data: InteractionData, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        x = matrix.copy()
        if self.binary:
            x.data[:] = 1.0
        if self.bm25:
            x = sp.csr_matrix(bm25_weight(x, K1=self.bm25_k1, B=self.bm25_b), dtype=np.float32)
        model = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            num_threads=self.num_threads,
            random_state=self.random_state,
        )
        model.fit(x, show_progress=False)
        self._store(model)


class BPRRecommender(_FactorModel):
    """Bayesian Personalised Ranking by SGD over (user, seen item, unseen item) triples.

    Each epoch makes one update per interaction, so a fixed epoch count under-trains small data and
    over-fits large data: `iterations=None` runs enough epochs for ~`_UPDATES` updates (at least 50).
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.001,
        iterations: int | None = None,
        num_threads: int = 1,
        random_state: int | None = 42,
    ):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.num_threads = num_threads
        self.random_state = random_state

    def _fit(self, data: InteractionData, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        x = matrix.copy()
        x.data[:] = 1.0  # BPR samples positives; weights are meaningless to it
        iterations = self.iterations or max(50, round(_UPDATES / x.nnz))
        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=iterations,
            num_threads=self.num_threads,
            random_state=self.random_state,
        )
        model.fit(x, show_progress=False)
        self._store(model)
