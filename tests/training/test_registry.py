"""Registry helpers: alias promotion, loading a version back, and the one failure type serving relies on."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.interactions import build_interactions
from models.recommenders import make_recommender
from tests.training.conftest import planted_events
from training.pyfunc import log_recommender
from training.registry import (
    VALUE_TAG,
    ModelUnavailable,
    champion_version,
    load_recommender_version,
    register_and_maybe_promote,
)
from training.tracking import use_tracking


@pytest.fixture(scope="module")
def fitted():
    events = planted_events().rename(columns={"shopper": "user_id", "product": "item_id"})
    data = build_interactions(events, time_col=None, event_col=None, value_col=None)
    return make_recommender("itemknn").fit(data)


def _logged_run(model, metric_value=None) -> str:
    with mlflow.start_run() as run:
        if metric_value is not None:
            mlflow.log_metric("ndcg_at_10", metric_value)
        log_recommender(model)
    return run.info.run_id


def test_alias_moves_only_on_strict_improvement(tracking_uri, fitted):
    client, experiment_id = use_tracking(tracking_uri, "registry-test")
    mlflow.set_experiment(experiment_id=experiment_id)
    run = _logged_run(fitted)  # one logged model may be registered several times

    def promote(value, **kw):
        return register_and_maybe_promote(
            run, "model", "recs", "ndcg@10", value, tracking_uri=tracking_uri, **kw
        )

    first = promote(0.30)
    assert first.promoted and first.version == "1" and first.reason == "no champion yet"
    worse = promote(0.20)
    assert (
        not worse.promoted and worse.champion_version == "1" and worse.champion_value == pytest.approx(0.30)
    )
    tie = promote(0.30)
    assert not tie.promoted
    assert str(champion_version(client, "recs", "champion").version) == "1"
    better = promote(0.31)
    assert better.promoted and better.version == "4"
    champion = champion_version(client, "recs", "champion")
    assert str(champion.version) == "4"
    assert (
        champion.tags["crosscart.metric"] == "ndcg@10"
        and float(champion.tags["crosscart.metric_value"]) == 0.31
    )

    # another metric cannot be compared with the champion's: kept unless forced
    other = register_and_maybe_promote(run, "model", "recs", "recall@10", 0.9, tracking_uri=tracking_uri)
    assert not other.promoted and "no recorded recall@10" in other.reason
    forced = register_and_maybe_promote(
        run, "model", "recs", "recall@10", 0.9, tracking_uri=tracking_uri, force=True
    )
    assert forced.promoted and str(champion_version(client, "recs", "champion").version) == forced.version

    # lower is better (e.g. an error metric), and the champion's value may come from its run's metrics
    errs = [register_and_maybe_promote(run, "model", "errs", "rmse", v, False, tracking_uri=tracking_uri)
            for v in (0.5, 0.6, 0.4)]  # fmt: skip
    assert [p.promoted for p in errs] == [True, False, True]
    with pytest.raises(ValueError, match="cannot rank"):
        register_and_maybe_promote(
            run, "model", "errs", "rmse", float("nan"), False, tracking_uri=tracking_uri
        )
    with pytest.raises(ValueError, match="no model named"):
        register_and_maybe_promote(run, "nope", "errs", "rmse", 0.1, False, tracking_uri=tracking_uri)


def test_champion_value_falls_back_to_the_run_metric(tracking_uri, fitted):
    client, experiment_id = use_tracking(tracking_uri, "registry-test")
    mlflow.set_experiment(experiment_id=experiment_id)
    run = _logged_run(fitted, metric_value=0.5)
    version = mlflow.register_model(f"runs:/{run}/model", "legacy")  # registered without our tags
    client.set_registered_model_alias("legacy", "champion", version.version)
    worse = register_and_maybe_promote(run, "model", "legacy", "ndcg@10", 0.45, tracking_uri=tracking_uri)
    assert not worse.promoted and worse.champion_value == 0.5


def test_load_version_round_trips_and_pyfunc_predicts(tracking_uri, fitted, tmp_path):
    _, experiment_id = use_tracking(tracking_uri, "registry-test")
    mlflow.set_experiment(experiment_id=experiment_id)
    promotion = register_and_maybe_promote(_logged_run(fitted), "model", "recs", "ndcg@10", 0.3)
    loaded = load_recommender_version(tracking_uri, "recs", promotion.version)
    users = ["u1", "u2", "u79", "nobody"]
    assert loaded.recommend(users, n=5) == fitted.recommend(users, n=5)
    assert loaded.similar_items("p3", n=4) == fitted.similar_items("p3", n=4)
    kept = load_recommender_version(tracking_uri, "recs", promotion.version, dst_dir=tmp_path / "kept")
    assert kept.recommend(["u1"], n=3) == fitted.recommend(["u1"], n=3)
    assert list((tmp_path / "kept").rglob("artifacts/*.joblib"))  # the files stay in dst_dir

    pyfunc = mlflow.pyfunc.load_model("models:/recs@champion")
    frame = pyfunc.predict(pd.DataFrame({"user_id": ["u1", "nobody", "u2"], "n": [3, 3, 2]}))
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score"]
    expected = [("u1", r, i) for r, (i, _) in enumerate(fitted.recommend(["u1"], n=3)[0], 1)]
    expected += [("u2", r, i) for r, (i, _) in enumerate(fitted.recommend(["u2"], n=2)[0], 1)]
    assert list(frame[["user_id", "rank", "item_id"]].itertuples(index=False, name=None)) == expected
    assert len(pyfunc.predict(pd.DataFrame({"user_id": ["u1"]}), params={"n": 7})) == 7


def test_missing_and_corrupt_models_raise_model_unavailable(tracking_uri, fitted):
    client, experiment_id = use_tracking(tracking_uri, "registry-test")
    mlflow.set_experiment(experiment_id=experiment_id)
    assert champion_version(client, "never-registered", "champion") is None
    with pytest.raises(ModelUnavailable, match="never-registered"):
        load_recommender_version(tracking_uri, "never-registered", 1)

    run = _logged_run(fitted)
    register_and_maybe_promote(run, "model", "recs", "ndcg@10", 0.3)
    assert champion_version(client, "recs", "challenger") is None  # model exists, alias does not
    with pytest.raises(ModelUnavailable):
        load_recommender_version(tracking_uri, "recs", 99)

    database = Path(urlparse(tracking_uri).path)
    (artifact,) = (database.parent / "mlartifacts").rglob("*.joblib")  # the only model this registry holds
    artifact.write_bytes(b"not a joblib file")
    with pytest.raises(ModelUnavailable, match="cannot load recs version 1"):
        load_recommender_version(tracking_uri, "recs", 1)
    artifact.unlink()
    with pytest.raises(ModelUnavailable, match="missing"):
        load_recommender_version(tracking_uri, "recs", 1)


def test_unreachable_registry_raises_model_unavailable(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    client = MlflowClient(tracking_uri="http://127.0.0.1:9")  # the discard port: connection refused
    with pytest.raises(ModelUnavailable, match="registry lookup"):
        champion_version(client, "recs", "champion")


def test_load_version_uses_the_given_registry_not_the_process_default(tracking_uri, fitted, tmp_path):
    """A serving process never sets MLflow's global URIs: loading must follow the URI it is given."""
    _, experiment_id = use_tracking(tracking_uri, "registry-test")
    mlflow.set_experiment(experiment_id=experiment_id)
    promotion = register_and_maybe_promote(_logged_run(fitted), "model", "recs", "ndcg@10", 0.3)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")  # the registry follows it by default
    try:
        loaded = load_recommender_version(tracking_uri, "recs", promotion.version)
    finally:
        mlflow.set_tracking_uri(previous)
    assert loaded.recommend(["u1"], n=3) == fitted.recommend(["u1"], n=3)


def test_a_trainer_registering_while_another_promotes_compares_with_the_new_champion(
    tracking_uri, fitted, monkeypatch
):
    """Two trainers at once: the slow one's registration (copying its artifacts) spans the other's whole
    promotion. It compared with the champion read before registering, so a worse model took the alias
    over the better one promoted meanwhile."""
    use_tracking(tracking_uri, "registry-race")
    run = _logged_run(fitted)
    register_and_maybe_promote(run, "model", "raced", "ndcg@10", 0.20, tracking_uri=tracking_uri)
    register = mlflow.register_model

    def registering_slowly(*args, **kwargs):
        monkeypatch.setattr(mlflow, "register_model", register)
        better = register_and_maybe_promote(run, "model", "raced", "ndcg@10", 0.50, tracking_uri=tracking_uri)
        assert better.promoted and better.version == "2"
        return register(*args, **kwargs)

    monkeypatch.setattr(mlflow, "register_model", registering_slowly)
    worse = register_and_maybe_promote(run, "model", "raced", "ndcg@10", 0.30, tracking_uri=tracking_uri)

    assert not worse.promoted and worse.champion_version == "2"
    assert worse.champion_value == pytest.approx(0.50)
    assert str(champion_version(MlflowClient(tracking_uri), "raced").version) == "2"


def test_two_trainers_on_one_sqlite_store_take_turns_to_compare_and_move_the_alias(
    tracking_uri, fitted, monkeypatch
):
    """The other trainer's whole promotion between this one's read of the champion and its alias move
    (milliseconds apart, but MLflow has no compare-and-set) let the worse model win; it now waits."""
    import threading

    import training.registry

    use_tracking(tracking_uri, "registry-turns")
    run = _logged_run(fitted)
    register_and_maybe_promote(run, "model", "turns", "ndcg@10", 0.20, tracking_uri=tracking_uri)
    read, other = training.registry.champion_version, []

    def promote(value):
        return register_and_maybe_promote(run, "model", "turns", "ndcg@10", value, tracking_uri=tracking_uri)

    def read_then_other_trainer_promotes(*args, **kwargs):
        champion = read(*args, **kwargs)
        if not other:
            other.append(threading.Thread(target=promote, args=(0.50,)))
            other[0].start()
            other[0].join(timeout=3)  # it finishes within its turn, or waits for ours
        return champion

    monkeypatch.setattr(training.registry, "champion_version", read_then_other_trainer_promotes)
    assert promote(0.30).promoted
    other[0].join()
    monkeypatch.undo()
    champion = champion_version(MlflowClient(tracking_uri), "turns")
    assert float(champion.tags[VALUE_TAG]) == pytest.approx(0.50)
