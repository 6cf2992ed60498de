"""A feature build asked for a time before every event (a mistyped `--as-of`, a window before the data)
wrote empty feature tables over the previous ones, exit 0: `features build` published 0 shoppers where
there had been 600, `features job` empty interactions/ and feature parts, `features price-sensitivity`
every shopper's estimates at 0 (the prior alone). Each now refuses the window with
one line naming the events and the first event's time, exit 1, the previous outputs kept."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from crosscart.cli import app
from features.synth import generate_marketplace

BEFORE_THE_DATA = "2020-01-01"


@pytest.fixture(scope="module")
def tiny_market(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "market"
    generate_marketplace(out, "tiny", seed=3)
    return out.resolve()


@pytest.mark.parametrize(
    ("command", "table"),
    [("build", "shopper_features.parquet"), ("job", "interactions"), ("price-sensitivity", "")],
)
def test_a_feature_window_with_no_event_is_refused_and_keeps_the_previous_tables(
    tiny_market, tmp_path, command, table
):
    out = tmp_path / ("sensitivity.parquet" if command == "price-sensitivity" else "features")
    args = ["features", command, "--data", str(tiny_market), "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = pd.read_parquet(out / table)
    assert len(before) > 0

    result = CliRunner().invoke(app, [*args, "--as-of", BEFORE_THE_DATA])

    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert str(tiny_market / "events") in lines[0] and "no event before 2020-01-01" in lines[0]
    pd.testing.assert_frame_equal(pd.read_parquet(out / table), before)


def test_the_window_ends_just_after_the_first_event(tiny_market, tmp_path):
    """Events strictly before `as_of` count: at the first event's time the window is empty, a
    microsecond later it holds that event."""
    first = pd.read_parquet(tiny_market / "events", columns=["ts"])["ts"].min()
    out = tmp_path / "features"
    args = ["features", "build", "--data", str(tiny_market), "--out", str(out), "--as-of"]
    assert CliRunner().invoke(app, [*args, first.isoformat()]).exit_code == 1
    later = first + pd.Timedelta(microseconds=1)
    result = CliRunner().invoke(app, [*args, later.isoformat()])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "shopper_features.parquet")
    assert len(table) > 0 and (table["as_of"] == later).all()


def _last_event(market) -> pd.Timestamp:
    return pd.read_parquet(market / "events", columns=["ts"])["ts"].max()


@pytest.mark.parametrize("when", ["late", "future"])
@pytest.mark.parametrize(
    ("command", "table"),
    [("build", "shopper_features.parquet"), ("job", "interactions"), ("price-sensitivity", "")],
)
def test_an_as_of_after_the_data_is_refused_and_keeps_the_previous_tables(
    tiny_market, tmp_path, command, table, when
):
    """An `--as-of` more than AS_OF_TOLERANCE_DAYS after the last event (a year typed wrong, an old
    export), or in the future, was taken as asked: every recency measured from it, published, exit 0."""
    from features.tables import AS_OF_TOLERANCE_DAYS

    out = tmp_path / ("sensitivity.parquet" if command == "price-sensitivity" else "features")
    args = ["features", command, "--data", str(tiny_market), "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = pd.read_parquet(out / table)
    late = _last_event(tiny_market) + pd.Timedelta(days=AS_OF_TOLERANCE_DAYS, microseconds=1)
    as_of = late if when == "late" else pd.Timestamp.now("UTC") + pd.Timedelta(days=1)

    result = CliRunner().invoke(app, [*args, "--as-of", as_of.isoformat()])

    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tiny_market / 'events'}: as-of "), result.output
    said = "in the future" if when == "future" else f"more than {AS_OF_TOLERANCE_DAYS} day after the last"
    assert said in lines[0], result.output
    pd.testing.assert_frame_equal(pd.read_parquet(out / table), before)


def test_an_as_of_up_to_the_tolerance_after_the_last_event_is_taken(tiny_market, tmp_path):
    """A feature job run the day after the export: at most AS_OF_TOLERANCE_DAYS after the last event."""
    from features.tables import AS_OF_TOLERANCE_DAYS

    as_of = _last_event(tiny_market) + pd.Timedelta(days=AS_OF_TOLERANCE_DAYS)
    out = tmp_path / "features"
    args = ["features", "build", "--data", str(tiny_market), "--out", str(out), "--as-of", as_of.isoformat()]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (pd.read_parquet(out / "shopper_features.parquet")["as_of"] == as_of).all()


@pytest.mark.parametrize("shift_days", [200, -200], ids=["after", "before"])
@pytest.mark.parametrize("command", ["training-set", "job"])
def test_labels_outside_the_events_span_are_refused_and_nothing_is_written(
    tiny_market, tmp_path, command, shift_days
):
    """Labels after the events (more than AS_OF_TOLERANCE_DAYS) got features measured from a time the data
    does not reach, labels before them empty features, and the training set was written, exit 0;
    `features job --labels` published its feature outputs first."""
    from tests.resilience.test_corrupt_inputs import write_labels

    labels = write_labels(tiny_market, tmp_path / "labels.parquet", pd.Timedelta(days=shift_days))
    out = tmp_path / ("training.parquet" if command == "training-set" else "features")
    args = ["features", command, "--data", str(tiny_market), "--labels", str(labels), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, *(["--cluster", ""] if command == "job" else [])])

    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {labels}: labels from "), result.output
    assert f"outside the span of the events in {tiny_market / 'events'}" in lines[0], result.output
    assert not out.exists()
