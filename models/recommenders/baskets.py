"""Baskets behind an `InteractionData`: which items a shopper took together, in time order.

Repeat-aware models (personal top-frequency, TIFU-KNN, the ranker's repurchase features) read a
shopper's history as a sequence of baskets, not as one summed matrix row. A basket is
- the `basket_id` of the events when the data has one (an order or transaction id),
- else the shopper's events of one UTC calendar day,
- else (no times at all) the whole history as one basket.
Baskets are ordered by their first event's time, then by `basket_seq` (an integer order key the
next-basket evaluation writes when the file has no times), then by id. Events with weight <= 0
(returns) are not purchases; an item counts once per basket.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.interactions import InteractionData


def basket_table(data: InteractionData) -> pd.DataFrame:
    """One row per (user row `u`, basket `b`, item column `i`), sorted by (u, b, i).

    `b` is the basket's position in the user's history (0 = oldest), `n_baskets` the user's count
    and `day` the basket's time in days since the epoch (NaN without times)."""
    events = data.events
    if events is None or events.empty:
        coo = data.matrix.tocoo()
        frame = pd.DataFrame({"u": coo.row.astype(np.int64), "i": coo.col.astype(np.int64)})
        frame["key"] = 0
        frame["t"] = np.nan
    else:
        u = events["user_id"].map(data.user_index)
        i = events["item_id"].map(data.item_index)
        keep = u.notna() & i.notna()
        if "weight" in events.columns:
            keep &= events["weight"].to_numpy() > 0
        frame = pd.DataFrame({"u": u[keep].to_numpy(dtype=np.int64), "i": i[keep].to_numpy(dtype=np.int64)})
        ts = events["ts"][keep] if "ts" in events.columns else None
        has_ts = ts is not None and ts.notna().any()
        if has_ts:  # NaT becomes NaN
            since = pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")
            frame["t"] = since.dt.total_seconds().to_numpy() / 86400.0
        else:
            frame["t"] = np.nan
        if "basket_id" in events.columns:
            frame["key"] = events["basket_id"][keep].astype(str).to_numpy()
            if "basket_seq" in events.columns:
                frame["seq"] = events["basket_seq"][keep].to_numpy(dtype=np.int64)
        elif has_ts:
            frame["key"] = np.floor(frame["t"].to_numpy())
        else:
            frame["key"] = 0
    if frame.empty:
        return pd.DataFrame({c: np.array([], dtype=np.int64) for c in ("u", "b", "i", "n_baskets")}).assign(
            day=np.array([], dtype=float)
        )
    # one row per basket: its start time and order key, then its position in the user's history
    baskets = frame.groupby(["u", "key"], sort=False).agg(
        day=("t", "min"), **({"seq": ("seq", "min")} if "seq" in frame.columns else {})
    )
    baskets = baskets.reset_index()
    order = ["u", "day", *(["seq"] if "seq" in baskets.columns else []), "key"]
    baskets = baskets.sort_values(order, kind="stable", na_position="last")
    baskets["b"] = baskets.groupby("u", sort=False).cumcount()
    baskets["n_baskets"] = baskets.groupby("u", sort=False)["b"].transform("size")
    table = frame[["u", "key", "i"]].merge(baskets[["u", "key", "b", "n_baskets", "day"]], on=["u", "key"])
    table = table.drop(columns="key").drop_duplicates(["u", "b", "i"])
    return table.sort_values(["u", "b", "i"], kind="stable").reset_index(drop=True)
