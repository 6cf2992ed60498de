"""The uncached single-shopper scoring path must serve exactly what the model's own `recommend` served."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features.interactions import InteractionData
from models.recommenders import make_recommender
from models.recommenders.common import top_n
from serving.catalog import CatalogSnapshot
from serving.model_store import ModelSnapshot
from serving.recommend import Policy, recommend

N_USERS, N_ITEMS = 60, 150


@pytest.fixture(scope="module")
def data() -> InteractionData:
    rng = np.random.default_rng(5)
    users = np.repeat(np.arange(N_USERS), 12)
    items = rng.choice(N_ITEMS, size=len(users), p=np.arange(N_ITEMS, 0, -1) / (N_ITEMS * (N_ITEMS + 1) / 2))
    matrix = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(N_USERS, N_ITEMS))
    matrix.sum_duplicates()
    return InteractionData(
        matrix=matrix,
        user_ids=np.array([f"s{u}" for u in range(N_USERS)], dtype=object),
        item_ids=np.array([f"p{i:03d}" for i in range(N_ITEMS)], dtype=object),
    )


@pytest.fixture(scope="module")
def catalog() -> CatalogSnapshot:
    """The model's items in another order, plus items the model never saw; a fifth unsellable."""
    rng = np.random.default_rng(9)
    ids = [f"p{i:03d}" for i in rng.permutation(N_ITEMS + 30)]
    products = pd.DataFrame(
        {
            "product_id": ids,
            "title": ids,
            "merchant_id": [f"m{i % 40}" for i in range(len(ids))],
            "category_id": [("a", "b", "c")[i % 3] for i in range(len(ids))],
            "origin_country": "JP",
            "price": Decimal("1.00"),
            "fulfillment": ["bonded" if i % 2 else "direct_mail" for i in range(len(ids))],
            "sellable": [i % 5 != 0 for i in range(len(ids))],
            "public": [i % 5 != 0 for i in range(len(ids))],
        }
    )
    categories = pd.DataFrame(
        {"category_id": ["a", "b", "c"], "parent_id": [None] * 3, "repurchasable": [True, False, False]}
    )
    purchases = pd.DataFrame({"shopper_id": ["s1", "s1", "s2"], "product_id": ["p000", "p001", "p002"]})
    return CatalogSnapshot.from_frames(products, categories, purchases=purchases)


class RecommendOnly:
    """The model seen through its `recommend` alone: the serving path before single-row scoring."""

    def __init__(self, model):
        self.model, self.name = model, model.name

    def recommend(self, *args, **kwargs):
        return self.model.recommend(*args, **kwargs)

    def scored_items(self):  # Recommender's default: no single-row scoring
        return None


@pytest.mark.parametrize(
    "name,params",
    [
        ("als", {"factors": 8, "iterations": 3}),
        ("bpr", {"factors": 8, "iterations": 5}),
        ("ease", {}),
        ("itemknn", {"k": 20}),
    ],
)
def test_single_row_scoring_serves_the_same_pages(data, catalog, name, params):
    model = make_recommender(name, **params).fit(data)
    fast = ModelSnapshot(name="m", version="1", recommender=model)
    slow = ModelSnapshot(name="m", version="1", recommender=RecommendOnly(model))
    fast.warm([], 40, catalog)
    assert fast.item_positions(catalog) is not None and slow.item_positions(catalog) is None
    policy = Policy(candidate_pool=40)
    for shopper in ["s0", "s1", "s2", "s17", "s59", "unknown"]:
        fast_pos, fast_scores = fast.top_positions(shopper, 40, catalog)
        slow_pos, slow_scores = slow.top_positions(shopper, 40, catalog)
        assert fast_pos.tolist() == slow_pos.tolist(), shopper
        np.testing.assert_array_equal(fast_scores, slow_scores)
        for filters in ({}, {"category": "b"}, {"fulfillment": "bonded"}):
            a = recommend(catalog, fast, shopper, 10, policy=policy, **filters)
            b = recommend(catalog, slow, shopper, 10, policy=policy, **filters)
            assert [(p.position, p.score, p.reason) for p in a.picks] == [
                (p.position, p.score, p.reason) for p in b.picks
            ]
    assert fast.top_positions("s3", 40, catalog)[1] is fast.top_positions("s3", 40, catalog)[1]  # memoised


def test_top_n_keeps_the_largest_finite_scores_with_lowest_index_ties():
    scores = np.array([0.5, np.inf, 2.0, 2.0, -np.inf, np.nan, 1.0, 2.0, 0.5], dtype=np.float32)
    assert top_n(scores, 2).tolist() == [2, 3]
    assert top_n(scores, 4).tolist() == [2, 3, 7, 6]
    assert top_n(scores, 5).tolist() == [2, 3, 7, 6, 0]
    assert top_n(scores, 50).tolist() == [2, 3, 7, 6, 0, 8]
    assert top_n(np.full(3, np.nan), 2).size == 0
    rng = np.random.default_rng(0)
    rows = {  # long rows take the sampled-threshold cut: exact for spread scores, heavy ties, sorted rows
        "spread": rng.standard_normal(20_000).astype(np.float32),
        "ties": rng.integers(0, 20, 20_000).astype(np.float64),
        "zeros": np.zeros(20_000, dtype=np.float32),
        "ascending": np.arange(20_000, dtype=np.float32),
    }
    for label, row in rows.items():
        for n in (1, 10, 100, 300):
            expected = np.lexsort((np.arange(row.size), -row))[:n]
            assert top_n(row, n).tolist() == expected.tolist(), (label, n)


def test_item_maps_follow_catalog_snapshots(data, catalog):
    import dataclasses

    snapshot = ModelSnapshot(name="m", version="1", recommender=make_recommender("ease").fit(data))
    first = snapshot.item_positions(catalog)
    assert catalog.product_ids[first].tolist() == data.item_ids.tolist()  # every model item is listed
    assert snapshot.item_positions(catalog) is first  # built once per catalog snapshot
    newer = [dataclasses.replace(catalog) for _ in range(2)]
    for refreshed in newer:
        snapshot.item_positions(refreshed)
    assert snapshot.item_positions(newer[0]) is snapshot.item_positions(newer[0])  # the two newest stay
    assert snapshot.item_positions(catalog) is not first  # the oldest was dropped, rebuilt on demand
