"""Experiment definitions, layers and exposure logging on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.errors import Conflict, InvalidState, NotFound, ValidationError
from commerce.experiments import TABLES
from commerce.services import experiments as ex
from experiments.ab.assignment import ExperimentSpec, assign


@pytest.fixture
def factory(database_url):
    engine = make_engine(database_url)
    Base.metadata.create_all(engine, tables=TABLES)
    yield make_session_factory(engine)
    engine.dispose()


def test_lifecycle_and_config(factory):
    with transaction(factory) as s:
        ex.create_experiment(s, "rec", {"control": 1, "challenger": 1}, planned_units_per_variant=500)
    with transaction(factory) as s:
        assert ex.running_configs(s) == []
        ex.start_experiment(s, "rec")
    with transaction(factory) as s:
        (config,) = ex.running_configs(s)
        spec = ExperimentSpec.from_config(config)
        assert spec.variants == ("control", "challenger")
        assert config["planned_units_per_variant"] == 500
        with pytest.raises(InvalidState):
            ex.start_experiment(s, "rec")
        ex.stop_experiment(s, "rec")
    with transaction(factory) as s:
        assert [e.status for e in ex.list_experiments(s).items] == ["stopped"]
        with pytest.raises(NotFound):
            ex.get_experiment(s, "nope")


def test_duplicates_and_bad_input(factory):
    with transaction(factory) as s:
        ex.create_experiment(s, "e", {"a": 1, "b": 1})
    with pytest.raises(Conflict), transaction(factory) as s:
        ex.create_experiment(s, "e", {"a": 1, "b": 1})
    for variants in ({"a": 1}, {"a": 1, "b": -1}, [("a", 1), ("a", 2)]):
        with pytest.raises(ValidationError), transaction(factory) as s:
            ex.create_experiment(s, "f", variants)


def test_layer_slices_are_disjoint_and_freed_on_stop(factory):
    with transaction(factory) as s:
        a = ex.create_experiment(s, "a", {"c": 1, "t": 1}, layer="home", traffic=0.6)
        b = ex.create_experiment(s, "b", {"c": 1, "t": 1}, layer="home", traffic=0.4)
        assert (a.traffic_start, a.traffic_end) == (0.0, 0.6)
        assert (b.traffic_start, b.traffic_end) == pytest.approx((0.6, 1.0))
        with pytest.raises(Conflict, match="no free slice"):
            ex.create_experiment(s, "c", {"c": 1, "t": 1}, layer="home", traffic=0.1)
    with transaction(factory) as s:
        ex.start_experiment(s, "a")
        ex.start_experiment(s, "b")
    with transaction(factory) as s:
        specs = [ExperimentSpec.from_config(c) for c in ex.running_configs(s)]
        assert all(sum(assign(sp, f"u{i}") is not None for sp in specs) == 1 for i in range(2000))
        ex.stop_experiment(s, "a")
    with transaction(factory) as s:
        c = ex.create_experiment(s, "c", {"c": 1, "t": 1}, layer="home", traffic=0.5)
        assert (c.traffic_start, c.traffic_end) == (0.0, 0.5)


def test_exposures_logged_once_per_unit(factory):
    with transaction(factory) as s:
        ex.create_experiment(s, "rec", [("control", 1, {"model_alias": "champion"}), ("t", 1)])
        with pytest.raises(InvalidState):
            ex.record_exposure(s, "rec", "control", "u1")
        ex.start_experiment(s, "rec")
    with transaction(factory) as s:
        assert ex.record_exposure(s, "rec", "control", "u1") is True
        assert ex.record_exposure(s, "rec", "control", "u1") is False
        assert ex.record_exposure(s, "rec", "t", "u2") is True
        with pytest.raises(ValidationError):
            ex.record_exposure(s, "rec", "nope", "u3")
    with transaction(factory) as s:
        assert ex.exposure_counts(s, "rec") == {"control": 1, "t": 1}
        rows = ex.exposures(s, "rec")
        assert [(r["unit_id"], r["variant"], r["event_type"]) for r in rows] == [
            ("u1", "control", "exposure"),
            ("u2", "t", "exposure"),
        ]
        assert rows[0]["ts"].tzinfo is not None
        assert ex.get_experiment(s, "rec").as_config()["variants"][0]["config"] == {"model_alias": "champion"}
