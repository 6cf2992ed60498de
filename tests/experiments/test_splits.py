"""Splits: the Recommenders stratified algorithm, per-user random, temporal cuts and leave-last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.splits import (
    leave_last_split,
    random_user_split,
    split_events,
    stratified_split,
    temporal_split,
)

MOVIELENS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ml-100k" / "u.data"


def _events(n_users=30, n_items=12, n=600, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, n_users, n)],
            "item_id": [f"p{i}" for i in rng.integers(0, n_items, n)],
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.permutation(n), unit="h"),
        }
    )


def test_stratified_item_matches_recommenders_algorithm_by_hand():
    # Item "a" has 4 rows, "b" has 2, "c" has 1. Seed 0 draws (row order):
    # 0.5488, 0.7152, 0.6028, 0.5449, 0.4237, 0.6459, 0.4376
    events = pd.DataFrame({"user_id": list("uvwxyzq"), "item_id": ["a", "b", "a", "c", "a", "b", "a"]})
    draws = np.random.RandomState(0).rand(7)
    np.testing.assert_allclose(draws, [0.5488, 0.7152, 0.6028, 0.5449, 0.4237, 0.6459, 0.4376], atol=1e-4)
    train, test = stratified_split(events, ratio=0.75, seed=0)
    # a: rows 0,2,4,6 sorted by draw -> 4 (0.42), 6 (0.44), 0 (0.55), 2 (0.60); round(0.75*4)=3 -> 4,6,0 train
    # b: rows 1,5 -> 5 (0.65), 1 (0.72); round(1.5)=2 (half to even) -> both train
    # c: row 3; round(0.75)=1 -> train
    assert sorted(train.index) == [0, 1, 3, 4, 5, 6]
    assert test.index.tolist() == [2]
    # the global numpy random state is untouched
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    stratified_split(events, seed=0)
    assert np.random.rand() == expected


def test_stratified_min_rating_drops_small_groups():
    events = pd.DataFrame({"user_id": list("uvwxy"), "item_id": ["a", "a", "a", "b", "b"]})
    train, test = stratified_split(events, ratio=0.5, seed=1, min_rating=3)
    assert set(train["item_id"]) | set(test["item_id"]) == {"a"}
    assert len(train) + len(test) == 3


def test_random_user_keeps_every_user_and_ratio():
    events = _events()
    train, test = random_user_split(events, ratio=0.75, seed=3)
    assert len(train) + len(test) == len(events)
    assert not train.index.intersection(test.index).size
    sizes = events.groupby("user_id").size()
    train_sizes = train.groupby("user_id").size().reindex(sizes.index, fill_value=0)
    np.testing.assert_array_equal(train_sizes.to_numpy(), np.round(0.75 * sizes.to_numpy()))
    again, _ = random_user_split(events, ratio=0.75, seed=3)
    assert again.index.equals(train.index)  # deterministic
    other, _ = random_user_split(events, ratio=0.75, seed=4)
    assert not other.index.equals(train.index)


def test_temporal_cut_has_no_leakage():
    events = _events()
    train, test = temporal_split(events, 0.8)
    assert train["ts"].max() < test["ts"].min()
    assert len(train) == 480  # distinct hours: the 0.8 quantile ("lower") is the 480th time
    events.loc[events.index[:5], "ts"] = pd.NaT
    with pytest.raises(ValueError, match="timestamp"):
        temporal_split(events, 0.8)


def test_leave_last_per_user_with_ties_in_file_order():
    t = pd.Timestamp("2024-01-01", tz="UTC")
    events = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "c", "c"],
            "item_id": ["x", "y", "z", "x", "x", "y"],
            "ts": [t, t + pd.Timedelta("2h"), t + pd.Timedelta("1h"), t, t, t],
        }
    )
    train, test = leave_last_split(events, n=1)
    # a: latest is y (2h); b: one row only -> stays in train; c: tie -> the later row in the file (y)
    assert test[["user_id", "item_id"]].values.tolist() == [["a", "y"], ["c", "y"]]
    assert len(train) == 4
    _, test2 = leave_last_split(events, n=2)
    assert test2[["user_id", "item_id"]].values.tolist() == [["a", "y"], ["a", "z"]]


def test_spec_strings_and_bad_specs():
    events = _events()
    for spec, expected in [
        ("stratified-item:0.75:42", stratified_split(events, 0.75, 42)),
        ("random-user:0.6:1", random_user_split(events, 0.6, 1)),
        ("temporal:0.8", temporal_split(events, 0.8)),
        ("leave-last:1", leave_last_split(events, 1)),
    ]:
        train, test = split_events(events, spec)
        assert train.index.equals(expected[0].index) and test.index.equals(expected[1].index)
    for bad in [
        "stratified-item",
        "temporal:x",
        "leave-last:0",
        "temporal:1.5",
        "bogus:1",
        "random-user:a:b",
    ]:
        with pytest.raises(ValueError):
            split_events(events, bad)


@pytest.mark.slow
@pytest.mark.skipif(not MOVIELENS.is_file(), reason=f"MovieLens 100K not at {MOVIELENS}")
def test_movielens_stratified_counts_match_the_benchmark():
    from features.loaders import load_movielens

    events, _ = load_movielens(MOVIELENS)
    train, test = split_events(events, "stratified-item:0.75:42")
    assert (len(train), len(test)) == (75_066, 24_934)
