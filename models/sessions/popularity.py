"""Popularity baselines of the session-rec framework: global popularity and session popularity."""

from __future__ import annotations

import numpy as np

from models.sessions.base import SessionData, SessionRecommender


class GlobalPopularity(SessionRecommender):
    """The most clicked items of the training sessions, whatever the current session holds."""

    name = "pop"

    def __init__(self, top_n: int = 100):
        self.top_n = top_n

    def _fit(self, data: SessionData) -> None:
        counts = np.bincount(data.items, minlength=data.n_items).astype(np.float64)
        top = np.lexsort((np.arange(len(counts)), -counts))[: self.top_n]
        self.top_codes_, self.top_scores_ = top.astype(np.int64), counts[top]

    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.top_codes_, self.top_scores_


class SessionPopularity(GlobalPopularity):
    """Items of the current session by how often it clicked them, then popular items (session-rec's
    SessionPop: popularity enters as count/(count+1) < 1, so any session item outranks any other)."""

    name = "spop"

    def _fit(self, data: SessionData) -> None:
        super()._fit(data)
        self.top_scores_ = self.top_scores_ / (self.top_scores_ + 1.0)

    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mine, counts = np.unique(codes, return_counts=True)
        cand = np.concatenate([self.top_codes_, mine])
        scores = np.concatenate([self.top_scores_, counts.astype(np.float64)])
        uniq, inverse = np.unique(cand, return_inverse=True)
        return uniq, np.bincount(inverse, weights=scores)
