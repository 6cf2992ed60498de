"""A/B tests in serving: a variant's `model_alias` changes the model served, and showing it logs exposures."""

from __future__ import annotations

import pytest

from commerce.db import transaction
from commerce.services.experiments import create_experiment, exposure_counts, start_experiment
from experiments.ab.assignment import ExperimentSpec, assign
from serving import fastpath
from serving.ab import ExposureLog
from tests.serving.conftest import ScriptedSource, TinyRecommender, auth

SHOPPERS = [f"u{i}" for i in range(40)]
CHAMPION_SCORES = {f"p{i:02d}": 1.0 - i / 100 for i in range(1, 9)}  # p01 best
CHALLENGER_SCORES = {f"p{i:02d}": i / 100 for i in range(1, 9)}  # p08 best


class Challenger(TinyRecommender):
    name = "challenger-model"


@pytest.fixture
def registry() -> ScriptedSource:
    return ScriptedSource(
        versions={
            "1": TinyRecommender(CHAMPION_SCORES, set(SHOPPERS)),
            "2": Challenger(CHALLENGER_SCORES, set(SHOPPERS)),
            "3": Challenger({"p07": 1.0}, set(SHOPPERS)),
        },
        alias="1",
        others={"challenger": "2"},
    )


def start(session_factory, name: str, treatment_alias: str) -> dict[str, str]:
    """Start a 50/50 experiment; returns one shopper per variant."""
    with transaction(session_factory) as s:
        create_experiment(s, name, [("control", 1, {}), ("treatment", 1, {"model_alias": treatment_alias})])
        start_experiment(s, name)
    spec = ExperimentSpec(name=name, salt=name, variants=("control", "treatment"), weights=(1, 1))
    by_variant: dict[str, str] = {}
    for shopper in SHOPPERS:
        by_variant.setdefault(assign(spec, shopper), shopper)
    return by_variant


def page(client, key, shopper):
    r = client.get(f"/v1/shoppers/{shopper}/recommendations", params={"n": 3}, headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()


def test_variant_alias_is_served_hot_swapped_and_exposed_once(make_client, registry, session_factory, keys):
    who = start(session_factory, "recs-v2", "challenger")
    client = make_client(model_source=registry)
    state = client.app.state.serving
    control = page(client, keys["storefront"], who["control"])
    treated = page(client, keys["storefront"], who["treatment"])
    assert control["experiments"] == {"recs-v2": "control"}
    assert (control["model"]["name"], control["model"]["alias"], control["model"]["version"]) == (
        "tiny",
        "champion",
        "1",
    )
    assert [i["product_id"] for i in control["items"] if not i["sponsored"]][:2] == ["p01", "p02"]
    assert treated["experiments"] == {"recs-v2": "treatment"}
    assert (treated["model"]["name"], treated["model"]["alias"], treated["model"]["version"]) == (
        "challenger-model",
        "challenger",
        "2",
    )
    assert treated["model"]["alias_fallback_reason"] is None
    assert [i["product_id"] for i in treated["items"] if not i["sponsored"]][:2] == ["p08", "p07"]
    for _ in range(3):  # seen again: still one exposure each
        page(client, keys["storefront"], who["treatment"])
    assert state.exposures.flush() == 2
    with session_factory() as s:
        assert exposure_counts(s, "recs-v2") == {"control": 1, "treatment": 1}

    registry.others["challenger"] = "3"  # the challenger alias moves: its store swaps like the champion's
    assert state.aliases.stores["challenger"].refresh()
    assert page(client, keys["storefront"], who["treatment"])["model"]["version"] == "3"
    assert page(client, keys["storefront"], who["control"])["model"]["version"] == "1"

    marketer = auth(keys["marketer"])
    assert client.post("/v1/experiments/recs-v2/stop", headers=marketer).status_code == 200
    assert state.aliases.stores == {}  # nobody serves the challenger any more
    after = page(client, keys["storefront"], who["treatment"])
    assert (after["experiments"], after["model"]["alias"]) == ({}, "champion")


def test_unknown_alias_serves_the_champion_with_a_flag_and_no_exposure(
    make_client, registry, session_factory, keys
):
    who = start(session_factory, "recs-typo", "no-such-alias")
    client = make_client(model_source=registry)
    treated = page(client, keys["storefront"], who["treatment"])
    assert (treated["model"]["alias"], treated["model"]["version"]) == ("champion", "1")
    assert "no-such-alias" in treated["model"]["alias_fallback_reason"]
    assert treated["experiments"] == {"recs-typo": "treatment"}
    page(client, keys["storefront"], who["control"])
    client.app.state.serving.exposures.flush()
    with session_factory() as s:
        assert exposure_counts(s, "recs-typo") == {"control": 1, "treatment": 0}


def test_fast_path_logs_exposures_too(make_client, registry, session_factory, keys, monkeypatch):
    who = start(session_factory, "recs-fast", "challenger")
    client = make_client(model_source=registry)
    page(client, keys["storefront"], who["control"])  # caches the key: later calls take the fast path
    answered = []
    original = fastpath.RecommendationFastPath._answer
    monkeypatch.setattr(
        fastpath.RecommendationFastPath,
        "_answer",
        lambda self, *a: answered.append(original(self, *a)) or answered[-1],
    )
    treated = page(client, keys["storefront"], who["treatment"])
    assert answered and answered[-1] is not None  # the fast path answered
    assert treated["model"]["alias"] == "challenger"
    client.app.state.serving.exposures.flush()
    with session_factory() as s:
        assert exposure_counts(s, "recs-fast") == {"control": 1, "treatment": 1}


def test_exposure_log_keeps_a_batch_when_the_database_fails(session_factory):
    with transaction(session_factory) as s:
        create_experiment(s, "e", {"a": 1, "b": 1})
        start_experiment(s, "e")

    def down():
        raise ConnectionError("database unavailable")

    log = ExposureLog(down)
    log.note("s1", [("e", "a")])
    log.note("s1", [("e", "a")])  # noted once per replica
    log.note("s2", [("e", "b"), ("missing-experiment", "x")])
    assert log.flush() == 0
    log.session_factory = session_factory
    assert log.flush() == 2  # the failed batch is retried; the unknown experiment is dropped
    assert log.flush() == 0
    with session_factory() as s:
        assert exposure_counts(s, "e") == {"a": 1, "b": 1}
