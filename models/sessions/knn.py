"""Session neighbourhood models: V-SKNN (Ludewig & Jannach 2018), STAN (Garg et al., SIGIR 2019) and
VSTAN (Latifi, Mauro & Jannach 2021: STAN plus V-SKNN's decay and an IDF weight).

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
    """Index building, candidate sampling and neighbour selection shared by V-SKNN and STAN.

    Sessions are renumbered by their last click time, so "most recent" is "highest number" and each item's
    session list (ascending) ends with its newest sessions. With theta the `sample_size`-th highest session
    number holding any current item, the candidates are exactly each item's sessions numbered >= theta, so
    similarities accumulate straight from the item lists, never touching a candidate's own items.
    """

    k: int
    sample_size: int

    def _fit(self, data: SessionData) -> None:
        if self.k < 1 or self.sample_size < 1:
            raise ValueError("k and sample_size must be >= 1")
        lengths = np.diff(data.indptr)
        by_time = np.lexsort((np.arange(data.n_sessions), data.session_time))
        number = np.empty(data.n_sessions, dtype=np.int64)
        number[by_time] = np.arange(data.n_sessions)
        session_of = number[np.repeat(np.arange(data.n_sessions), lengths)]
        position = np.arange(len(data.items)) - np.repeat(data.indptr[:-1], lengths) + 1
        # one entry per (session, item), holding the item's last click position in the session
        order = np.lexsort((position, data.items, session_of))
        s, i, p = session_of[order], data.items[order], position[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = (s[1:] != s[:-1]) | (i[1:] != i[:-1])
        s, i, p = s[last], i[last], p[last]
        self.uniq_indptr_ = np.concatenate([[0], np.cumsum(np.bincount(s, minlength=data.n_sessions))])
        self.uniq_items_, self.uniq_lastpos_ = i.astype(np.int32), p.astype(np.int32)
        self.session_time_ = data.session_time[by_time]
        self.n_unique_ = np.diff(self.uniq_indptr_)
        by_item = np.lexsort((s, i))
        self.inv_indptr_ = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=data.n_items))])
        self.inv_sessions_ = s[by_item].astype(np.int32)

    @staticmethod
    def _session_view(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Distinct items of the current session (sorted), their last 1-based click position, length."""
        n = len(codes)
        rev_items, rev_first = np.unique(codes[::-1], return_index=True)
        return rev_items, n - rev_first, n

    def _candidate_sums(self, q_items: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The `sample_size` most recent sessions sharing an item with the session, and for each the sum
        of `weights` over the shared items."""
        ends = self.inv_indptr_[q_items + 1]
        starts = np.maximum(self.inv_indptr_[q_items], ends - self.sample_size)
        pieces = [self.inv_sessions_[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        ids = np.concatenate(pieces)
        owner_weight = np.repeat(weights, ends - starts)
        cand, inverse = np.unique(ids, return_inverse=True)
        if len(cand) > self.sample_size:
            drop = len(cand) - self.sample_size
            keep = inverse >= drop
            cand, inverse, owner_weight = cand[drop:], inverse[keep] - drop, owner_weight[keep]
        return cand, np.bincount(inverse, weights=owner_weight, minlength=len(cand))

    def _top_k(self, cand: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(cand) > self.k:
            top = np.argpartition(-sims, self.k - 1)[: self.k]
            cand, sims = cand[top], sims[top]
        positive = sims > 0
        return cand[positive], sims[positive]

    def _neighbour_items(self, neighbours: np.ndarray, q_items: np.ndarray, *per_shared):
        """The neighbours' distinct items (flat positions, owning neighbour) and, for each function of
        `per_shared` (flat positions, index in `q_items`), its largest value per neighbour over the items
        the neighbour shares with the session."""
        flat, owner = segments(self.uniq_indptr_, neighbours)
        items = self.uniq_items_[flat]
        idx = np.minimum(np.searchsorted(q_items, items), len(q_items) - 1)
        shared = q_items[idx] == items
        first = np.concatenate([[0], np.cumsum(self.n_unique_[neighbours])[:-1]])
        maxima = [np.maximum.reduceat(np.where(shared, f(flat, idx), 0), first) for f in per_shared]
        return flat, owner, *maxima

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
        q_items, q_pos, n = self._session_view(codes)
        weights = _POSITION_WEIGHTS[self.weighting](q_pos.astype(np.float64), float(n))
        cand, sums = self._candidate_sums(q_items, weights)
        neighbours, sims = self._top_k(cand, sums / len(q_items))
        if len(neighbours) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        flat, owner, newest = self._neighbour_items(neighbours, q_items, lambda _flat, idx: q_pos[idx])
        steps = (n - newest + 1).astype(np.float64)  # 1 when the neighbour holds the last click
        weights = (sims * _SCORE_DECAYS[self.weighting_score](steps))[owner]
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
        self.recency_ = np.exp(-(newest - self.session_time_) / (self.lambda_snh * 86_400.0))

    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q_items, q_pos, n = self._session_view(codes)
        weights = np.exp((q_pos - n) / self.lambda_spw)
        cand, dots = self._candidate_sums(q_items, weights)
        sims = dots / (math.sqrt(float(weights @ weights)) * np.sqrt(self.n_unique_[cand]))
        neighbours, sims = self._top_k(cand, sims * self.recency_[cand])
        if len(neighbours) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        # anchor: the last position in the neighbour of an item it shares with the session
        flat, owner, anchors = self._neighbour_items(
            neighbours, q_items, lambda flat, _idx: self.uniq_lastpos_[flat]
        )
        distance = np.abs(self.uniq_lastpos_[flat] - anchors[owner])
        return self._aggregate(self.uniq_items_[flat], sims[owner] * np.exp(-distance / self.lambda_inh))


class VSTAN(STAN):
    """STAN with V-SKNN's extensions (session-rec's VSKNN_STAN, the best neighbourhood model of Latifi,
    Mauro & Jannach 2021): each neighbour's items also weigh exp((p - n)/lambda_ipw), p the current
    session's newest position holding an item the neighbour shares (V-SKNN's score decay), and
    1 + lambda_idf x log(sessions / clicks of the item) (rare items count more; 0 switches it off).
    session-rec's defaults."""

    name = "vstan"

    def __init__(
        self,
        k: int = 100,
        sample_size: int = 5000,
        lambda_spw: float = 1.02,
        lambda_snh: float = 5.0,
        lambda_inh: float = 2.05,
        lambda_ipw: float = 1.02,
        lambda_idf: float = 5.0,
    ):
        super().__init__(k, sample_size, lambda_spw, lambda_snh, lambda_inh)
        self.lambda_ipw = lambda_ipw
        self.lambda_idf = lambda_idf

    def _fit(self, data: SessionData) -> None:
        if self.lambda_ipw <= 0 or self.lambda_idf < 0:
            raise ValueError("lambda_ipw must be positive and lambda_idf non-negative")
        super()._fit(data)
        clicks = np.bincount(data.items, minlength=data.n_items).astype(np.float64)
        idf = np.log(data.n_sessions / np.maximum(clicks, 1.0))
        self.item_weight_ = 1.0 + self.lambda_idf * idf

    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q_items, q_pos, n = self._session_view(codes)
        weights = np.exp((q_pos - n) / self.lambda_spw)
        cand, dots = self._candidate_sums(q_items, weights)
        sims = dots / (math.sqrt(float(weights @ weights)) * np.sqrt(self.n_unique_[cand]))
        neighbours, sims = self._top_k(cand, sims * self.recency_[cand])
        if len(neighbours) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        flat, owner, anchors, newest = self._neighbour_items(
            neighbours, q_items, lambda flat, _idx: self.uniq_lastpos_[flat], lambda _flat, idx: q_pos[idx]
        )
        items = self.uniq_items_[flat]
        distance = np.abs(self.uniq_lastpos_[flat] - anchors[owner])
        per_neighbour = sims * np.exp((newest - n) / self.lambda_ipw)
        weights = per_neighbour[owner] * np.exp(-distance / self.lambda_inh) * self.item_weight_[items]
        return self._aggregate(items, weights)
