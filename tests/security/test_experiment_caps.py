"""Running experiments past the start caps (docs/experiments.md, "Start caps"): started through
`commerce.services.experiments.start_experiment` directly (seeding, an import) or before the caps existed.
`serving.ab.start_experiment` refuses the start past a cap, but every replica loaded whatever was running:
every experiment assigned on every page and a model store per alias, without bound. A replica now serves
those the caps admit in the order they started, warns once, and `crosscart doctor` names the others."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from commerce.db import transaction
from commerce.services import experiments as store
from serving.ab import MAX_EXPERIMENT_ALIASES, MAX_RUNNING_EXPERIMENTS
from serving.app import create_app
from tests.security.test_round12_attack import PLAIN, _aliased
from tests.serving.conftest import ScriptedSource

PLAINS = [f"plain{i}" for i in range(MAX_RUNNING_EXPERIMENTS + 2)]
# Started in this order (created in another: the plain ones first, so ids are not the start order).
STARTS = ["wide", "mid", "small", *PLAINS]
# wide's 6 aliases, mid's 3 would make 9 (left out), small's 2 make 8; 30 plain ones fill the 32.
SERVED = ["wide", "small", *PLAINS[: MAX_RUNNING_EXPERIMENTS - 2]]
LEFT_OUT = ["mid", *PLAINS[MAX_RUNNING_EXPERIMENTS - 2 :]]


def running_past_both_caps(factory) -> None:
    """37 experiments running, serving 11 aliases, all started with no cap checked."""
    variants = {name: PLAIN for name in PLAINS}
    variants |= {"wide": _aliased("w", 6), "mid": _aliased("m", 3), "small": _aliased("s", 2)}
    with transaction(factory) as s:
        for name, vs in variants.items():
            store.create_experiment(s, name, [(v["name"], v["weight"], v.get("config")) for v in vs])
    for name in STARTS:
        with transaction(factory) as s:
            store.start_experiment(s, name)


def replica_app(factory, settings):
    """A replica over `factory` with scripted models and no background refresh (the test refreshes)."""
    return create_app(
        settings,
        session_factory=factory,
        model_source=ScriptedSource(),
        uplift_source=ScriptedSource(),
        delivery_source=ScriptedSource(),
        start_background=False,
    )


@pytest.fixture
def replica(factory, settings):  # factory: SQLite and PostgreSQL (tests/commerce)
    running_past_both_caps(factory)
    app = replica_app(factory, settings)
    with TestClient(app):
        yield app.state.serving


def test_a_replica_serves_only_the_experiments_the_caps_admit(replica, factory, caplog):
    """37 running experiments serving 11 aliases besides the champion were all loaded (11 model stores).
    Now the replica serves the first 32 by start time whose aliases fit the 8 (in id order, as pages are
    decided), loads 8 stores, and warns once naming the ones left out, not on every refresh; stopping
    some lets the others in at the next refresh."""
    loaded = [e.spec.name for e in replica.experiments.current]
    assert (len(loaded), len(replica.aliases.stores)) == (MAX_RUNNING_EXPERIMENTS, MAX_EXPERIMENT_ALIASES)
    assert loaded == [*SERVED[2:], "wide", "small"]  # by id: the plain ones were created first
    assert set(replica.aliases.stores) == {f"w-{j}" for j in range(6)} | {"s-0", "s-1"}
    with caplog.at_level(logging.WARNING, logger="serving.ab"):
        assert replica.experiments.refresh()
    assert [r.getMessage() for r in caplog.records if r.name == "serving.ab"] == []  # said at start-up
    with transaction(factory) as s:
        for name in ("wide", *PLAINS[:4]):
            store.stop_experiment(s, name)
    with caplog.at_level(logging.INFO, logger="serving.ab"):
        assert replica.experiments.refresh()
    assert len(replica.experiments.current) == MAX_RUNNING_EXPERIMENTS  # mid fits once wide is stopped
    assert set(replica.aliases.stores) == {"m-0", "m-1", "m-2", "s-0", "s-1"}
    said = [r.getMessage() for r in caplog.records if r.name == "serving.ab"]
    assert said == ["every running experiment is within the start caps again: serving 32"]


def test_the_warning_names_what_is_left_out(factory, settings, caplog):
    running_past_both_caps(factory)
    with caplog.at_level(logging.WARNING, logger="serving.ab"):
        with TestClient(replica_app(factory, settings)):
            pass
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "serving.ab"]
    assert "37 experiments are running" in warning and "replicas serve 32" in warning, warning
    assert all(repr(name) in warning for name in LEFT_OUT), warning
