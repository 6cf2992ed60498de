"""Interleaving and exploration variants in serving: the page they serve and the impressions they log."""

from __future__ import annotations

import random

import pytest

from commerce.db import transaction
from commerce.experiments import create_experiment, exposure_counts, impressions, start_experiment
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
