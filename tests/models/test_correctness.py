"""Hand-checkable cases for each learning rule, plus cold start and the ranker's use of a planted signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.recommenders import make_recommender
from tests.models.conftest import make_data

# 3 shoppers x 3 items:      i0 i1 i2
#                       a     1  1  0
#                       b     1  0  1
#                       c     1  1  0
TINY = [("a", "i0"), ("a", "i1"), ("b", "i0"), ("b", "i2"), ("c", "i0"), ("c", "i1")]


def dense(pairs):
    data = make_data(pairs)
    return data, data.matrix.toarray().astype(float)


def test_itemknn_cosine_on_three_by_three():
    data, x = dense(TINY)
    model = make_recommender("itemknn", weighting="cosine", k=10).fit(data)
    # cos(i0, i1) = 2 / (sqrt 3 * sqrt 2), cos(i0, i2) = 1 / sqrt 3, cos(i1, i2) = 0
    expected = {"i1": 2 / np.sqrt(6), "i2": 1 / np.sqrt(3)}
    got = dict(model.similar_items("i0", n=5))
    assert got.keys() == expected.keys()
    for item, value in expected.items():
        assert got[item] == pytest.approx(value, rel=1e-6)
    assert model.similar_items("i1") == [("i0", pytest.approx(2 / np.sqrt(6), rel=1e-6))]
    # shopper b saw i0 and i2: its score for i1 is cos(i0, i1) + cos(i2, i1) = 2 / sqrt 6
    assert model.recommend(["b"], n=3) == [[("i1", pytest.approx(2 / np.sqrt(6), rel=1e-6))]]


def test_itemknn_keeps_only_k_neighbours_and_bm25_finds_same_category(market):
    data, _ = dense(TINY)
    one = make_recommender("itemknn", weighting="cosine", k=1).fit(data)
    assert one.similar_items("i0", n=5) == [("i1", pytest.approx(2 / np.sqrt(6), rel=1e-6))]
    assert one.similarity_.getnnz(axis=1).max() == 1
    bm25 = make_recommender("itemknn", weighting="bm25", k=5).fit(market)
    assert bm25.similarity_.getnnz(axis=1).max() == 5
    cats = market.item_features["category_id"]
    similar = bm25.similar_items("p000", n=5)
    assert sum(cats[i] == cats["p000"] for i, _ in similar) >= 3  # chance: 5/4
    with pytest.raises(ValueError, match="weighting"):
        make_recommender("itemknn", weighting="jaccard").fit(data)


def test_ease_matches_numpy_closed_form(market):
    model = make_recommender("ease", l2=5.0).fit(market)
    x = market.matrix.toarray().astype(float)
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    assert model.weights_.flags.c_contiguous  # scoring would copy the whole matrix per call otherwise
    np.testing.assert_allclose(np.diag(model.weights_), 0.0)
    np.testing.assert_allclose(model.weights_, b, atol=1e-5)
    user = market.user_index["u004"]
    scores = x[user] @ b
    scores[x[user] > 0] = -np.inf
    best = np.argsort(-scores, kind="stable")[:3]
    assert [i for i, _ in model.recommend(["u004"], n=3)[0]] == list(market.item_ids[best])


def test_ease_refuses_large_catalogues(market):
    with pytest.raises(ValueError, match="max_items=10"):
        make_recommender("ease", max_items=10).fit(market)


def test_popularity_global_and_by_region():
    pairs = [("a", "x"), ("b", "x"), ("c", "x"), ("a", "y"), ("d", "z"), ("e", "z")]
    users = pd.DataFrame({"region": ["north", "north", "north", "south", "south"]}, index=list("abcde"))
    data = make_data(pairs, user_features=users)
    glob = make_recommender("popularity").fit(data)
    assert [i for i, _ in glob.popular_items(3)] == ["x", "z", "y"]
    assert glob.popular_items(3)[0][1] == pytest.approx(3 / 6)
    regional = make_recommender("popularity", by="region", smoothing=0.0).fit(data)
    assert [i for i, _ in regional.popular_items(3, group="south")] == ["z"]
    smoothed = make_recommender("popularity", by="region", smoothing=10.0).fit(data)
    # south: z (2 + 10 * 2/6) / 12, x (0 + 10 * 3/6) / 12, y (0 + 10 * 1/6) / 12
    assert smoothed.popular_items(3, group="south") == [
        ("z", pytest.approx((2 + 10 * 2 / 6) / 12)),
        ("x", pytest.approx(5 / 12)),
        ("y", pytest.approx(10 / 6 / 12)),
    ]
    assert smoothed.popular_items(1, group="atlantis") == [("x", pytest.approx(0.5))]
    assert regional.recommend(["d"], n=1, exclude_seen=False) == [[("z", pytest.approx(1.0))]]
    assert [i for i, _ in regional.recommend(["b"], n=3, exclude_seen=False)[0]][0] == "x"
    with pytest.warns(UserWarning, match="global popularity"):
        make_recommender("popularity", by="nope").fit(data)


def test_popularity_by_category_follows_affinity():
    pairs = [("a", "x1"), ("a", "x2"), ("b", "x1"), ("c", "x1"), ("b", "y1"), ("c", "y2"), ("d", "y2")]
    cats = pd.DataFrame({"category_id": ["X", "X", "Y", "Y"]}, index=["x1", "x2", "y1", "y2"])
    data = make_data(pairs, item_features=cats)
    model = make_recommender("popularity", by="category_id", smoothing=0.0).fit(data)
    # d only bought category Y: the unseen Y item beats the more popular X items
    assert model.recommend(["d"], n=1)[0][0][0] == "y1"
    assert [i for i, _ in model.similar_items("x1", n=1)] == ["x2"]


def test_trending_prefers_recent_and_needs_times():
    pairs = [("a", "old"), ("b", "old"), ("c", "old"), ("d", "new"), ("e", "new"), ("f", "tail")]
    days = np.array([0.0, 1.0, 2.0, 99.0, 100.0, 100.0])
    model = make_recommender("trending", by=None, window_days=30, half_life_days=7).fit(
        make_data(pairs, days)
    )
    ranked = model.popular_items(3)
    assert [i for i, _ in ranked] == ["new", "tail"]  # "old" is outside the window
    assert ranked[0][1] == pytest.approx((0.5 ** (1 / 7) + 1) / (0.5 ** (1 / 7) + 2))
    with pytest.raises(ValueError, match="timestamps"):
        make_recommender("trending", by=None).fit(make_data(pairs))


def test_factor_models_learn_blocks():
    rng = np.random.default_rng(3)
    pairs = []
    for u in range(40):
        block = u % 2
        for i in rng.choice(10, size=6, replace=False):
            pairs.append((f"u{u}", f"i{block}{i}"))
    data = make_data(pairs)
    for name, params in (
        ("als", {"factors": 8, "regularization": 5.0}),
        ("bpr", {"factors": 8, "learning_rate": 0.05, "iterations": 200}),
    ):
        model = make_recommender(name, **params).fit(data)
        recs = model.recommend([f"u{u}" for u in range(40)], n=3)
        in_block = np.mean([i[1] == str(u % 2) for u, r in enumerate(recs) for i, _ in r])
        assert in_block > 0.9, name


def test_content_neighbours_for_new_products(market):
    model = make_recommender("content").fit(market)
    assert "p042" in model.item_index_ and "p042" not in market.item_index  # listed, never bought
    similar = model.similar_items("p042", n=5)
    cats = market.item_features["category_id"]
    assert similar and all(cats[i] == cats["p042"] for i, _ in similar[:3])
    recs = model.recommend(["u001"], n=5)[0]
    own = cats[market.item_ids[market.matrix[market.user_index["u001"]].indices]].value_counts().idxmax()
    assert cats[recs[0][0]] == own
    with pytest.raises(ValueError, match="item_features"):
        make_recommender("content").fit(make_data(TINY))


def test_content_uses_flag_columns_alone():
    genres = pd.DataFrame(
        {"Comedy": [1, 1, 0], "Drama": [0, 0, 1], "year": [1995, 1996, 1997]}, index=["i0", "i1", "i2"]
    )
    data = make_data(TINY, item_features=genres)
    model = make_recommender("content").fit(data)
    assert sorted(model.vocabulary_) == ["Comedy", "Drama"]
    assert model.similar_items("i0", n=1) == [("i1", pytest.approx(1.0))]
    assert model.similar_items("i0", n=2)[1] == ("i2", pytest.approx(0.0))


def test_coldstart_serves_new_shoppers_and_products(market):
    model = make_recommender("coldstart", model="ease").fit(market)
    known, registered, stranger = model.recommend(["u001", "u061", "nobody"], n=5)
    assert known == make_recommender("ease").fit(market).recommend(["u001"], n=5)[0]
    # u061 has no events but lives in region r1: region r1's favourites come first
    region_top = model.fallback_.popular_items(5, group="r1")
    assert registered == region_top and registered != model.fallback_.popular_items(5)
    assert stranger == model.fallback_.popular_items(5)
    assert model.similar_items("p042", n=3) == model.content_.similar_items("p042", n=3)
    assert model.similar_items("p001", n=3) == model.model_.similar_items("p001", n=3)
