"""Session neighbourhood models: V-SKNN (Ludewig & Jannach 2018) and STAN (Garg et al., SIGIR 2019).

Both follow session-rec's reference code (Ludewig et al., UMUAI 2021) and its default parameters:
candidate neighbours are the `sample_size` most recent training sessions sharing an item with the current
session; the `k` most similar become neighbours; each neighbour's items score by its similarity times a
decay. Everything per request is a few numpy passes over inverted indexes (item -> sessions, newest
first; session -> distinct items with their last click position), so a request costs O(L * sample_size)
for a session of L distinct items, independent of catalog size.
"""

from __future__ import annotations

import math

import numpy as np

from models.sessions.base import SessionData, SessionRecommender, segments

_POSITION_WEIGHTS = {  # weight of the item clicked at position i (1-based) of a session of length n
    "div": lambda i, n: i / n,
    "same": lambda i, n: np.ones_like(i, dtype=np.float64),
    "log": lambda i, n: 1.0 / (np.log10(n - i + 1.0) + 1.0),
    "quadratic": lambda i, n: (i / n) ** 2,
    "linear": lambda i, n: np.maximum(1.0 - 0.1 * (n - i), 0.0),
}
_SCORE_DECAYS = {  # decay by step back from the session's end to the newest item shared with a neighbour
    "div": lambda s: 1.0 / s,
    "same": lambda s: np.ones_like(s, dtype=np.float64),
    "log": lambda s: 1.0 / np.log10(s + 1.7),
    "quadratic": lambda s: 1.0 / (s * s),
    "linear": lambda s: np.maximum(1.0 - 0.1 * s, 0.0),
}


class _NeighbourModel(SessionRecommender):
    """Index building and candidate sampling shared by V-SKNN and STAN."""

    k: int
    sample_size: int

    def _fit(self, data: SessionData) -> None:
        if self.k < 1 or self.sample_size < 1:
            raise ValueError("k and sample_size must be >= 1")
        lengths = np.diff(data.indptr)
        session_of = np.repeat(np.arange(data.n_sessions), lengths)
        position = np.arange(len(data.items)) - np.repeat(data.indptr[:-1], lengths) + 1
        # one entry per (session, item), holding the item's last click position in the session
        order = np.lexsort((position, data.items, session_of))
        s, i, p = session_of[order], data.items[order], position[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = (s[1:] != s[:-1]) | (i[1:] != i[:-1])
        s, i, p = s[last], i[last], p[last]
        self.uniq_indptr_ = np.concatenate([[0], np.cumsum(np.bincount(s, minlength=data.n_sessions))])
        self.uniq_items_, self.uniq_lastpos_ = i.astype(np.int32), p.astype(np.int32)
        self.session_time_ = data.session_time
        self.n_unique_ = np.diff(self.uniq_indptr_)
        by_item = np.lexsort((s, -data.session_time[s], i))  # newest sessions first within an item
        self.inv_indptr_ = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=data.n_items))])
        self.inv_sessions_ = s[by_item].astype(np.int32)

    def _candidates(self, items: np.ndarray) -> np.ndarray:
        """The `sample_size` most recent sessions holding any of `items` (exact: each item contributes at
        most its own `sample_size` newest sessions, which contain the union's newest)."""
        starts = self.inv_indptr_[items]
        ends = np.minimum(self.inv_indptr_[items + 1], starts + self.sample_size)
        pieces = [self.inv_sessions_[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        cand = np.unique(np.concatenate(pieces)) if pieces else np.empty(0, dtype=np.int32)
        if len(cand) > self.sample_size:
            cand = cand[np.argpartition(-self.session_time_[cand], self.sample_size - 1)[: self.sample_size]]
        return cand

    def _session_view(self, codes: np.ndarray):
        """Distinct items of the current session (sorted) with their last 1-based click position."""
        n = len(codes)
        rev_items, rev_first = np.unique(codes[::-1], return_index=True)
        return rev_items, n - rev_first, n

    def _neighbours(self, codes: np.ndarray, similarity):
        """(neighbour sessions, their similarity, per-neighbour matched info) for the top-k by
        `similarity(cand, owner, matched_query_index, matched_lastpos, q_items, q_pos, n)`."""
        q_items, q_pos, n = self._session_view(codes)
        cand = self._candidates(q_items)
        if len(cand) == 0:
            return None
        flat, owner = segments(self.uniq_indptr_, cand)
        items = self.uniq_items_[flat]
        idx = np.minimum(np.searchsorted(q_items, items), len(q_items) - 1)
        matched = q_items[idx] == items
        sims, extra = similarity(
            cand, owner[matched], idx[matched], self.uniq_lastpos_[flat[matched]], q_pos, n
        )
        if len(cand) > self.k:
            top = np.argpartition(-sims, self.k - 1)[: self.k]
        else:
            top = np.arange(len(cand))
        top = top[sims[top] > 0]
        return cand[top], sims[top], extra[top]

    @staticmethod
    def _aggregate(items: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uniq, inverse = np.unique(items, return_inverse=True)
        return uniq.astype(np.int64), np.bincount(inverse, weights=weights)


class VSKNN(_NeighbourModel):
    """Vector multiplication session kNN: current-session items weigh by position (`weighting`, last
    click heaviest); a neighbour's items score by similarity times `weighting_score` of how far back the
    newest shared item lies. session-rec's VMContextKNN defaults."""

    name = "vsknn"

    def __init__(
        self, k: int = 100, sample_size: int = 1000, weighting: str = "div", weighting_score: str = "div"
    ):
        self.k = k
        self.sample_size = sample_size
        self.weighting = weighting
        self.weighting_score = weighting_score

    def _fit(self, data: SessionData) -> None:
        if self.weighting not in _POSITION_WEIGHTS or self.weighting_score not in _SCORE_DECAYS:
            raise ValueError(
                f"weighting and weighting_score must be among {sorted(_POSITION_WEIGHTS)}; "
                f"got {self.weighting!r}, {self.weighting_score!r}"
            )
        super()._fit(data)

    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        position_weight = _POSITION_WEIGHTS[self.weighting]

        def similarity(cand, owner, qidx, _lastpos, q_pos, n):
            weights = position_weight(q_pos.astype(np.float64), float(n))
            sims = np.bincount(owner, weights=weights[qidx], minlength=len(cand)) / len(q_pos)
            newest = np.zeros(len(cand), dtype=np.int64)
            np.maximum.at(newest, owner, q_pos[qidx])
            return sims, n - newest + 1  # step back to the newest shared item (1 = the last click)

        found = self._neighbours(codes, similarity)
        if found is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        neighbours, sims, steps = found
        flat, owner = segments(self.uniq_indptr_, neighbours)
        weights = (sims * _SCORE_DECAYS[self.weighting_score](steps.astype(np.float64)))[owner]
        return self._aggregate(self.uniq_items_[flat], weights)


class STAN(_NeighbourModel):
    """Sequence and Time Aware Neighbourhood: position weight exp((i - n)/lambda_spw) in the current
    session, cosine similarity, neighbour recency exp(-age/lambda_snh) (days), and each neighbour item
    weighted exp(-|distance to the newest shared item| / lambda_inh). session-rec's defaults.

    Age is measured from the newest training session: one request's neighbours all share the offset, so
    the ranking equals measuring from the request time, and scores never underflow for an old model."""

    name = "stan"

    def __init__(
        self,
        k: int = 100,
        sample_size: int = 5000,
        lambda_spw: float = 1.02,
        lambda_snh: float = 5.0,
        lambda_inh: float = 2.05,
    ):
        self.k = k
        self.sample_size = sample_size
        self.lambda_spw = lambda_spw
        self.lambda_snh = lambda_snh
        self.lambda_inh = lambda_inh

    def _fit(self, data: SessionData) -> None:
        if min(self.lambda_spw, self.lambda_snh, self.lambda_inh) <= 0:
            raise ValueError("lambda_spw, lambda_snh and lambda_inh must be positive")
        super()._fit(data)
        newest = float(data.session_time.max())
        self.recency_ = np.exp(-(newest - data.session_time) / (self.lambda_snh * 86_400.0))

    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def similarity(cand, owner, qidx, lastpos, q_pos, n):
            weights = np.exp((q_pos - n) / self.lambda_spw)
            dot = np.bincount(owner, weights=weights[qidx], minlength=len(cand))
            sims = dot / (math.sqrt(float(weights @ weights)) * np.sqrt(self.n_unique_[cand]))
            sims *= self.recency_[cand]
            anchor = np.zeros(len(cand), dtype=np.int64)
            np.maximum.at(anchor, owner, lastpos)
            return sims, anchor  # anchor: last position in the neighbour of an item shared with us

        found = self._neighbours(codes, similarity)
        if found is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        neighbours, sims, anchors = found
        flat, owner = segments(self.uniq_indptr_, neighbours)
        distance = np.abs(self.uniq_lastpos_[flat] - anchors[owner])
        weights = sims[owner] * np.exp(-distance / self.lambda_inh)
        return self._aggregate(self.uniq_items_[flat], weights)
