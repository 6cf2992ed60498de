"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): closed-form item x item model.

B = I - P diag(1/diag(P)) with P = (X^T X + lambda I)^-1, and the diagonal of B forced to zero, so an
item never recommends itself. On catalogues up to ~20k items it is the strongest single model here and
fits in seconds; the dense item x item matrix is why `max_items` refuses larger catalogues.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from features.interactions import InteractionData
from models.recommenders.common import MatrixRecommender


class EASERecommender(MatrixRecommender):
    """Closed-form linear autoencoder. `l2` is lambda (larger = smoother, favours popular items)."""

    name = "ease"

    def __init__(self, l2: float = 400.0, binary: bool = True, max_items: int = 20_000):
        self.l2 = l2
        self.binary = binary
        self.max_items = max_items

    def _fit(self, data: InteractionData, matrix: sp.csr_matrix) -> None:
        if self.l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {self.l2}")
        n_items = matrix.shape[1]
        if n_items > self.max_items:
            raise ValueError(
                f"EASE needs a dense {n_items} x {n_items} matrix; the limit is max_items={self.max_items}. "
                "Use itemknn or als for this catalogue, or raise max_items if memory allows "
                f"(~{8 * n_items**2 / 1e9:.1f} GB)."
            )
        x = matrix.copy()
        if self.binary:
            x.data[:] = 1.0
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices(n_items)] += self.l2
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        b = p / -np.diag(p)
        b[np.diag_indices(n_items)] = 0.0
        # LAPACK returns Fortran order; scoring (sparse rows @ weights) needs C order to avoid a copy
        self.weights_ = np.ascontiguousarray(b, dtype=np.float32)
        self.input_ = x

    def _score_users(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.input_[rows] @ self.weights_)

    def _item_scores(self, col: int) -> np.ndarray:
        return self.weights_[col]
