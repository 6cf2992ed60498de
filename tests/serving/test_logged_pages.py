"""Interleaving and exploration variants in serving: the page they serve and the impressions they log."""

from __future__ import annotations

import random

import pytest

from commerce.db import transaction
from commerce.services.experiments import create_experiment, exposure_counts, impressions, start_experiment
from experiments.ab.assignment import ExperimentSpec, assign
from tests.serving.test_ab_serving import SHOPPERS, page, registry  # noqa: F401 (fixture)


def start(session_factory, name: str, configs: dict[str, dict]) -> dict[str, str]:
    with transaction(session_factory) as s:
        create_experiment(s, name, [(v, 1, c) for v, c in configs.items()])
        start_experiment(s, name)
    spec = ExperimentSpec(name=name, salt=name, variants=tuple(configs), weights=(1,) * len(configs))
    who: dict[str, str] = {}
    for shopper in SHOPPERS:
        who.setdefault(assign(spec, shopper), shopper)
    return who


def test_interleaved_page_drafts_both_aliases_and_logs_teams(make_client, registry, session_factory, keys):  # noqa: F811
    who = start(
        session_factory, "il", {"control": {}, "interleaved": {"interleave": ["champion", "challenger"]}}
    )
    client = make_client(model_source=registry)
    state = client.app.state.serving
    shopper = who["interleaved"]
    got = page(client, keys["storefront"], shopper)
    assert got["model"]["alias"] == "champion+challenger"
    shown = [i["product_id"] for i in got["items"]]
    assert not any(i["sponsored"] for i in got["items"])
    # The champion ranks p01 first and the challenger p08: a team draft's first round shows both.
    assert set(shown[:2]) == {"p01", "p08"} and len(set(shown)) == len(shown) == 3
    page(client, keys["storefront"], shopper)
    page(client, keys["storefront"], who["control"])
    state.exposures.flush()
    with session_factory() as s:
        rows = impressions(s, "il")
        assert exposure_counts(s, "il") == {"control": 1, "interleaved": 1}
    assert len({r["page_id"] for r in rows}) == 2 and len(rows) == 6  # every page, control pages not logged
    first = [r for r in rows if r["page_id"] == rows[0]["page_id"]]
    assert [r["slot"] for r in first] == [0, 1, 2]
    assert {r["team"] for r in first[:2]} == {"champion", "challenger"}
    assert all(r["propensity"] is None and r["unit_id"] == shopper for r in rows)
    teams = {r["product_id"]: r["team"] for r in first}
    assert teams.get("p01", "champion") == "champion" and teams.get("p08", "challenger") == "challenger"


def test_exploration_logs_exact_propensities(make_client, registry, session_factory, keys, monkeypatch):  # noqa: F811
    from serving import logged_pages

    who = start(
        session_factory, "ex", {"control": {}, "explore": {"model_alias": "challenger", "explore": 0.5}}
    )
    client = make_client(model_source=registry)
    state = client.app.state.serving
    shopper = who["explore"]
    monkeypatch.setattr(logged_pages, "_rng", random.Random(1))
    pages = [page(client, keys["storefront"], shopper) for _ in range(30)]
    state.exposures.flush()
    with session_factory() as s:
        rows = impressions(s, "ex")
    assert len({r["page_id"] for r in rows}) == 30
    explored = [p for p in pages if any(i["reason"] == "exploration" for i in p["items"])]
    assert 0 < len(explored) < 30  # some pages explore, most do not (epsilon 0.5)
    model_page = [i["product_id"] for i in next(p for p in pages if p not in explored)["items"]]
    assert model_page[:2] == ["p08", "p07"]
    props = {round(r["propensity"], 6) for r in rows}
    # eligible pool m: model's product at its slot 0.5 + 0.5 / m, any other 0.5 / m
    m = round(0.5 / min(props))
    assert props <= {round(0.5 + 0.5 / m, 6), round(0.5 / m, 6)}
    assert m >= 3
    for r in rows:
        on_model = model_page[r["slot"]] == r["product_id"]
        assert r["propensity"] == pytest.approx(0.5 * on_model + 0.5 / m)


def test_results_endpoint_reports_sequential_and_interleaving(
    make_client,
    registry,  # noqa: F811
    session_factory,
    keys,
):
    from datetime import UTC, datetime, timedelta

    from commerce.services.events import record_events
    from tests.serving.conftest import auth

    configs = {"control": {}, "interleaved": {"interleave": ["champion", "challenger"]}}
    start(session_factory, "il-results", configs)
    client = make_client(model_source=registry)
    state = client.app.state.serving
    pages = {s: page(client, keys["storefront"], s) for s in SHOPPERS}
    state.exposures.flush()
    later = datetime.now(UTC) + timedelta(seconds=5)
    views = []
    for s, got in pages.items():
        if got["experiments"].get("il-results") == "interleaved":
            views.append(
                {
                    "event_id": f"v-{s}",
                    "ts": later,
                    "shopper_id": s,
                    "product_id": "p08",
                    "event_type": "view",
                }
            )
    with transaction(session_factory) as s:
        record_events(s, views)
    marketer = auth(keys["marketer"])
    r = client.get("/v1/experiments/il-results/results", params={"method": "msprt"}, headers=marketer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "msprt" and body["sequential"]["comparisons"][0]["looks"]
    levels = {(c["segment"], c["level"]) for c in body["segments"]["cells"]}
    assert levels == {("new_vs_returning", "new"), ("fulfillment", "none"), ("price_level", "none")}
    il = body["interleaving"]
    assert il["wins_b"] == 0 and il["wins_a"] == len(views) > 3 and il["teams"]["A"] == "challenger"
    default = client.get("/v1/experiments/il-results/results", headers=marketer).json()
    assert default["method"] == "fixed"  # the experiment's inference (created without one: fixed)
    # A fixed test without a planned horizon calls nothing: its per-look p-values are naive peeking only.
    fixed = default["sequential"]["comparisons"][0]
    assert fixed["verdict"].startswith("no planned horizon") and not fixed["plan_complete"]
    assert all("reject" not in look and "naive_reject" in look for look in fixed["looks"])
    assert default["interleaving"]["winner"] in ("challenger", None)
    created = client.post(
        "/v1/experiments",
        json={
            "name": "seq",
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
            "inference": "msprt",
        },
        headers=marketer,
    )
    assert created.status_code == 201 and created.json()["inference"] == "msprt"
    for bad in ({"interleave": ["champion"]}, {"interleave": ["a", "a"]}, {"explore": 1.5}):
        r = client.post(
            "/v1/experiments",
            json={
                "name": "bad",
                "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "config": bad}],
            },
            headers=marketer,
        )
        assert r.status_code == 422, bad
    r = client.get("/v1/experiments/il-results/results", params={"candidate": "nope"}, headers=marketer)
    assert r.status_code == 422 and "not loaded" in r.text
    assert (
        client.get("/v1/experiments/il-results/results", headers=auth(keys["storefront"])).status_code == 403
    )
