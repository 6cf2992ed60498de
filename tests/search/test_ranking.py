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


def synthetic_log(
    n_searches=4000, page=10, seed=0, randomized_share=0.5, examine=None, production_order="relevance"
) -> pd.DataFrame:
    """Position-based clicks with known examination (default 1/k): each search shows `page` items with a
    relevance in [0, 0.6) and an unrelated feature `favourite` in [0, 1); production traffic shows them
    in the order of `production_order`, the randomized slice in random order."""
    rng = np.random.default_rng(seed)
    examine = 1.0 / np.arange(1, page + 1) if examine is None else np.asarray(examine)
    values = {"relevance": rng.random((n_searches, page)) * 0.6, "favourite": rng.random((n_searches, page))}
    randomized = rng.random(n_searches) < randomized_share
    order = np.where(
        randomized[:, None],
        np.argsort(rng.random((n_searches, page)), axis=1),
        np.argsort(-values[production_order], axis=1),
    )
    shown = {name: np.take_along_axis(v, order, axis=1).ravel() for name, v in values.items()}
    clicked = rng.random(n_searches * page) < shown["relevance"] * np.tile(examine, n_searches)
    search = np.repeat(np.arange(n_searches), page)
    return pd.DataFrame(
        {
            "search_id": search,
            "shopper_id": [f"u{s % 50}" for s in search],
            "query": "q",
            "randomized": np.repeat(randomized, page),
            "position": np.tile(np.arange(1, page + 1), n_searches),
            "product_id": [f"p{i}" for i in order.ravel()],
            "clicked": clicked,
            "carted": False,
            "purchased": False,
            **shown,
        }
    )


@pytest.mark.parametrize(
    "examine",
    [
        1.0 / np.arange(1, 11),
        1.0 / np.arange(1, 11) ** 0.5,
        [1.0, 0.9, 0.8, 0.7, 0.35, 0.3, 0.25, 0.2, 0.15, 0.12],  # flat above a fold, steep after it
    ],
)
def test_propensities_recover_examination_from_the_randomized_slice(examine):
    """The estimate from a 10% randomized slice is within 4 binomial standard errors (plus 0.01) of the
    examination curve the clicks were drawn with, though production traffic orders by relevance."""
    log = synthetic_log(n_searches=20_000, randomized_share=0.1, examine=examine)
    theta = position_propensities(log)
    assert theta[0] == 1.0 and np.all(np.diff(theta) <= 0)
    rand = log[log["randomized"]]
    ctr = rand.groupby("position")["clicked"].agg(["mean", "size"])
    se = np.sqrt(ctr["mean"] * (1 - ctr["mean"]) / ctr["size"]).to_numpy() / ctr["mean"].iat[0]
    assert np.all(np.abs(theta - np.asarray(examine)) <= 4 * se + 0.01)


def test_propensities_are_clipped_so_no_weight_exceeds_ten():
    """Rarely seen positions would otherwise give a few clicks weights of 50 and the ranker their noise."""
    examine = [1.0, 0.5, 0.2, 0.05, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02]
    log = synthetic_log(n_searches=5000, randomized_share=0.5, examine=examine)
    theta = position_propensities(log)
    assert theta[1] == pytest.approx(0.5, abs=0.08) and np.all(theta[3:] == 0.1)
    assert ipw_weights(log, theta).max() == pytest.approx(10.0)


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
def test_simulated_production_traffic_replays_the_organic_order(tmp_path):
    """Production lists are the platform's organic order (BM25 plus brand / category boosts), top 10;
    the randomized slice shows the same page in another order."""
    from features.synth import generate_marketplace
    from features.synth.search_logs import QueryEngine, product_documents, simulate_search_logs

    generate_marketplace(tmp_path / "m", "tiny", seed=4)
    log = simulate_search_logs(tmp_path / "m", seed=4, randomized_share=0.3, max_searches=400)
    engine = QueryEngine(product_documents(tmp_path / "m"), pool=50)
    shuffled = 0
    for (_, query, randomized), rows in log.groupby(["search_id", "query", "randomized"]):
        parsed, hits = engine.run(query)
        organic = [hits[i].product_id for i in np.argsort(-parsed.organic_scores(hits), kind="stable")[:10]]
        shown = rows.sort_values("position")["product_id"].tolist()
        assert sorted(shown) == sorted(organic)
        if not randomized:
            assert shown == organic
        shuffled += randomized and shown != organic
    assert shuffled > 0.5 * log.loc[log["randomized"], "search_id"].nunique()


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


def test_naive_ranker_follows_the_logging_policy_and_the_ipw_one_does_not():
    """Production shows each list in the order of `favourite`, a feature unrelated to what shoppers
    click once they look; clicks fall with position as 1/k. Trained on those clicks (plus a 10%
    randomized slice), the naive ranker learns that `favourite` wins clicks; weighted by the estimated
    inverse propensities, the ranker scores by relevance and all but ignores `favourite`."""
    from training.search_ranker import fit_search_ranker

    log = synthetic_log(n_searches=6000, randomized_share=0.1, production_order="favourite")
    X = log[["relevance", "favourite"]].to_numpy()
    naive = fit_search_ranker(X, log, None, n_estimators=50)
    ipw = fit_search_ranker(X, log, position_propensities(log), n_estimators=50)
    fresh = np.random.default_rng(5).random((5000, 2)) * [0.6, 1.0]  # the two features independent

    def corr(ranker, column):
        return np.corrcoef(ranker.predict(fresh), fresh[:, column])[0, 1]

    assert corr(naive, 1) > 0.45  # 0.54-0.64 over five seeds of the log
    assert abs(corr(ipw, 1)) < 0.15  # -0.01-0.10
    assert corr(ipw, 0) > max(0.85, corr(naive, 0))  # 0.91-0.93 against 0.67-0.74


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
    everywhere = result["true_relevance_all_traffic"]
    assert everywhere["searches"] == result["test_searches"] > truth["searches"]
    assert result["true_examination"] == pytest.approx(1.0 / np.arange(1, 11), abs=1e-4)
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
    # 200 searches of 4 queries, each query's searches alike: resampling queries, not searches, is honest
    a = np.repeat([0.9, 0.4, 0.8, 0.3], 50)
    per_search = paired_bootstrap(a, np.full(200, 0.5))
    per_query = paired_bootstrap(a, np.full(200, 0.5), clusters=np.repeat(["q1", "q2", "q3", "q4"], 50))
    assert per_query["mean"] == per_search["mean"] == pytest.approx(0.1)
    assert per_query["ci95_low"] < 0 < per_search["ci95_low"]


@pytest.mark.parametrize("command", [["search", "simulate-logs"], ["evaluate", "search"]])
def test_search_commands_name_a_directory_that_is_no_marketplace_in_one_line(tmp_path, command):
    """`--data` naming no generated marketplace ended in pyarrow's FileNotFoundError traceback."""
    from crosscart.cli import app

    out = CliRunner().invoke(app, [*command, "--data", str(tmp_path / "nope")])
    assert out.exit_code == 1 and isinstance(out.exception, SystemExit)
    assert "has no events/ directory: is it a `crosscart generate` output?" in out.output


def test_evaluate_search_says_in_one_line_that_the_holdout_leaves_no_training_searches(tmp_path):
    from crosscart.cli import app

    ts = pd.date_range("2026-01-01", periods=4, freq="D")
    pd.DataFrame({"ts": ts, "search_id": range(4)}).to_parquet(tmp_path / "search_logs.parquet")
    out = CliRunner().invoke(app, ["evaluate", "search", "--data", str(tmp_path), "--holdout-weeks", "100"])
    assert out.exit_code == 1 and isinstance(out.exception, SystemExit)
    assert "error: the split leaves no training or no held-out searches; change --holdout-weeks" in out.output
