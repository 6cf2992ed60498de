"""Model loading, fallback to popularity and hot swap without dropping requests."""

from __future__ import annotations

import threading

from serving.model_store import MlflowModelSource, ModelStore
from tests.serving.conftest import ScriptedSource, TinyRecommender, auth, scrape


def page(client, key):
    r = client.get("/v1/shoppers/s1/recommendations", params={"n": 4}, headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()


def test_empty_registry_serves_popularity_with_flag(make_client, keys):
    client = make_client(model_source=ScriptedSource())
    body = page(client, keys["storefront"])
    assert body["model"]["fallback"] is True
    assert body["model"]["name"] == "popularity"
    assert "no model registered" in body["model"]["fallback_reason"]
    assert [i["product_id"] for i in body["items"] if not i["sponsored"]][:2] == ["p05", "p06"]
    assert client.get("/ready").json()["fallback_reason"].startswith("no model registered")
    assert "crosscart_recommendation_fallbacks_total 1.0" in scrape(client)


def test_corrupt_artifact_serves_popularity(make_client, keys):
    client = make_client(model_source=ScriptedSource(versions={}, alias="7", broken={"7"}))
    body = page(client, keys["storefront"])
    assert body["model"]["fallback"] is True
    assert body["model"]["version"] == "7"
    assert "failed to load" in body["model"]["fallback_reason"]


def test_empty_mlflow_registry_falls_back(tracking_uri):
    """The real registry client: a fresh MLflow database has no champion."""
    source = MlflowModelSource(tracking_uri, "crosscart-recommender", "champion")
    store = ModelStore(source, "crosscart-recommender")
    store.refresh()
    assert store.current.recommender is None
    assert store.current.fallback_reason == "no model registered as crosscart-recommender"


def test_alias_move_swaps_and_bad_new_version_keeps_old(source):
    store = ModelStore(source, "m")
    assert store.refresh() and store.current.version == "1"
    assert not store.refresh()  # alias unchanged: no reload
    assert source.loads == 1
    source.broken.add("2")
    source.alias = "2"
    assert not store.refresh()
    assert store.current.version == "1"  # a corrupt new version never replaces a working one
    source.versions["3"] = TinyRecommender({"p02": 1.0}, {"s1"})
    source.alias = "3"
    assert store.refresh() and store.current.version == "3"
    source.alias = None
    assert not store.refresh() and store.current.version == "3"  # alias removed: keep serving


def test_hot_swap_under_load_fails_no_request(make_client, keys, source):
    client = make_client()
    state = client.app.state.serving
    source.versions["2"] = TinyRecommender({"p02": 1.0, "p05": 0.5}, {"s1"})
    failures, versions = [], set()
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            r = client.get(
                "/v1/shoppers/s1/recommendations", params={"n": 4}, headers=auth(keys["storefront"])
            )
            if r.status_code != 200:
                failures.append(r.status_code)
            else:
                versions.add(r.json()["model"]["version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for alias in ["2", "1", "2", "1", "2"]:
        source.alias = alias
        state.models.refresh()
        threading.Event().wait(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert versions == {"1", "2"}
    assert state.models.swaps == 6  # the initial load plus five moves


def test_registry_read_overlapping_an_alias_move_is_not_cached(monkeypatch):
    """A page read in flight while an admin moves `champion` must not re-cache the old alias for 15 s."""
    import training.registry_view
    from serving.routers.models import RegistryCache

    registry = {"champion": "4"}
    reading, release = threading.Event(), threading.Event()

    def model_versions(uri, name):
        seen = dict(registry)  # the read's snapshot, taken before the move below
        if not release.is_set():
            reading.set()
            release.wait(10)
        return [seen]

    monkeypatch.setattr(training.registry_view, "model_versions", model_versions)
    cache = RegistryCache(ttl=60)
    slow: list = []
    reader = threading.Thread(target=lambda: slow.extend(cache.versions("uri", "m")))
    reader.start()
    assert reading.wait(10)
    registry["champion"] = "1"  # the move, then move_alias's clear, both while the read is in flight
    cache.clear()
    release.set()
    reader.join(10)
    assert slow == [{"champion": "4"}]  # that reader began before the move
    assert cache.versions("uri", "m") == [{"champion": "1"}]  # later ones see it at once
    registry["champion"] = "2"  # a move by another replica: this one's cache holds within the TTL
    assert cache.versions("uri", "m") == [{"champion": "1"}]
