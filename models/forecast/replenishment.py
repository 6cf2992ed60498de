"""Replenishment hints: forecast demand per item, then the reorder point and quantity that keep a service
level through the supplier's lead time (the textbook periodic-review rule, see REFERENCES):

    safety stock   = z(service level) x sd(demand per period) x sqrt(lead time)
    reorder point  = forecast demand over the lead time + safety stock
    order-up-to    = forecast demand over the lead time and one review period + safety stock
    reorder qty    = order-up-to - available stock (never below zero), ordered once available <= reorder point
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd

from models.forecast import make_forecasters

SD_WINDOW = 12  # periods of history behind the demand spread


def replenishment_plan(
    series: pd.DataFrame,
    available: pd.Series,
    *,
    freq: str,
    horizon: int = 4,
    lead_time: int = 2,
    service_level: float = 0.95,
    model: str = "imapa",
) -> pd.DataFrame:
    """One row per item of `series` (`unique_id`, `ds`, `y`, every item ending on the same period):
    the forecast for the next `horizon` periods and the reorder figures. `available` maps item ->
    unreserved units on hand (missing items count as 0)."""
    from statsforecast import StatsForecast

    if not 0.5 <= service_level < 1:
        raise ValueError("service_level must be in [0.5, 1)")
    if horizon < 1 or lead_time < 1 or lead_time + 1 > horizon:
        raise ValueError("need 1 <= lead_time and lead_time + 1 <= horizon (the order-up-to covers both)")
    if series.empty:
        return pd.DataFrame(
            columns=["unique_id", "forecast", "lead_time_demand", "safety_stock", "reorder_point",
                     "order_up_to", "available", "reorder", "reorder_qty"]
        )  # fmt: skip
    lengths = series.groupby("unique_id").size()
    short = lengths[lengths < 2 * horizon + 1].index
    # conformal intervals and the intermittent models need some history; young items get their mean
    long_enough = series[~series["unique_id"].isin(short)]
    parts = []
    if not long_enough.empty:
        fc = StatsForecast(models=make_forecasters([model], 1, horizon), freq=freq).forecast(
            df=long_enough, h=horizon
        )
        fc = fc.reset_index() if "unique_id" not in fc.columns else fc
        parts.append(fc[["unique_id", "ds", model]].rename(columns={model: "yhat"}))
    if len(short):
        young = series[series["unique_id"].isin(short)].groupby("unique_id")["y"].mean()
        parts.append(
            pd.DataFrame(
                {"unique_id": np.repeat(young.index, horizon), "yhat": np.repeat(young.values, horizon)}
            )
        )
    forecast = pd.concat(parts, ignore_index=True)
    forecast["yhat"] = forecast["yhat"].clip(lower=0)
    per_item = forecast.groupby("unique_id", sort=True)["yhat"].apply(list)
    spread = (
        series.sort_values("ds").groupby("unique_id")["y"].apply(lambda y: float(np.std(y.tail(SD_WINDOW))))
    )
    z = NormalDist().inv_cdf(service_level)
    rows = []
    for item, values in per_item.items():
        lead = float(sum(values[:lead_time]))
        cover = float(sum(values[: lead_time + 1]))
        safety = z * spread.get(item, 0.0) * math.sqrt(lead_time)
        on_hand = float(available.get(item, 0))
        reorder_point = lead + safety
        up_to = cover + safety
        reorder = on_hand <= reorder_point
        rows.append(
            {
                "unique_id": item,
                "forecast": [round(v, 3) for v in values],
                "lead_time_demand": round(lead, 3),
                "safety_stock": round(safety, 3),
                "reorder_point": round(reorder_point, 3),
                "order_up_to": round(up_to, 3),
                "available": on_hand,
                "reorder": bool(reorder),
                "reorder_qty": int(math.ceil(up_to - on_hand)) if reorder and up_to > on_hand else 0,
            }
        )
    return pd.DataFrame(rows)
