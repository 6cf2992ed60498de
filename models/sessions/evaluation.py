"""Next-item scoring shared by the evaluation command and the auto-tuned model: for each session
x1..xL and each i < L, rank from the prefix x1..xi and find the rank of x(i+1) (0 when not listed).
HR@k is the share of targets in the top k; MRR@k the mean of 1/rank, 0 beyond k."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from models.sessions.base import SessionData


def prefixes(test: SessionData) -> Iterator[tuple[np.ndarray, int]]:
    """(prefix codes, next code) for every next-item prediction of `test`, session by session."""
    for s in range(test.n_sessions):
        clicks = test.session(s)
        for i in range(1, len(clicks)):
            yield clicks[:i], int(clicks[i])


def target_ranks(
    rank: Callable[[np.ndarray], np.ndarray], test: SessionData
) -> tuple[np.ndarray, np.ndarray]:
    """(1-based rank of each target in `rank(prefix)`'s list or 0, seconds per prediction)."""
    ranks, timings = [], []
    for prefix, target in prefixes(test):
        started = time.perf_counter()
        top = rank(prefix)
        timings.append(time.perf_counter() - started)
        hit = np.flatnonzero(top == target)
        ranks.append(int(hit[0]) + 1 if len(hit) else 0)
    return np.asarray(ranks, dtype=np.int64), np.asarray(timings)


def hit_rate_and_mrr(ranks: np.ndarray, cutoff: int) -> tuple[float, float]:
    inside = (ranks > 0) & (ranks <= cutoff)
    return float(inside.mean()), float(np.where(inside, 1.0 / np.maximum(ranks, 1), 0.0).mean())
