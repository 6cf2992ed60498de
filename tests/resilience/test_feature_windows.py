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
