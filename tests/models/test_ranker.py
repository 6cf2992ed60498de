"""The two-stage ranker: learns a planted signal the base models cannot see, without leakage."""

from __future__ import annotations

import numpy as np
import pytest

from models.recommenders import make_recommender
from tests.models.conftest import make_data

FAST = {"n_estimators": 60, "n_candidates": 30, "min_child_samples": 10, "holdout": 0.25}


def rotating_catalogue(seed: int = 0, n_periods: int = 8, per_period: int = 12, n_users: int = 240):
    """Products are on sale for one period each; a shopper shops in one period and buys only what is on
    sale then. Co-occurrence sees this only through sparse baskets; event times show it exactly."""
    rng = np.random.default_rng(seed)
    appeal = rng.pareto(1.5, size=n_periods * per_period) + 1.0
    train, test, days = [], [], []
    for u in range(n_users):
        period = u % n_periods
        items = np.arange(period * per_period, (period + 1) * per_period)
        p = appeal[items] / appeal[items].sum()
        basket = rng.choice(items, size=6, replace=False, p=p)
        for k, i in enumerate(basket):
            pair = (f"u{u:03d}", f"i{i:03d}")
            if k < 4:
                train.append(pair)
                days.append(30.0 * period + rng.uniform(0, 10))
            else:
                test.append(pair)
    return make_data(train, np.array(days)), test


def hits(model, test, n=5):
    truth: dict[str, set[str]] = {}
    for u, i in test:
        truth.setdefault(u, set()).add(i)
    users = sorted(truth)
    recs = model.recommend(users, n=n)
    return sum(len(truth[u] & {i for i, _ in r}) for u, r in zip(users, recs, strict=True)) / len(test)


@pytest.fixture(scope="module")
def rotation():
    return rotating_catalogue()


@pytest.fixture(scope="module")
def ranker(rotation):
    data, _ = rotation
    return make_recommender("ranker", **FAST).fit(data)


@pytest.mark.parametrize("objective", ["rank_xendcg", "lambdarank"])
def test_ranker_learns_the_planted_time_signal(rotation, objective):
    """With popularity as the only base model, only the time features can find the on-sale items."""
    data, test = rotation
    params = {**FAST, "n_candidates": 96, "objective": objective}
    model = make_recommender("ranker", base_models=("popularity",), **params).fit(data)
    popular = hits(model.base_models_[0], test)
    assert hits(model, test) > max(0.4, 5 * popular)
    gains = dict(zip(model.feature_names_, model.booster_.feature_importance("gain"), strict=True))
    top = sorted(gains, key=gains.get, reverse=True)[:2]
    time_features = {
        "dt_mean",
        "dt_mean_abs",
        "window_share",
        "window_item_frac",
        "item_first_after_user_last",
        "user_first_after_item_last",
    }
    assert time_features & set(top), top


def test_ranker_stays_close_to_its_best_base_model(ranker, rotation):
    """Here EASE is near the ceiling and baskets are tiny (4 items, 3 in the inner fit): the ranker
    cannot win, but its re-ranking must not throw the base models' quality away."""
    data, test = rotation
    base = {m.name: hits(m, test) for m in ranker.base_models_}
    assert hits(ranker, test) >= 0.9 * max(base.values()), base


def test_ranker_serves_with_models_refitted_on_all_data(ranker, rotation):
    data, _ = rotation
    for model in ranker.base_models_:
        assert model.user_items_.nnz == data.matrix.nnz  # not the inner 75 %
    assert ranker.context_["user_act"].sum() == data.matrix.nnz
    assert 0 < ranker.train_pairs_


def test_ranker_validates_its_parameters(rotation):
    data, _ = rotation
    with pytest.raises(ValueError, match="holdout"):
        make_recommender("ranker", holdout=1.0).fit(data)
    with pytest.raises(ValueError, match="cannot be base models"):
        make_recommender("ranker", base_models=("ease", "ranker")).fit(data)
    with pytest.raises(ValueError, match="objective"):
        make_recommender("ranker", objective="regression").fit(data)
    with pytest.raises(ValueError, match="n_folds"):
        make_recommender("ranker", holdout=0.4, n_folds=3).fit(data)
    with pytest.raises(ValueError, match="base_params"):
        make_recommender("ranker", base_params={"als": {}}, base_models=("ease",)).fit(data)


def test_ranker_uses_side_features_when_present(market):
    model = make_recommender("ranker", **FAST).fit(market)
    for name in (
        "price",
        "price_vs_user",
        "affinity_category_id",
        "affinity_merchant_id",
        "fulfillment_code",
        "lift_region",
        "lift_segment",
        "window_share",
        "flag_affinity",
        "created_at_age_at_user",
    ):
        assert name in model.feature_names_


def test_dense_scores_agree_with_recommend(ranker, rotation):
    rows = np.array([3, 0, 3])
    scores = ranker._score_users(rows)
    expected = ranker.recommend([str(ranker.user_ids_[r]) for r in rows], n=5)
    for k in range(len(rows)):
        best = np.argsort(-scores[k], kind="stable")[:5]
        assert [str(ranker.item_ids_[j]) for j in best] == [i for i, _ in expected[k]]
    assert np.isneginf(scores[0, ranker.user_items_[3].indices]).all()
