"""The MLflow registry's SQLite store locked by another process (a trainer registering a version, a
backup, an operator's `sqlite3` shell) while a serving replica loads the version its alias just moved
to: the alias check passed, then reading the version's artifact location failed past SQLite's busy
timeout. The load failure was taken for a broken artifact and the version was not tried again until
the alias moved: the replica served the previous model for good (`/ready`: `load-failed`) once the lock
was gone; so was a download from a tracking server restarted meanwhile. A registry that cannot be read
is now retried at the next poll, as a failed alias check is."""

from __future__ import annotations

import sqlite3

import mlflow
import pytest

from models.recommenders import make_recommender
from serving.model_store import MlflowModelSource, ModelStore
from tests.training.conftest import planted_events
from training.pyfunc import log_recommender
from training.registry import register_and_maybe_promote
from training.tracking import use_tracking


@pytest.fixture(scope="module")
def fitted():
    from features.interactions import build_interactions

    events = planted_events().rename(columns={"shopper": "user_id", "product": "item_id"})
    data = build_interactions(events, time_col=None, event_col=None, value_col=None)
    return make_recommender("popularity").fit(data)


def _register(uri: str, fitted, value: float) -> None:
    _, experiment_id = use_tracking(uri, "locked-registry")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        log_recommender(fitted)
    register_and_maybe_promote(run.info.run_id, "model", "recs", "ndcg@10", value, tracking_uri=uri)


class _LockedAfterAliasCheck(MlflowModelSource):
    """The store locked (`BEGIN EXCLUSIVE` by another connection) right after the alias is read."""

    holder: sqlite3.Connection | None = None

    def champion(self) -> str | None:
        version = super().champion()
        if self.holder is None:
            self.holder = sqlite3.connect(self.tracking_uri.removeprefix("sqlite:///"), isolation_level=None)
            self.holder.execute("BEGIN EXCLUSIVE")
        return version

    def release(self) -> None:
        self.holder.execute("ROLLBACK")
        self.holder.close()


def test_a_version_whose_load_found_the_registry_locked_is_loaded_at_the_next_poll(tracking_uri, fitted):
    _register(tracking_uri, fitted, 0.3)
    store = ModelStore(MlflowModelSource(tracking_uri, "recs", "champion"), "recs")
    assert store.refresh() and store.current.version == "1"
    _register(tracking_uri, fitted, 0.5)  # the alias moves to version 2

    locked = _LockedAfterAliasCheck(tracking_uri, "recs", "champion")
    store.source = locked
    assert not store.refresh() and store.current.version == "1"  # the lock: the previous model serves
    assert store.broken is None and store.registry_error == "unavailable"
    locked.release()
    store.source = MlflowModelSource(tracking_uri, "recs", "champion")
    assert store.refresh() and store.current.version == "2"
    assert store.registry_error is None


def test_a_version_whose_download_found_the_server_gone_is_loaded_at_the_next_poll(
    tracking_uri, fitted, monkeypatch
):
    """The same with a tracking server restarted between the alias check and the artifact's download:
    MLflow's HTTP artifact client raises its own exception while handling `requests`' (after retries)."""
    import mlflow.artifacts
    import requests
    from mlflow.exceptions import MlflowException

    _register(tracking_uri, fitted, 0.3)
    store = ModelStore(MlflowModelSource(tracking_uri, "recs", "champion"), "recs")
    assert store.refresh() and store.current.version == "1"
    _register(tracking_uri, fitted, 0.5)

    def server_gone(**kwargs):
        try:
            raise requests.exceptions.ConnectionError("Connection refused")
        except requests.RequestException as exc:
            raise MlflowException(f"API request to mlflow-artifacts failed with exception {exc}") from exc

    with monkeypatch.context() as patched:
        patched.setattr(mlflow.artifacts, "download_artifacts", server_gone)
        assert not store.refresh() and store.current.version == "1"
    assert store.broken is None and store.registry_error == "unavailable"  # was ('2', 'load-failed', ...)
    assert store.refresh() and store.current.version == "2"


@pytest.mark.parametrize(("status", "retried"), [(404, False), (503, True)])
def test_an_artifact_server_answering_4xx_leaves_the_version_broken_a_5xx_is_retried(
    tracking_uri, fitted, monkeypatch, status, retried
):
    """MLflow's artifact server answering 404 (the version's files gone from the store) was taken for a
    server that did not answer: the version was retried at every poll for good rather than reported
    broken. Only a connection failure, a timeout, retries exhausted or a 5xx are retried."""
    import mlflow.artifacts
    import requests
    from mlflow.exceptions import MlflowException

    _register(tracking_uri, fitted, 0.3)
    store = ModelStore(MlflowModelSource(tracking_uri, "recs", "champion"), "recs")
    assert store.refresh() and store.current.version == "1"
    _register(tracking_uri, fitted, 0.5)
    answer = requests.Response()
    answer.status_code = status

    def server_answers(**kwargs):
        try:
            answer.raise_for_status()
        except requests.RequestException as exc:
            raise MlflowException(f"API request to mlflow-artifacts failed with exception {exc}") from exc

    with monkeypatch.context() as patched:
        patched.setattr(mlflow.artifacts, "download_artifacts", server_answers)
        assert not store.refresh() and store.current.version == "1"
    if retried:
        assert store.broken is None and store.registry_error == "unavailable"
    else:
        assert store.broken is not None and store.broken[:2] == ("2", "load-failed")
