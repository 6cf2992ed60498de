"""Block ranking (`top_n_rows`, `ranked_blocks`) gives exactly the per-row `top_n` lists it replaced."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from features.interactions import InteractionData
from models.recommenders.common import top_n, top_n_rows
from models.recommenders.factorization import ALSRecommender
from training.batch_scoring import read_scores, score_all


def _block(rng, m: int) -> np.ndarray:
    rows = [
        rng.standard_normal(m),
        rng.integers(0, 20, m).astype(np.float64),  # heavy ties: the sampled cut is useless
        np.zeros(m),
        np.arange(m, dtype=np.float64),
        np.full(m, -np.inf),  # every item seen: nothing to rank
        np.where(rng.random(m) < 0.999, -np.inf, rng.standard_normal(m)),  # fewer finite than n
        np.where(rng.random(m) < 0.01, np.nan, rng.standard_normal(m)),
        np.where(rng.random(m) < 0.01, np.inf, rng.standard_normal(m)),
    ]
    spread = rng.standard_normal((24, m))
    spread[rng.random((24, m)) < 0.3] = -np.inf  # seen items masked
    return np.vstack([*rows, spread]).astype(np.float32)


def test_block_top_n_equals_top_n_of_each_row():
    rng = np.random.default_rng(0)
    for m in (50, 3_000, 20_000):
        scores = _block(rng, m)
        for n in (1, 10, 20, 100):
            cols, counts = top_n_rows(scores, n)
            for i, row in enumerate(scores):
                assert cols[i, : counts[i]].tolist() == top_n(row, n).tolist(), (m, n, i)
                assert (cols[i, counts[i] :] == -1).all()


def _fitted_als(rng) -> ALSRecommender:
    users, items = 700, 40_000
    matrix = sp.random(users, items, density=0.002, format="csr", random_state=1, dtype=np.float32)
    matrix.data[:] = rng.integers(1, 4, matrix.nnz)
    data = InteractionData(
        matrix=matrix,
        user_ids=np.array([f"s{i:04d}" for i in range(users)], dtype=object),
        item_ids=np.array([f"p{i:05d}" for i in range(items)], dtype=object),
    )
    return ALSRecommender(factors=16, iterations=3).fit(data)


def _per_row_lists(model: ALSRecommender, users: list[str], n: int) -> list[list[tuple[str, float]]]:
    """The ranking before block ranking: scores of 512 users at a time copied to float64, seen items
    at -inf, then `top_n` row by row."""
    out = []
    for start in range(0, len(users), 512):
        rows = np.array([model.user_index_[u] for u in users[start : start + 512]])
        scores = np.asarray(model._score_users(rows), dtype=np.float64)
        for k, row in enumerate(rows):
            scores[k, model.user_items_[row].indices] = -np.inf
            out.append([(str(model.item_ids_[j]), float(scores[k, j])) for j in top_n(scores[k], n)])
    return out


def test_recommend_and_batch_scoring_keep_the_per_row_lists(tmp_path):
    model = _fitted_als(np.random.default_rng(0))
    users = list(model.user_ids_)
    expected = _per_row_lists(model, users, 20)
    assert model.recommend(users, n=20) == expected
    lists = read_scores(score_all(model, tmp_path / "lists", n=20, chunk_size=300))
    got = [
        list(zip(g["product_id"], g["score"], strict=True)) for _, g in lists.groupby("shopper_id", sort=True)
    ]
    chunks = [_per_row_lists(model, users[s : s + 300], 20) for s in range(0, len(users), 300)]
    assert got == [lst for chunk in chunks for lst in chunk]  # score_all ranks each chunk as recommend does
    assert lists.groupby("shopper_id")["rank"].apply(list).map(lambda r: r == list(range(1, 21))).all()
