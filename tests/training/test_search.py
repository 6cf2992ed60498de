"""Search-space, grid and parameter parsing, and the seeded optuna study (no MLflow)."""

from __future__ import annotations

import pytest

from training.search import (
    Dimension,
    grid_points,
    grid_size,
    make_study,
    parse_grid,
    parse_params,
    parse_space,
    parse_value,
)


def test_values_are_typed_like_the_command_line_means_them():
    assert parse_value("10") == 10 and isinstance(parse_value("10"), int)
    assert parse_value("0.1") == 0.1
    assert parse_value("1e-3") == 0.001
    assert parse_value("TRUE") is True and parse_value("false") is False
    assert parse_value("none") is None
    assert parse_value("bm25") == "bm25"
    assert parse_params(["factors=64", "weighting=bm25"]) == {"factors": 64, "weighting": "bm25"}


@pytest.mark.parametrize("bad", [["factors"], ["=3"], ["k="], ["k=1", "k=2"]])
def test_bad_params_are_refused(bad):
    with pytest.raises(ValueError):
        parse_params(bad)


def test_space_ranges_and_choices():
    dims = parse_space("factors=16..128:log,regularization=0.001..0.1:log,alpha=1..10,weighting=cosine|bm25")
    assert dims == [
        Dimension("factors", 16, 128, log=True, integer=True),
        Dimension("regularization", 0.001, 0.1, log=True, integer=False),
        Dimension("alpha", 1, 10, log=False, integer=True),
        Dimension("weighting", choices=("cosine", "bm25")),
    ]


@pytest.mark.parametrize(
    "bad",
    ["", "factors=128..16", "factors=0..10:log", "factors=1..10:exp", "factors=a..b", "k=1..5,k=2..6", "k=5"],
)
def test_bad_spaces_are_refused(bad):
    with pytest.raises(ValueError):
        parse_space(bad)


def test_grid_from_repeated_options_or_semicolons():
    assert parse_grid(["k=10,50,100"]) == {"k": [10, 50, 100]}
    grid = parse_grid(["k=10,50; shrink=0,10"])
    assert grid == {"k": [10, 50], "shrink": [0, 10]}
    assert grid_size(grid) == 4
    assert grid_points(grid) == [
        {"k": 10, "shrink": 0},
        {"k": 10, "shrink": 10},
        {"k": 50, "shrink": 0},
        {"k": 50, "shrink": 10},
    ]
    with pytest.raises(ValueError):
        parse_grid(["k=1", "k=2"])
    with pytest.raises(ValueError):
        parse_grid([""])


def test_seeded_study_proposes_the_same_points():
    dims = parse_space("factors=16..128:log,regularization=0.001..0.1:log")

    def proposals(seed):
        study = make_study("maximize", seed)
        points = []
        for _ in range(5):
            trial = study.ask()
            params = {d.name: d.suggest(trial) for d in dims}
            study.tell(trial, params["factors"] * params["regularization"])
            points.append(params)
        return points

    first, again, other = proposals(3), proposals(3), proposals(4)
    assert first == again
    assert first != other
    assert all(16 <= p["factors"] <= 128 and isinstance(p["factors"], int) for p in first)
    assert all(0.001 <= p["regularization"] <= 0.1 for p in first)
