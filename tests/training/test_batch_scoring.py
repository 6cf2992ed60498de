"""Batch scoring writes every shopper's top-N, the same lists in-process and on a Dask cluster."""

from __future__ import annotations

import errno

import pandas as pd
import pytest

from models.recommenders import make_recommender
from tests.models.test_ranker import rotating_catalogue
from training.batch_scoring import read_scores, score_all


@pytest.fixture(scope="module")
def fitted():
    data, _ = rotating_catalogue(n_users=120)
    return make_recommender("itemknn").fit(data)


def test_every_shopper_gets_the_models_own_top_n(fitted, tmp_path):
    out = score_all(fitted, tmp_path / "scores", n=5, chunk_size=50)
    assert len(list(out.glob("part-*.parquet"))) == 3  # 120 shoppers in chunks of 50
    scores = read_scores(out)
    assert scores["shopper_id"].nunique() == len(fitted.user_ids_)
    users = list(fitted.user_ids_[:7])
    for user, recs in zip(users, fitted.recommend(users, n=5), strict=True):
        mine = scores[scores["shopper_id"] == user]
        assert mine["product_id"].tolist() == [item for item, _ in recs]
        assert mine["rank"].tolist() == list(range(1, len(recs) + 1))
        assert mine["score"].tolist() == pytest.approx([s for _, s in recs])


def test_local_cluster_and_threads_write_the_same_lists(fitted, tmp_path):
    from distributed import Client, LocalCluster

    here = read_scores(score_all(fitted, tmp_path / "here", n=5, chunk_size=40))
    threads = read_scores(score_all(fitted, tmp_path / "threads", n=5, chunk_size=40, workers=2))
    pd.testing.assert_frame_equal(here, threads)
    with (
        LocalCluster(
            n_workers=2, processes=False, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        there = read_scores(score_all(fitted, tmp_path / "there", n=5, chunk_size=40, client=client))
    pd.testing.assert_frame_equal(here, there)


def test_the_model_is_not_hashed_for_every_chunk(fitted, tmp_path):
    """Passed to each chunk's task as a plain argument, the model was hashed by Dask once per chunk:
    ~6 CPU-s a chunk for a 1M-shopper ALS model, more than the scoring itself."""
    import copy

    def refuse():
        raise AssertionError("the model was hashed")

    model = copy.copy(fitted)
    model.__dask_tokenize__ = refuse
    lists = read_scores(score_all(model, tmp_path / "lists", n=5, chunk_size=40, workers=2))
    pd.testing.assert_frame_equal(
        lists, read_scores(score_all(fitted, tmp_path / "plain", n=5, chunk_size=40))
    )


def test_bad_requests_are_refused(fitted, tmp_path):
    with pytest.raises(ValueError, match="n, chunk_size and workers"):
        score_all(fitted, tmp_path, n=0)
    with pytest.raises(ValueError, match="n, chunk_size and workers"):
        score_all(fitted, tmp_path, workers=0)
    with pytest.raises(ValueError, match="no shoppers to score"):
        score_all(fitted, tmp_path, shopper_ids=[])


def _register_recommender(tracking_uri: str):
    """An item-kNN recommender registered as `recs` (its champion); returns the fitted model."""
    import mlflow

    from features.interactions import build_interactions
    from tests.training.conftest import planted_events
    from training.pyfunc import log_recommender
    from training.registry import register_and_maybe_promote
    from training.tracking import use_tracking

    events = planted_events().rename(columns={"shopper": "user_id", "product": "item_id"})
    model = make_recommender("itemknn").fit(
        build_interactions(events, time_col=None, event_col=None, value_col=None)
    )
    _, experiment_id = use_tracking(tracking_uri, "batch-score")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        log_recommender(model)
    register_and_maybe_promote(run.info.run_id, "model", "recs", "ndcg@10", 0.3, tracking_uri=tracking_uri)
    return model


def test_cli_scores_the_registered_champion(tracking_uri, tmp_path):
    from typer.testing import CliRunner

    from crosscart.cli import app

    model = _register_recommender(tracking_uri)
    runner = CliRunner()
    base = ["batch-score", "--model", "recs", "--tracking-uri", tracking_uri, "--n", "4", "--cluster", ""]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "lists")])
    assert result.exit_code == 0, result.output
    scores = read_scores(tmp_path / "lists")
    assert scores["shopper_id"].nunique() == len(model.user_ids_)
    first = str(model.user_ids_[0])
    assert scores[scores["shopper_id"] == first]["product_id"].tolist() == [
        item for item, _ in model.recommend([first], n=4)[0]
    ]
    # The lists name the version that made them, so the API serves them for that version only.
    from serving.precomputed import load_precomputed

    lists = load_precomputed(tmp_path / "lists")
    assert (lists.model, lists.version, lists.n, len(lists)) == ("recs", "1", 4, len(model.user_ids_))
    assert list(lists.lookup(first)[0]) == [item for item, _ in model.recommend([first], n=4)[0]]
    missing = runner.invoke(app, [*base, "--alias", "nowhere", "--out", str(tmp_path / "none")])
    assert missing.exit_code == 1
    assert "carries the alias 'nowhere'" in missing.output


def test_cli_batch_score_gives_up_on_a_stalled_cluster_after_stall_seconds(
    tracking_uri, tmp_path, monkeypatch
):
    """`--stall-seconds` reaches the cluster wait (`compute_on`), as `crosscart features job`'s: a chunk
    longer than the 300 s default failed every run with no way to allow it; a stall is one error line."""
    from typer.testing import CliRunner

    import training.batch_scoring as scoring
    from crosscart.cli import app
    from features.cluster import ClusterJobStalled

    def stalled(*args, stall_seconds, **kwargs):
        raise ClusterJobStalled(
            f"batch-score: no task on the Dask cluster finished for {stall_seconds:.0f} s"
        )

    _register_recommender(tracking_uri)
    monkeypatch.setattr(scoring, "score_all", stalled)
    base = ["batch-score", "--model", "recs", "--tracking-uri", tracking_uri, "--cluster", ""]
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "lists"), "--stall-seconds", "900"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == (
        "error: batch-score: no task on the Dask cluster finished for 900 s"
    )
    assert not (tmp_path / "lists").exists()  # nothing published


def test_coupon_uplift_of_every_shopper_equals_the_in_memory_scores(tmp_path):
    """Scored a shopper partition at a time, every shopper's uplift per coupon kind is what the model
    gives on the whole event log in memory; a run that fails, or asks for a window with no event, keeps
    the previous scores."""
    from features.campaign_features import encode_features, shopper_history_features
    from features.synth import generate_marketplace
    from features.tables import EmptyWindow
    from tests.features.conftest import THREE_PARTS
    from training.batch_scoring import score_coupon_uplift
    from training.uplift import fit_effect_model

    market = tmp_path / "m"
    generate_marketplace(market, THREE_PARTS, seed=5)
    model, _ = fit_effect_model(market)
    events = pd.read_parquet(market / "events")
    as_of = events["ts"].max()  # the last day's events are left out: `before as_of`
    got = pd.read_parquet(score_coupon_uplift(model, market, tmp_path / "u", as_of=as_of, partitions=4))
    assert got["shopper_id"].is_unique
    shoppers = pd.read_parquet(market / "shoppers.parquet")
    X = encode_features(
        shopper_history_features(events, shoppers, as_of, "site"), list(model.feature_names_in_)
    )
    arms = [str(a) for a in model.arms_ if str(a) != "control"]
    expected = pd.DataFrame(model.predict_uplift(X).reshape(len(X), -1), index=X.index, columns=arms)
    assert len(got) == len(shoppers) and len(arms) >= 2
    pd.testing.assert_frame_equal(
        got.set_index("shopper_id").sort_index(), expected.sort_index(), check_names=False, rtol=1e-12
    )

    # a run that fails half-way (a full disk at the second partition) leaves the previous scores whole:
    # they were removed first, and its first part written in their place
    predict, calls = model.predict_uplift, []

    def disk_fills_up(X):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return predict(X)

    model.predict_uplift = disk_fills_up
    with pytest.raises(OSError, match="No space"):
        score_coupon_uplift(model, market, tmp_path / "u", as_of=as_of, partitions=4)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "u"), got)

    # an `as_of` before every event scored every shopper as one with no history, over the previous scores
    model.predict_uplift = predict
    with pytest.raises(EmptyWindow, match="no event before 2020-01-01"):
        score_coupon_uplift(model, market, tmp_path / "u", as_of=pd.Timestamp("2020-01-01", tz="UTC"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "u"), got)


def test_cli_also_scores_every_shoppers_coupon_uplift_with_the_registered_model(tracking_uri, tmp_path):
    """`--coupons-out` writes the registered uplift champion's scores of every shopper of `--data`, as of
    the marketplace's end: what `score_coupon_uplift` gives with that model; without `--data` it is
    refused before anything is scored."""
    import json

    from typer.testing import CliRunner

    from crosscart.cli import app
    from features.synth import generate_marketplace
    from tests.features.conftest import THREE_PARTS
    from training.batch_scoring import score_coupon_uplift
    from training.uplift import load_uplift_model, train_uplift_model

    market = tmp_path / "m"
    generate_marketplace(market, THREE_PARTS, seed=5)
    train_uplift_model(market, tracking_uri=tracking_uri, registered_name="crosscart-uplift")
    _register_recommender(tracking_uri)
    base = ["batch-score", "--model", "recs", "--tracking-uri", tracking_uri, "--cluster", ""]
    base += ["--alias", "champion", "--out", str(tmp_path / "lists")]
    refused = CliRunner().invoke(app, [*base, "--coupons-out", str(tmp_path / "none")])
    assert refused.exit_code == 2 and "--coupons-out needs --data" in refused.output
    assert not (tmp_path / "lists").exists()
    # one directory published over the other would replace it: refused before anything is scored
    for clash in (tmp_path / "lists", tmp_path / "lists" / "coupons", tmp_path):
        same = CliRunner().invoke(app, [*base, "--data", str(market), "--coupons-out", str(clash)])
        assert same.exit_code == 1 and "must be separate directories" in same.output, same.output
        assert not (tmp_path / "lists").exists()

    result = CliRunner().invoke(app, [*base, "--data", str(market), "--coupons-out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(tmp_path / "c").sort_values("shopper_id", ignore_index=True)
    end = pd.Timestamp(json.loads((market / "manifest.json").read_text())["end"])
    model = load_uplift_model(tracking_uri, "crosscart-uplift")
    expected = pd.read_parquet(score_coupon_uplift(model, market, tmp_path / "e", as_of=end))
    assert len(got) == len(pd.read_parquet(market / "shoppers.parquet")) and got.shape[1] >= 3
    pd.testing.assert_frame_equal(got, expected.sort_values("shopper_id", ignore_index=True))


def test_cli_coupon_uplift_without_a_manifest_is_as_of_just_after_the_last_event(tracking_uri, tmp_path):
    """An event-log export has no manifest.json: `--coupons-out` scored it as of the wall clock (every
    shopper inactive since the export), now just after its last event; an `--as-of` more than
    AS_OF_TOLERANCE_DAYS after it is refused before the lists are scored, nothing written."""
    from typer.testing import CliRunner

    from crosscart.cli import app
    from features.synth import generate_marketplace
    from features.tables import AS_OF_TOLERANCE_DAYS
    from tests.features.conftest import THREE_PARTS
    from training.batch_scoring import score_coupon_uplift
    from training.uplift import load_uplift_model, train_uplift_model

    market = tmp_path / "m"
    generate_marketplace(market, THREE_PARTS, seed=5)
    train_uplift_model(market, tracking_uri=tracking_uri, registered_name="crosscart-uplift")
    _register_recommender(tracking_uri)
    (market / "manifest.json").unlink()  # an export: events/ and shoppers.parquet
    last = pd.read_parquet(market / "events", columns=["ts"])["ts"].max()
    base = ["batch-score", "--model", "recs", "--tracking-uri", tracking_uri, "--cluster", ""]
    base += ["--alias", "champion", "--data", str(market)]

    late = (last + pd.Timedelta(days=AS_OF_TOLERANCE_DAYS, seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    refused = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "l0"), "--coupons-out", str(tmp_path / "c0"), "--as-of", late]
    )
    assert refused.exit_code == 1, refused.output
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and "more than 1 day after the last event" in lines[0], refused.output
    assert not (tmp_path / "l0").exists() and not (tmp_path / "c0").exists()

    result = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "l"), "--coupons-out", str(tmp_path / "c")]
    )
    assert result.exit_code == 0, result.output
    just_after = last + pd.Timedelta(microseconds=1)
    assert f"coupon uplift as of {just_after}" in result.output
    model = load_uplift_model(tracking_uri, "crosscart-uplift")
    expected = pd.read_parquet(score_coupon_uplift(model, market, tmp_path / "e", as_of=just_after))
    got = pd.read_parquet(tmp_path / "c").sort_values("shopper_id", ignore_index=True)
    pd.testing.assert_frame_equal(got, expected.sort_values("shopper_id", ignore_index=True))
