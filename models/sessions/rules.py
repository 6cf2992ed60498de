"""Sequential rules (Ludewig & Jannach 2018, session-rec's `sr`): item b follows item a within `steps`
clicks; the rule a -> b gains weight 1/distance per occurrence; each item keeps its `pruning` strongest
rules. The current session's last item picks the rules."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.sessions.base import SessionData, SessionRecommender


class SequentialRules(SessionRecommender):
    name = "sr"

    def __init__(self, steps: int = 10, pruning: int = 20):
        self.steps = steps
        self.pruning = pruning

    def _fit(self, data: SessionData) -> None:
        if self.steps < 1:
            raise ValueError("steps must be >= 1")
        session_of = np.repeat(np.arange(data.n_sessions), np.diff(data.indptr))
        rows, cols, weights = [], [], []
        for distance in range(1, self.steps + 1):
            later = np.arange(distance, len(data.items))
            same = session_of[later] == session_of[later - distance]
            later = later[same]
            rows.append(data.items[later - distance])
            cols.append(data.items[later])
            weights.append(np.full(len(later), 1.0 / distance))
        rules = sp.csr_matrix(
            (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
            shape=(data.n_items, data.n_items),
        )
        rules.sum_duplicates()
        self.rules_ = _prune(rules, self.pruning) if self.pruning else rules

    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = int(codes[-1])
        start, end = self.rules_.indptr[last], self.rules_.indptr[last + 1]
        return self.rules_.indices[start:end].astype(np.int64), self.rules_.data[start:end]


def _prune(rules: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Each row's `keep` largest entries (ties to the lower column)."""
    row_of = np.repeat(np.arange(rules.shape[0]), np.diff(rules.indptr))
    order = np.lexsort((rules.indices, -rules.data, row_of))
    rank = np.arange(len(order)) - np.repeat(rules.indptr[:-1], np.diff(rules.indptr))
    chosen = order[rank < keep]
    return sp.csr_matrix((rules.data[chosen], (row_of[chosen], rules.indices[chosen])), shape=rules.shape)
