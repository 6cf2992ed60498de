"""The event log -> interaction matrix builder: weights, decay, returns, id maps, speed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.interactions import build_interactions


def _events(rows, columns=("user_id", "item_id", "ts", "event_type", "value")):
    frame = pd.DataFrame(rows, columns=list(columns))
    if "ts" in frame:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def test_id_maps_are_sorted_strings_and_duplicates_are_summed():
    events = pd.DataFrame({"user_id": [2, 10, 2, 2], "item_id": ["b", "a", "b", "a"]})
    data = build_interactions(events)
    # string order: "10" < "2"
    assert data.user_ids.tolist() == ["10", "2"]
    assert data.item_ids.tolist() == ["a", "b"]
    dense = data.matrix.toarray()
    # user "2" has item "b" twice and "a" once; user "10" has "a" once.
    np.testing.assert_array_equal(dense, [[1.0, 0.0], [1.0, 2.0]])
    assert data.matrix.dtype == np.float32
    assert data.user_index["2"] == 1 and data.item_index["b"] == 1


def test_event_type_weights_default_and_custom():
    events = _events(
        [
            ("u1", "p1", "2024-01-01", "view", 0.0),
            ("u1", "p1", "2024-01-02", "purchase", 99.0),
            ("u1", "p2", "2024-01-02", "cart", 0.0),
            ("u2", "p2", "2024-01-03", "favorite", 0.0),
        ]
    )
    default = build_interactions(events).matrix.toarray()
    # view 1 + purchase 5 = 6 ; cart 3 ; favorite 2
    np.testing.assert_array_equal(default, [[6.0, 3.0], [0.0, 2.0]])
    custom = build_interactions(
        events, event_weights={"view": 0.5, "purchase": 10, "cart": 1, "favorite": 0}
    ).matrix.toarray()
    # u2's only event weighs 0, so it leaves the matrix (but the id map keeps u2)
    np.testing.assert_array_equal(custom, [[10.5, 1.0], [0.0, 0.0]])


def test_unknown_event_type_is_a_clear_error():
    events = _events([("u1", "p1", "2024-01-01", "search", 0.0)])
    with pytest.raises(ValueError, match="search"):
        build_interactions(events)


def test_time_decay_halves_per_half_life():
    events = _events(
        [
            ("u1", "p1", "2024-01-11", "view", 0.0),  # age 0 at as_of -> 1
            ("u1", "p2", "2024-01-01", "view", 0.0),  # age 10 days, half-life 10 -> 0.5
            ("u1", "p3", "2023-12-22", "view", 0.0),  # age 20 days -> 0.25
        ]
    )
    data = build_interactions(events, half_life_days=10)
    np.testing.assert_allclose(data.matrix.toarray(), [[1.0, 0.5, 0.25]], rtol=1e-6)
    later = build_interactions(events, half_life_days=10, as_of="2024-01-21")
    np.testing.assert_allclose(later.matrix.toarray(), [[0.5, 0.25, 0.125]], rtol=1e-6)
    with pytest.raises(ValueError, match="after as_of"):
        build_interactions(events, half_life_days=10, as_of="2024-01-05")


def test_returns_cancel_purchases_and_values_scale_when_asked():
    events = _events(
        [
            ("u1", "p1", "2024-01-01", "purchase", 2.0),
            ("u1", "p1", "2024-01-05", "purchase", -2.0),  # the return of the same goods
            ("u1", "p2", "2024-01-05", "purchase", 3.0),
        ]
    )
    data = build_interactions(events)
    # p1: 5 - 5 = 0 -> not in the matrix; p2: 5
    np.testing.assert_array_equal(data.matrix.toarray(), [[0.0, 5.0]])
    assert data.matrix.nnz == 1
    scaled = build_interactions(events, use_value=True)
    # p1: 5*2 - 5*2 = 0 ; p2: 5*3 = 15
    np.testing.assert_array_equal(scaled.matrix.toarray(), [[0.0, 15.0]])
    # nothing is lost: every event stays in the long table with its signed weight
    assert scaled.events["weight"].tolist() == [10.0, -10.0, 15.0]


def test_events_long_table_and_side_tables():
    events = _events([("u1", "p2", "2024-01-01", "view", 0.0), ("u0", "p1", "2024-01-02", "cart", 0.0)])
    items = pd.DataFrame({"brand": ["x", "y"]}, index=pd.Index([1, 2], name="product_id"))
    data = build_interactions(events, item_features=items)
    assert list(data.events.columns) == ["user_id", "item_id", "ts", "weight"]
    assert data.events["user_id"].astype(str).tolist() == ["u1", "u0"]
    assert str(data.events["ts"].dtype) == "datetime64[ns, UTC]"
    assert data.item_features.index.tolist() == ["1", "2"]
    dup = pd.DataFrame({"brand": ["x", "y"]}, index=["p1", "p1"])
    with pytest.raises(ValueError, match="duplicate"):
        build_interactions(events, item_features=dup)


def test_missing_columns_and_ids_are_rejected():
    with pytest.raises(ValueError, match="no column 'item_id'"):
        build_interactions(pd.DataFrame({"user_id": ["a"]}))
    with pytest.raises(ValueError, match="missing"):
        build_interactions(pd.DataFrame({"user_id": ["a", None], "item_id": ["x", "y"]}))


def test_half_life_needs_timestamps():
    events = pd.DataFrame({"user_id": ["a"], "item_id": ["x"]})
    with pytest.raises(ValueError, match="timestamp"):
        build_interactions(events, half_life_days=7)


def test_encode_ids_handles_categoricals_ints_and_unicode():
    from features.interactions import encode_ids

    codes, ids = encode_ids(pd.Series(pd.Categorical(["b", "a", "b"], categories=["z", "b", "a"])))
    assert ids.tolist() == ["a", "b"]  # the unused category "z" is dropped, string order
    assert codes.tolist() == [1, 0, 1]
    codes, ids = encode_ids(pd.Series([10, 9, 10]))
    assert ids.tolist() == ["10", "9"] and codes.tolist() == [0, 1, 0]
    codes, ids = encode_ids(pd.Series(["雅诗兰黛", "Zara", "été"]))
    assert ids.tolist() == sorted(["雅诗兰黛", "Zara", "été"])


def test_non_utc_times_and_split_index():
    ts = pd.to_datetime(["2024-01-02 08:00", "2024-01-01 08:00"]).tz_localize("Asia/Shanghai")
    events = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "y"], "ts": ts}, index=[7, 3])
    data = build_interactions(events, half_life_days=1)
    # one day apart -> 1 and 0.5, whatever the zone
    np.testing.assert_allclose(data.matrix.toarray(), [[1.0, 0.5]])
    assert str(data.events["ts"].dt.tz) == "UTC"
    assert data.events["ts"].iloc[0] == pd.Timestamp("2024-01-02 00:00", tz="UTC")
    assert data.events.index.tolist() == [0, 1]
