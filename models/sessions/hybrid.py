"""A weighted hybrid of session models (session-rec's `WeightedHybrid`): each part's scores are scaled
to a best score of 1 per request, then summed with the part's weight. Neighbourhood models find what
similar visits went on to; sequential rules know what comes right after the last click; together they
beat either on both hit rate and rank in session-rec's comparisons."""

from __future__ import annotations

import numpy as np

from models.sessions.base import SessionData, SessionRecommender


class WeightedHybrid(SessionRecommender):
    name = "hybrid"

    def __init__(
        self,
        models: tuple[str, ...] = ("vstan", "sr"),
        weights: tuple[float, ...] = (0.5, 0.5),
        params: tuple[dict, ...] | None = None,
    ):
        self.models = models
        self.weights = weights
        self.params = params

    def _fit(self, data: SessionData) -> None:
        from models.sessions import make_session_model

        params = self.params or tuple({} for _ in self.models)
        if not self.models or len(self.weights) != len(self.models) or len(params) != len(self.models):
            raise ValueError("give one weight (and one parameter dict, if any) per model")
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError("weights must be non-negative and not all zero")
        self.parts_ = [make_session_model(m, **p).fit(data) for m, p in zip(self.models, params, strict=True)]

    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cands, scores = [], []
        for part, weight in zip(self.parts_, self.weights, strict=True):
            if weight == 0:
                continue
            cand, score = part._scores(codes)
            if len(cand) and score.max() > 0:
                cands.append(cand)
                scores.append(score * (weight / score.max()))
        if not cands:
            return np.empty(0, dtype=np.int64), np.empty(0)
        uniq, inverse = np.unique(np.concatenate(cands), return_inverse=True)
        return uniq.astype(np.int64), np.bincount(inverse, weights=np.concatenate(scores))
