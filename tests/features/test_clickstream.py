"""The raw click-stream generator has the traits that make public e-commerce streams hard."""

from __future__ import annotations

import pandas as pd
import pytest

from features.synth.clickstream import DAY, click_stream


def test_stream_has_short_visits_repeats_a_long_tail_and_time_order():
    clicks = click_stream(8_000, 2_000, days=10, seed=4)
    assert list(clicks.columns) == ["session_id", "item_id", "ts"] and clicks["ts"].dtype == float
    lengths = clicks.groupby("session_id").size()
    assert 0.3 < (lengths == 1).mean() < 0.45 and 0.15 < (lengths == 2).mean() < 0.3
    assert lengths.max() >= 15  # a long browsing tail
    assert 0.1 < clicks.duplicated(["session_id", "item_id"]).mean() < 0.4  # repeated clicks
    counts = clicks["item_id"].value_counts()
    assert (counts == 1).sum() > 50  # items seen once
    assert counts.iloc[: len(counts) // 100].sum() / len(clicks) > 0.15  # power-law popularity
    assert clicks["ts"].max() - clicks["ts"].min() < 10 * DAY + 6 * 3600
    within = clicks.groupby("session_id")["ts"].diff().dropna()
    assert (within >= 0).all()  # clicks of a visit in time order
    pd.testing.assert_frame_equal(clicks, click_stream(8_000, 2_000, days=10, seed=4))


def test_bad_sizes():
    with pytest.raises(ValueError):
        click_stream(0, 10)
