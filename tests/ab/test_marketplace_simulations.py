"""The interleaving and off-policy simulations on a generated marketplace's true tastes (small sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.ab.interleaving_simulation import compare
from experiments.ab.offpolicy_simulation import coverage
from experiments.ab.pages import build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from features.synth.generator import generate_marketplace
    from models.recommenders.itemknn import ItemKNNRecommender
    from models.recommenders.popularity import PopularityRecommender

    path = tmp_path_factory.mktemp("market")
    generate_marketplace(path, "tiny", seed=7)
    models = {
        "knn_bm25": ItemKNNRecommender(k=50),
        "knn_cosine": ItemKNNRecommender(k=50, weighting="cosine"),
        "popularity": PopularityRecommender(),
    }
    return build_world(path, models)


def test_world_rates_follow_the_tastes(world):
    assert world.attraction.shape == (500, world.n_products) and (world.buy <= 1).all()
    rates = {m: world.true_rates(m) for m in world.rankings}
    assert rates["knn_bm25"]["ctr"] > rates["popularity"]["ctr"]  # personal lists fit tastes better
    assert all(0 < r["purchase_rate"] < r["ctr"] < 1 for r in rates.values())
    pages = world.pages_seen(np.arange(500), np.random.default_rng(0))
    assert pages.min() >= 1 and np.corrcoef(pages, world.activity)[0, 1] > 0.3


@pytest.mark.slow
def test_interleaving_needs_far_fewer_shoppers(world):
    out = compare(world, "knn_bm25", "knn_cosine", runs=40, pilot=50_000, seed=1)
    assert out["shopper_ratio"] >= 5
    assert out["interleaving_power"] >= 0.6 and out["interleaving_wrong_calls"] <= 0.05


@pytest.mark.slow
def test_offpolicy_intervals_cover_the_truth(world):
    out = coverage(world, "popularity", "knn_bm25", runs=30, pages=30_000, epsilon=0.3, seed=2)
    for metric in ("ctr", "purchase_rate"):
        assert out[metric]["dr"]["coverage"] >= 0.8
        assert out[metric]["dr"]["mean_estimate"] == pytest.approx(out["truth"][metric], rel=0.1)
