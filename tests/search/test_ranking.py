"""Position-bias estimation (against the simulator's true examination), IPW weights and the
propensity-weighted LambdaRank objective, metrics, the ranker, and the whole offline evaluation on a tiny
generated marketplace (slow)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from models.search.ranker import IPWLambdaRank, SearchRanker
from training.evaluate_search import ndcg_at_k, per_search_ndcg, reciprocal_rank, score_lists
from training.search_ranker import ipw_weights, position_propensities


def synthetic_log(n_searches=4000, page=10, seed=0, randomized_share=0.5) -> pd.DataFrame:
    """Position-based clicks with known examination 1/k and relevance drawn per item."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_searches):
        rel = rng.random(page) * 0.6
        randomized = rng.random() < randomized_share
        order = rng.permutation(page) if randomized else np.argsort(-rel)
        for k, item in enumerate(order, start=1):
            clicked = rng.random() < rel[item] / k
            rows.append((s, f"u{s % 50}", "q", randomized, k, f"p{item}", clicked, False, False, rel[item]))
    cols = ["search_id", "shopper_id", "query", "randomized", "position", "product_id", "clicked", "carted"]
    return pd.DataFrame(rows, columns=[*cols, "purchased", "relevance"])


def test_propensities_recover_examination_from_the_randomized_slice():
    theta = position_propensities(synthetic_log())
    assert theta[0] == 1.0
    assert np.all(np.diff(theta) <= 0)
    assert theta[1] == pytest.approx(0.5, abs=0.08) and theta[4] == pytest.approx(0.2, abs=0.06)


def test_ipw_weights_are_inverse_propensities_of_the_logged_position():
    log = pd.DataFrame({"position": [1, 5, 5, 2]})
    theta = np.array([1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert ipw_weights(log, None).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert ipw_weights(log, theta).tolist() == [1.0, 5.0, 5.0, 2.0]


def test_native_lambdarank_cancels_label_scaled_propensities():
    """Why the ranker has its own objective: LightGBM's lambdarank normalises each list by its ideal DCG,
    so a single click's label x 5 (an IPW gain) trains exactly the same model as label x 1."""
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.random((2000, 3))
    clicked = np.zeros(2000, dtype=int)
    clicked[np.arange(0, 2000, 10) + rng.integers(0, 10, 200)] = 1
    fit = dict(objective="lambdarank", n_estimators=5, label_gain=list(range(6)), verbose=-1, n_jobs=1)
    one = lgb.LGBMRanker(**fit).fit(X, clicked, group=np.full(200, 10))
    five = lgb.LGBMRanker(**fit).fit(X, clicked * 5, group=np.full(200, 10))
    assert np.array_equal(one.predict(X), five.predict(X))


def test_ipw_objective_weights_each_click_by_its_inverse_propensity():
    labels = np.array([0, 1, 0, 0, 0, 0, 1, 0])  # two lists of four, one click each
    scores = np.array([0.3, 0.1, 0.2, 0.0, 0.5, 0.4, 0.1, 0.0])
    sizes = np.array([4, 4])
    g1, h1 = IPWLambdaRank(labels, np.ones(8), sizes).gradients(scores)
    w = np.array([1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0])  # the second list's click was at a 1/5 position
    g5, h5 = IPWLambdaRank(labels, w, sizes).gradients(scores)
    assert g1[1] < 0 and g1[6] < 0 and np.all(g1[[0, 2, 3, 4, 5, 7]] >= 0)  # clicks up, the rest down
    assert g1[:4].sum() == pytest.approx(0) and g1[4:].sum() == pytest.approx(0)
    np.testing.assert_allclose(g5[:4], g1[:4])
    np.testing.assert_allclose(g5[4:], 5 * g1[4:])  # the whole list's pairs, not just the clicked row
    np.testing.assert_allclose(h5[4:], 5 * h1[4:])
    # two clicks in one list: the one seen at the rarely examined position is pushed above the other
    g, _ = IPWLambdaRank(np.array([1, 1, 0]), np.array([1.0, 4.0, 1.0]), np.array([3])).gradients(np.zeros(3))
    assert g[1] < 0 < g[0] and g[1] < g[2]


def test_ranker_is_trained_with_the_weights():
    rng = np.random.default_rng(0)
    X = rng.random((400, 3))
    labels = (rng.random(400) < 0.2).astype(np.int64)
    sizes = np.full(40, 10)
    plain = SearchRanker(n_estimators=10, min_child_samples=2).fit(X, labels, sizes)
    same = SearchRanker(n_estimators=10, min_child_samples=2).fit(X, labels, sizes, np.ones(400))
    weighted = SearchRanker(n_estimators=10, min_child_samples=2).fit(X, labels, sizes, 1 + 9 * X[:, 0])
    assert plain.version_ == same.version_ != weighted.version_
    with pytest.raises(ValueError):
        SearchRanker().fit(X, labels, sizes, np.zeros(400))


@pytest.mark.slow
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_propensities_match_the_simulators_examination(tmp_path, eta):
    """On simulated marketplace logs the estimate recovers the simulator's examine = 1 / k**eta within
    sampling error (4 binomial standard errors of each position's CTR over CTR at 1)."""
    from features.synth import generate_marketplace
    from features.synth.search_logs import simulate_search_logs

    generate_marketplace(tmp_path / "m", "tiny", seed=3)
    log = simulate_search_logs(tmp_path / "m", seed=3, eta=eta, randomized_share=1.0)
    truth = 1.0 / np.arange(1, 11) ** eta
    ctr = log.groupby("position")["clicked"].agg(["mean", "size"])
    se = np.sqrt(ctr["mean"] * (1 - ctr["mean"]) / ctr["size"]).to_numpy() / ctr["mean"].iat[0]
    assert np.all(np.abs(position_propensities(log) - truth) <= 4 * se + 0.01)
    assert log["true_attraction"].between(0, 1).all()


def test_metrics():
    assert ndcg_at_k(np.array([3.0, 1, 0]), 10) == 1.0
    assert ndcg_at_k(np.array([3.0, 0, 1]), 10) < 1.0
    assert ndcg_at_k(np.array([0.0, 0, 0]), 10) == 0.0
    assert ndcg_at_k(np.array([0.0, 1.0]), 10) == pytest.approx(1 / np.log2(3))
    assert reciprocal_rank(np.array([False, False, True])) == pytest.approx(1 / 3)
    log = pd.DataFrame(
        {
            "search_id": [0, 0],
            "position": [1, 2],
            "clicked": [False, True],
            "carted": [False] * 2,
            "purchased": [False] * 2,
        }
    )
    out = score_lists(log, {"good": np.array([0.0, 1.0]), "bad": np.array([1.0, 0.0])}, k=10)
    assert out["good"]["mrr"] == 1.0 and out["bad"]["mrr"] == 0.5
    # true gains grade every search, clicked or not
    log = pd.concat([log, log.assign(search_id=1, clicked=False)], ignore_index=True)
    scores = {"good": np.array([0.0, 1.0, 0.0, 1.0])}
    assert len(per_search_ndcg(log, scores)["good"]) == 1
    truth = per_search_ndcg(log, scores, gains=np.array([0.1, 0.5, 0.5, 0.1]))["good"]
    assert truth[0] == 1.0 and truth[1] < 1.0


def test_debiased_ranker_learns_relevance_not_position():
    """The only feature besides noise is the true relevance; a feature equal to the logged position
    is what the biased labels reward. With IPW the ranker orders by relevance on randomized traffic."""
    log = synthetic_log(n_searches=3000, randomized_share=0.1)
    rng = np.random.default_rng(1)
    X = np.column_stack([log["relevance"] + rng.normal(0, 0.05, len(log)), rng.random(len(log))])
    theta = position_propensities(log)
    from training.search_ranker import fit_search_ranker

    ranker = fit_search_ranker(X, log, theta, n_estimators=50)
    assert isinstance(ranker, SearchRanker) and ranker.version_.startswith("lambdarank-")
    scores = ranker.predict(X)
    assert np.corrcoef(scores, log["relevance"])[0, 1] > 0.8
    with pytest.raises(ValueError):
        SearchRanker().fit(X[:3], np.array([0, 1, 99]), np.array([3]))


@pytest.mark.slow
def test_evaluate_search_cli_on_a_tiny_marketplace(tmp_path):
    from crosscart.cli import app
    from features.synth import generate_marketplace

    generate_marketplace(tmp_path / "m", "tiny", seed=2)
    out = CliRunner().invoke(
        app,
        [
            "evaluate",
            "search",
            "--data",
            str(tmp_path / "m"),
            "--json",
            "--save-ranker",
            str(tmp_path / "r.joblib"),
        ],
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert set(result["randomized_slice"]) == {"bm25", "popularity", "ranker", "ranker_no_debias"}
    assert result["position_propensity"][0] == 1.0
    truth = result["true_relevance"]
    assert set(truth["ndcg@10"]) == {"bm25", "popularity", "ranker", "ranker_no_debias"}
    assert 0 < truth["ndcg@10"]["ranker"] <= 1 and truth["searches"] > 0
    assert (tmp_path / "r.joblib").exists() and (tmp_path / "m" / "search_logs.parquet").exists()


def test_search_features_for_query_and_shopper():
    from datetime import UTC, datetime

    from commerce.search.index import Hit, MatchQuery, SearchDocument
    from commerce.search.query import ParsedQuery
    from features.search_features import FEATURES, ShopperProfile, search_features

    def hit(pid, brand, cat, origin, price, score):
        doc = SearchDocument(
            pid,
            f"{brand} x",
            brand,
            cat,
            ("Root", cat),
            origin,
            "M",
            price,
            "bonded",
            "2026-01-01T00:00:00+00:00",
        )
        return Hit(pid, score, doc, {"title": score, "brand": 0.0})

    hits = [hit("a", "Karimi", "C1", "JP", "100.00", 3.0), hit("b", "Sorin", "C2", "KR", "400.00", 1.0)]
    parsed = ParsedQuery("karimi", ("karimi",), MatchQuery((("karimi",),)), brand="Karimi", category_id="C2")
    profile = ShopperProfile.from_purchases([("C2", "KR", 380.0, "Sorin"), ("C1", "KR", 420.0, "Other")])
    X = search_features(
        hits, parsed, popularity=[0, 9], shopper=profile, now=datetime(2026, 1, 11, tzinfo=UTC)
    )
    col = {name: X[:, i] for i, name in enumerate(FEATURES)}
    assert col["bm25"].tolist() == [3.0, 1.0] and col["bm25_rank"].tolist() == [0, 1]
    assert col["brand_match"].tolist() == [1, 0] and col["category_match"].tolist() == [0, 1]
    assert col["popularity"][1] == pytest.approx(np.log(10))
    assert col["age_days"].tolist() == [10, 10]
    assert col["shopper_category_share"].tolist() == [0.5, 0.5]
    assert col["shopper_origin_share"].tolist() == [0, 1] and col["shopper_brand_share"].tolist() == [0, 0.5]
    assert col["shopper_history"][0] == pytest.approx(np.log(3))
    assert col["shopper_price_gap"][1] < col["shopper_price_gap"][0]  # 400 is nearer this shopper's level


def test_paired_bootstrap_interval():
    from training.evaluate_search import paired_bootstrap

    a = np.full(200, 0.6)
    b = np.full(200, 0.5)
    out = paired_bootstrap(a, b)
    assert out["mean"] == pytest.approx(0.1) and out["ci95_low"] == pytest.approx(0.1)
    noisy = paired_bootstrap(np.r_[np.ones(100), np.zeros(100)], np.full(200, 0.5))
    assert noisy["ci95_low"] < 0 < noisy["ci95_high"]
