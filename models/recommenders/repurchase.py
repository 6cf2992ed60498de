"""Repurchase-cycle features of (shopper, item) pairs, for the ranker's buy-again-or-explore decision.

From the shopper's baskets (`models.recommenders.baskets`): how often they bought the item, how
regularly (mean and coefficient of variation of the days between purchases), how long ago the last
purchase was against that cycle, and the item's own repurchase habits across shoppers (share of
buyers who came back, median cycle), which stand in for the shopper's cycle after a single purchase.
`t_end` is the latest event in the data: features describe the moment the model is fitted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.interactions import InteractionData
from models.recommenders.baskets import basket_table


def repurchase_context(data: InteractionData, shape: tuple[int, int]) -> dict:
    """Per-pair and per-item statistics, looked up by `repurchase_features` (empty without events)."""
    table = basket_table(data)
    if table.empty or data.events is None:
        return {}
    table = table.sort_values(["u", "i", "b"], kind="stable")
    day = table["day"].to_numpy(dtype=float)
    has_time = bool(np.isfinite(day).any())
    if not has_time:  # basket positions stand in for days
        day = table["b"].to_numpy(dtype=float)
    u, i = table["u"].to_numpy(), table["i"].to_numpy()
    same = np.r_[False, (u[1:] == u[:-1]) & (i[1:] == i[:-1])]
    gap = np.where(same, day - np.r_[np.nan, day[:-1]], np.nan)
    frame = pd.DataFrame({"u": u, "i": i, "day": day, "gap": gap, "b": table["b"].to_numpy()})
    frame["n_baskets"] = table["n_baskets"].to_numpy()
    pairs = frame.groupby(["u", "i"], sort=True).agg(
        count=("day", "size"),
        first=("day", "min"),
        last=("day", "max"),
        last_b=("b", "max"),
        n_baskets=("n_baskets", "first"),
        gap_mean=("gap", "mean"),
        gap_std=("gap", "std"),
    )
    pu = pairs.index.get_level_values("u").to_numpy()
    pi = pairs.index.get_level_values("i").to_numpy()
    index = sp.csr_matrix((np.arange(1, len(pairs) + 1, dtype=np.float64), (pu, pi)), shape=shape)
    count = pairs["count"].to_numpy(dtype=float)
    n_items = shape[1]
    buyers = np.bincount(pi, minlength=n_items).astype(float)
    returners = np.bincount(pi, weights=(count >= 2).astype(float), minlength=n_items)
    cycle = pd.Series(pairs["gap_mean"].to_numpy()).groupby(pi).median()
    item_cycle = np.full(n_items, np.nan)
    item_cycle[cycle.index.to_numpy()] = cycle.to_numpy()
    user_baskets = np.zeros(shape[0])
    user_baskets[frame["u"].to_numpy()] = frame["n_baskets"].to_numpy()
    user_repeat = np.bincount(pu, weights=count - 1, minlength=shape[0])
    user_lines = np.bincount(pu, weights=count, minlength=shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "rp_index": index,
            "rp_count": count,
            "rp_share": count / pairs["n_baskets"].to_numpy(dtype=float),
            "rp_last": pairs["last"].to_numpy(dtype=float),
            "rp_baskets_since": (pairs["n_baskets"] - 1 - pairs["last_b"]).to_numpy(dtype=float),
            "rp_gap_mean": pairs["gap_mean"].to_numpy(dtype=float),
            "rp_gap_cv": (pairs["gap_std"] / pairs["gap_mean"]).to_numpy(dtype=float),
            "rp_item_return_rate": returners / buyers,
            "rp_item_cycle": item_cycle,
            "rp_user_repeat_share": user_repeat / user_lines,
            "rp_user_baskets": user_baskets,
            "rp_t_end": float(np.nanmax(day)),
        }


def repurchase_features(ctx: dict, u: np.ndarray, i: np.ndarray) -> dict[str, np.ndarray]:
    """Feature columns for (user row, item column) pairs; NaN where the shopper never bought the item."""
    if "rp_index" not in ctx:
        return {}
    pos = np.asarray(ctx["rp_index"][u, i]).ravel().astype(np.int64) - 1
    bought = pos >= 0

    def per_pair(key: str, missing: float = np.nan) -> np.ndarray:
        out = np.full(len(u), missing)
        out[bought] = ctx[key][pos[bought]]
        return out

    since = ctx["rp_t_end"] - per_pair("rp_last")
    gap = per_pair("rp_gap_mean")
    item_cycle = ctx["rp_item_cycle"][i]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "rp_count": per_pair("rp_count", 0.0),
            "rp_share": per_pair("rp_share", 0.0),
            "rp_baskets_since": per_pair("rp_baskets_since"),
            "rp_days_since": since,
            "rp_gap_mean": gap,
            "rp_gap_cv": per_pair("rp_gap_cv"),
            "rp_due": since / gap,  # ~1: the shopper's usual cycle has come round
            "rp_due_item": since / item_cycle,
            "rp_item_return_rate": ctx["rp_item_return_rate"][i],
            "rp_item_cycle": item_cycle,
            "rp_user_repeat_share": ctx["rp_user_repeat_share"][u],
            "rp_user_baskets": ctx["rp_user_baskets"][u],
        }
