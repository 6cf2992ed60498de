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

from features.interactions import InteractionData, encode_ids


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
        if "basket_id" in events.columns:  # codes in id order: the last tie-break
            frame["key"] = encode_ids(events["basket_id"][keep].astype(str))[0]
            if "basket_seq" in events.columns:
                frame["seq"] = events["basket_seq"][keep].to_numpy(dtype=np.int64)
        elif has_ts:
            frame["key"] = np.floor(frame["t"].fillna(-1.0).to_numpy()).astype(np.int64)
        else:
            frame["key"] = 0
    if frame.empty:
        return pd.DataFrame({c: np.array([], dtype=np.int64) for c in ("u", "b", "i", "n_baskets")}).assign(
            day=np.array([], dtype=float)
        )
    # one row per basket (integer codes, no string grouping): its start time and order key
    u = frame["u"].to_numpy()
    key = frame["key"].to_numpy(dtype=np.int64)
    basket = np.unique(u * (key.max() + 2) + key + 1, return_inverse=True)[1]
    n = int(basket.max()) + 1
    t = frame["t"].to_numpy(dtype=float)
    day = np.full(n, np.inf)
    np.fmin.at(day, basket, np.where(np.isnan(t), np.inf, t))
    seq = np.zeros(n, dtype=np.int64)
    if "seq" in frame.columns:
        seq = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(seq, basket, frame["seq"].to_numpy())
    owner = np.zeros(n, dtype=np.int64)
    owner[basket] = u
    bkey = np.zeros(n, dtype=np.int64)
    bkey[basket] = key
    order = np.lexsort((bkey, seq, day, owner))  # by user, then time (missing last), seq, id
    starts = np.r_[0, np.flatnonzero(np.diff(owner[order])) + 1]
    sizes = np.diff(np.r_[starts, n])
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - np.repeat(starts, sizes)
    count = np.empty(n, dtype=np.int64)
    count[order] = np.repeat(sizes, sizes)
    day[np.isinf(day)] = np.nan
    table = pd.DataFrame(
        {
            "u": u,
            "b": position[basket],
            "i": frame["i"].to_numpy(),
            "n_baskets": count[basket],
            "day": day[basket],
        }
    )
    table = table.iloc[np.lexsort((table["i"].to_numpy(), table["b"].to_numpy(), u))]
    return table.drop_duplicates(["u", "b", "i"]).reset_index(drop=True)
