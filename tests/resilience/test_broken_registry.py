"""Round 6: the MLflow registry's SQLite file missing, empty, overwritten or cut short, and a champion
whose artifact was removed, at serve start, at a model reload and under `crosscart doctor`.

MLflow creates a registry file that is missing (and fills an empty one): a lost `mlflow.db` became an
empty registry, "no model registered", and `crosscart doctor` created it while checking. A file that is
not SQLite read as "unreachable: DatabaseError". Doctor passed a champion whose artifact was gone.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from crosscart.cli import app as cli
from crosscart.settings import get_settings
from models.recommenders import make_recommender
from serving.model_store import MlflowModelSource, ModelStore
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth
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


@pytest.fixture
def registry(tracking_uri, fitted) -> tuple[str, Path]:
    """(tracking URI, database file) of a registry whose `recs@champion` is version 1."""
    _, experiment_id = use_tracking(tracking_uri, "broken-registry")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        log_recommender(fitted)
    register_and_maybe_promote(run.info.run_id, "model", "recs", "ndcg@10", 0.3, tracking_uri=tracking_uri)
    return tracking_uri, Path(tracking_uri.removeprefix("sqlite:///"))


def _doctor(monkeypatch, tmp_path, uri: str) -> dict[str, dict]:
    env = {"DATA_DIR": str(tmp_path), "MLFLOW_URI": uri, "MODEL_NAME": "recs", "REDIS_URL": ""}
    for name, value in env.items():
        monkeypatch.setenv(f"CROSSCART_{name}", value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["doctor", "--json"])
    finally:
        get_settings.cache_clear()
    return {c["name"]: c for c in map(json.loads, result.stdout.splitlines())}


SPOILED = {  # how the file was spoiled -> what doctor says, what serving says
    "missing": (lambda path: path.unlink(), "missing", "missing"),
    "empty": (lambda path: path.write_bytes(b""), "empty", "corrupt"),
    "overwritten": (
        lambda path: path.write_bytes(b"<html>502 Bad Gateway</html>" * 100),
        "not a SQLite",
        "corrupt",
    ),
}


@pytest.mark.parametrize("spoil", SPOILED)
def test_a_spoiled_registry_file_is_named_never_recreated_and_the_loaded_model_keeps_serving(
    registry, spoil, monkeypatch, tmp_path
):
    uri, path = registry
    store = ModelStore(MlflowModelSource(uri, "recs", "champion"), "recs")
    assert store.refresh() and store.current.version == "1" and store.registry_error is None
    healthy = path.read_bytes()

    damage, said, code = SPOILED[spoil]
    damage(path)
    assert not store.refresh()  # the model loaded before keeps serving
    assert store.current.version == "1" and store.current.recommender is not None
    assert store.registry_error == code  # one word in /ready: the path only in the log and doctor
    checks = _doctor(monkeypatch, tmp_path, uri)
    assert checks["mlflow"]["status"] == "fail" and said in checks["mlflow"]["detail"]
    assert str(path) in checks["mlflow"]["detail"]
    assert spoil != "missing" or not path.exists()  # neither serving nor doctor made a new empty one

    fresh = ModelStore(MlflowModelSource(uri, "recs", "champion"), "recs")  # a replica started now
    assert fresh.refresh() and fresh.current.recommender is None
    assert fresh.current.fallback_reason == f"registry {code}" and fresh.registry_error == code

    path.write_bytes(healthy)  # restored from the backup
    assert not store.refresh() and store.registry_error is None and store.current.version == "1"


def test_a_registry_cut_short_keeps_the_loaded_model(registry):
    uri, path = registry
    store = ModelStore(MlflowModelSource(uri, "recs", "champion"), "recs")
    assert store.refresh() and store.current.version == "1"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # a copy or restore cut short: the header survives
    assert not store.refresh() and store.current.version == "1"
    assert store.registry_error == "unavailable"


def test_ready_names_the_missing_registry_file_at_start(tmp_path, open_client):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    missing = tmp_path / "nowhere" / "mlflow.db"
    source = MlflowModelSource(f"sqlite:///{missing}", "recs", "champion")
    client = open_client(fault_settings(tmp_path), factory, model_source=source)
    ready = client.get("/ready")
    assert ready.status_code == 200  # serving from popularity, knowingly
    body = ready.json()
    assert body["registry_error"] == "missing" and str(missing) not in ready.text
    assert body["fallback_reason"] == "registry missing" and not missing.exists()


def test_doctor_fails_a_champion_whose_artifact_is_gone(registry, monkeypatch, tmp_path):
    uri, path = registry
    checks = _doctor(monkeypatch, tmp_path, uri)
    assert checks["recommender"]["status"] == "ok" and "version 1" in checks["recommender"]["detail"]
    (artifact,) = (path.parent / "mlartifacts").rglob("*.joblib")
    artifact.unlink()  # the artifact store lost the file (a partial restore, a cleanup job)
    checks = _doctor(monkeypatch, tmp_path, uri)
    assert checks["recommender"]["status"] == "fail" and "missing" in checks["recommender"]["detail"]
    assert "restore the artifact store" in checks["recommender"]["fix"]
    store = ModelStore(MlflowModelSource(uri, "recs", "champion"), "recs")  # and serving falls back
    assert store.refresh() and store.current.recommender is None
    assert store.broken[:2] == ("1", "load-failed")


def test_registry_routes_answer_503_for_a_spoiled_file(registry, tmp_path, open_client):
    """`/v1/models` and promotions on a registry file overwritten were 500s (with the registry's SQL in
    the log), and on a missing one an empty list ("nothing registered") from a registry they created."""
    uri, path = registry
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    client = open_client(fault_settings(tmp_path, mlflow_uri=uri, model_name="recs"), factory)
    admin = auth(keys["admin"])
    promote = "/v1/models/recs/aliases/champion"
    listed = {m["name"]: m["versions"] for m in client.get("/v1/models", headers=admin).json()}
    assert [v["version"] for v in listed["recs"]] == ["1"]
    for spoil in (
        lambda: path.write_bytes(b"\0" * 4096),
        path.unlink,
    ):
        spoil()
        for r in (  # the promotion first: it empties the routes' registry cache
            client.put(promote, json={"version": "1"}, headers=admin),
            client.get("/v1/models", headers=admin),
        ):
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "unavailable" and r.headers["retry-after"] == "5"
            assert str(path) not in r.text
    assert not path.exists()
