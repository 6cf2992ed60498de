"""An MLflow server that accepts connections and never answers: readiness and the model polls are not
held by it, and the registry's routes answer 503 instead of hanging (or reading as "nothing
registered")."""

from __future__ import annotations

import threading

import pytest

from bench.faultkit import FrozenServer
from serving.model_store import MLFLOW_HTTP_BOUNDS, MlflowModelSource, ModelStore, bound_mlflow_waits
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth

REGISTRY_PORT = 18752
ANSWER_WITHIN = 60  # seconds: the test's own bound is 1 s a call; MLflow's defaults take over 15 minutes


@pytest.fixture
def frozen_registry(monkeypatch):
    """The registry URI of a frozen MLflow, with serving's bounds shortened to 1 s and no retry."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = FrozenServer(REGISTRY_PORT)
    yield f"http://127.0.0.1:{REGISTRY_PORT}"
    server.close()


def _within(seconds: float, call, *args, **kwargs):
    """`call(*args, **kwargs)`'s result, failing the test if it has not returned after `seconds`."""
    results: list = []
    worker = threading.Thread(target=lambda: results.append(call(*args, **kwargs)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{call} still waiting after {seconds} s"
    return results[0]


def test_serving_bounds_mlflow_waits_unless_the_operator_did():
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    bound_mlflow_waits(environ)
    assert environ == {**MLFLOW_HTTP_BOUNDS, "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def test_a_frozen_registry_leaves_the_store_decided_on_the_fallback(frozen_registry):
    store = ModelStore(MlflowModelSource(frozen_registry, "recommender", "champion"), "recommender")
    _within(ANSWER_WITHIN, store.refresh)
    assert store.decided and store.current.fallback_reason == "registry unavailable"


def test_registry_routes_answer_503_while_it_is_frozen(frozen_registry, tmp_path, open_client):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    settings = fault_settings(tmp_path, mlflow_uri=frozen_registry)
    client = open_client(settings, factory)
    admin = auth(keys["admin"])
    promote = f"/v1/models/{settings.model_name}/aliases/champion"
    for r in (
        _within(ANSWER_WITHIN, client.get, "/v1/models", headers=admin),  # was 200 [] ("none registered")
        _within(ANSWER_WITHIN, client.put, promote, json={"version": "1"}, headers=admin),  # was 404
    ):
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "unavailable" and int(r.headers["retry-after"]) > 0
        assert "18752" not in r.text  # no internals
    # the models that were being served still are
    assert client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["storefront"])).status_code == 200
