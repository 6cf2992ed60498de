"""The pyfunc's predict contract, checked on a fitted model without any MLflow run."""

from __future__ import annotations

import pandas as pd
import pytest

from features.interactions import build_interactions
from models.recommenders import make_recommender
from training.pyfunc import recommendations_frame


@pytest.fixture(scope="module")
def model():
    events = pd.DataFrame(
        {"user_id": ["a", "a", "b", "c", "c", "c"], "item_id": ["x", "y", "x", "x", "y", "z"]}
    )
    return make_recommender("popularity").fit(build_interactions(events, time_col=None, event_col=None))


def test_long_frame_per_user_with_per_row_or_per_call_n(model):
    frame = recommendations_frame(model, pd.DataFrame({"user_id": ["b", "stranger"], "n": [2, 5]}))
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score"]
    # b saw x; popularity ranks y (2 users) before z (1 user); the stranger gets nothing
    assert list(frame[["user_id", "rank", "item_id"]].itertuples(index=False, name=None)) == [
        ("b", 1, "y"),
        ("b", 2, "z"),
    ]
    assert frame["score"].is_monotonic_decreasing
    with_seen = recommendations_frame(
        model, pd.DataFrame({"user_id": ["b"]}), {"n": 1, "exclude_seen": False}
    )
    assert with_seen["item_id"].tolist() == ["x"]


def test_bad_input_is_refused(model):
    with pytest.raises(ValueError, match="user_id"):
        recommendations_frame(model, pd.DataFrame({"shopper": ["a"]}))
    with pytest.raises(ValueError, match="positive"):
        recommendations_frame(model, pd.DataFrame({"user_id": ["a"], "n": [0]}))
    with pytest.raises(ValueError, match="positive"):
        recommendations_frame(model, pd.DataFrame({"user_id": ["a"]}), {"n": 0})
