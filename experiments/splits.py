"""Train/test splits of an events frame (`user_id`, `item_id`, `ts`, ... as the loaders return it).

Each split returns `(train, test)`, two row subsets of the input with their original index and order.
`split_events(events, "stratified-item:0.75:42")` reads the same spec strings as the command line.
`stratified-item` is Microsoft Recommenders' `python_stratified_split(filter_by="item")`, row for row.

| spec | split |
| --- | --- |
| `stratified-item:RATIO:SEED` | per item, a random RATIO of its rows to train (the benchmark protocol) |
| `random-user:RATIO:SEED` | per user, a random RATIO of their rows to train (same algorithm, by user) |
| `temporal:Q` | one global cut at the Q time quantile: rows at or before it train, later rows test |
| `leave-last:N` | per user, the N latest rows test; users with N rows or fewer stay wholly in train |
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def stratified_split(
    events: pd.DataFrame, ratio: float = 0.75, seed: int = 42, by: str = "item_id", min_rating: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group of `by`, a random `ratio` of rows to train, exactly as Recommenders does it.

    One uniform draw per row from the legacy `np.random.seed(seed)` stream (here a private
    `RandomState`, same numbers, no global side effect), sort by (group, draw), and the first
    round(ratio x group size) rows of each group (numpy rounding: half to even) go to train.
    Groups with fewer than `min_rating` rows are dropped first (they are in neither part).
    """
    _check_ratio(ratio)
    if min_rating < 1:
        raise ValueError(f"min_rating must be >= 1, got {min_rating}")
    _require(events, [by])
    if min_rating > 1:
        events = events[events.groupby(by, sort=False)[by].transform("size") >= min_rating]
    draw = np.random.RandomState(seed).rand(len(events))
    frame = pd.DataFrame({"group": events[by].to_numpy(), "draw": draw})
    frame = frame.sort_values(["group", "draw"], kind="stable")
    groups = frame.groupby("group", sort=False)
    keep = np.round(ratio * groups["group"].transform("size"))  # half to even, as Recommenders' round()
    in_train = _by_position(groups.cumcount() + 1 <= keep)
    return events[in_train], events[~in_train]


def random_user_split(
    events: pd.DataFrame, ratio: float = 0.75, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, a random `ratio` of their rows to train, so every user is seen at fit time."""
    return stratified_split(events, ratio=ratio, seed=seed, by="user_id")


def temporal_split(events: pd.DataFrame, quantile: float = 0.8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global time cut: rows at or before the `quantile` of `ts` train, later rows test (no leakage)."""
    _check_ratio(quantile)
    ts = _timestamps(events)
    cut = ts.quantile(quantile, interpolation="lower")
    in_train = (ts <= cut).to_numpy()
    return events[in_train], events[~in_train]


def leave_last_split(events: pd.DataFrame, n: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, the `n` latest rows (ties broken by file order) test; users with <= n rows train only."""
    if n < 1:
        raise ValueError(f"leave-last needs n >= 1, got {n}")
    ts = _timestamps(events)
    frame = pd.DataFrame({"user": events["user_id"].to_numpy(), "ts": ts.to_numpy()})
    frame = frame.sort_values(["user", "ts"], kind="stable")  # stable: equal times keep file order
    groups = frame.groupby("user", sort=False)
    in_test = _by_position((groups.cumcount(ascending=False) < n) & (groups["user"].transform("size") > n))
    return events[~in_test], events[in_test]


def split_events(events: pd.DataFrame, spec: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by a spec string such as `stratified-item:0.75:42` (see the module table)."""
    kind, *args = spec.split(":")
    try:
        if kind == "stratified-item" and len(args) in (1, 2):
            return stratified_split(events, ratio=float(args[0]), seed=int(args[1]) if args[1:] else 42)
        if kind == "random-user" and len(args) in (1, 2):
            return random_user_split(events, ratio=float(args[0]), seed=int(args[1]) if args[1:] else 42)
        if kind == "temporal" and len(args) == 1:
            return temporal_split(events, quantile=float(args[0]))
        if kind == "leave-last" and len(args) == 1:
            return leave_last_split(events, n=int(args[0]))
    except ValueError as exc:
        if "could not convert" in str(exc) or "invalid literal" in str(exc):
            raise ValueError(f"bad split spec {spec!r}: {exc}") from exc
        raise
    raise ValueError(
        f"bad split spec {spec!r}; expected one of stratified-item:RATIO[:SEED], random-user:RATIO[:SEED], "
        "temporal:QUANTILE, leave-last:N"
    )


def _by_position(flags: pd.Series) -> np.ndarray:
    """A boolean mask in row order from flags indexed by row position (after a sort)."""
    mask = np.empty(len(flags), dtype=bool)
    mask[flags.index.to_numpy()] = flags.to_numpy()
    return mask


def _check_ratio(ratio: float) -> None:
    if not 0 < ratio < 1:
        raise ValueError(f"split ratio must be strictly between 0 and 1, got {ratio}")


def _require(events: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in events.columns]
    if missing:
        raise ValueError(f"events lack column(s) {missing} needed by this split")


def _timestamps(events: pd.DataFrame) -> pd.Series:
    _require(events, ["user_id", "ts"])
    ts = events["ts"]
    if ts.isna().any():
        raise ValueError(f"{int(ts.isna().sum())} events have no timestamp; time-based splits need one")
    return ts
