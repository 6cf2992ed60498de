"""The uplift training table from a marketplace directory (docs/data-contracts.md): one row per
(campaign, shopper) drawn into a past campaign, with features known before the campaign started.

Features (as of each campaign's start, so nothing measured during the campaign leaks in): recency
(days since last purchase), frequency and monetary value over 90 days, views and carts over 30 days,
coupons redeemed before, tenure, region, segment and the campaign's channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["campaign_training_table"]

WINDOW_DAYS = 90
SHORT_DAYS = 30


def _features_at(events: pd.DataFrame, shoppers: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    past = events[events["ts"] < as_of]
    day = pd.Timedelta(days=1)
    buys = past[past["event_type"] == "purchase"]
    last_buy = buys.groupby("shopper_id")["ts"].max()
    recent = buys[buys["ts"] >= as_of - WINDOW_DAYS * day].groupby("shopper_id")["value"]
    short = past[past["ts"] >= as_of - SHORT_DAYS * day]
    counts = short.groupby(["shopper_id", "event_type"]).size().unstack(fill_value=0)
    redeems = past[past["event_type"] == "coupon_redeem"].groupby("shopper_id").size()
    out = pd.DataFrame(index=pd.Index(shoppers.unique(), name="shopper_id"))
    out["recency_days"] = ((as_of - last_buy) / day).reindex(out.index)
    out["never_bought"] = out["recency_days"].isna().astype(float)
    out["recency_days"] = out["recency_days"].fillna(365.0 * 3)
    out["frequency_90d"] = recent.count().reindex(out.index, fill_value=0).astype(float)
    out["monetary_90d"] = recent.sum().reindex(out.index, fill_value=0.0)
    for etype in ("view", "cart"):
        col = counts[etype] if etype in counts.columns else pd.Series(dtype=float)
        out[f"{etype}s_30d"] = col.reindex(out.index, fill_value=0).astype(float)
    out["coupons_redeemed_before"] = redeems.reindex(out.index, fill_value=0).astype(float)
    return out


def campaign_training_table(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(X, labels): numeric features and, aligned row by row, campaign_id, shopper_id, arm, treated,
    converted, spend, redeemed."""
    directory = Path(directory)
    for name in ("assignments.parquet", "campaigns.parquet", "shoppers.parquet", "events"):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory / name} is missing; generate a marketplace first")
    assignments = pd.read_parquet(directory / "assignments.parquet")
    if assignments.empty:
        raise ValueError(f"{directory / 'assignments.parquet'} holds no campaign assignments")
    campaigns = pd.read_parquet(directory / "campaigns.parquet").set_index("campaign_id")
    shoppers = pd.read_parquet(directory / "shoppers.parquet").set_index("shopper_id")
    events = pd.read_parquet(
        directory / "events", columns=["ts", "shopper_id", "event_type", "value"]
    ).dropna(subset=["shopper_id"])
    parts = []
    for campaign_id, rows in assignments.groupby("campaign_id", sort=True):
        if campaign_id not in campaigns.index:
            raise ValueError(f"assignments name campaign {campaign_id!r}, absent from campaigns.parquet")
        start = campaigns.at[campaign_id, "start"]
        feats = _features_at(events, rows["shopper_id"], start)
        part = rows.join(feats, on="shopper_id")
        part["tenure_days"] = (
            start - shoppers["created_at"].reindex(part["shopper_id"]).to_numpy()
        ) / pd.Timedelta(days=1)
        part["channel"] = campaigns.at[campaign_id, "channel"]
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table = table.join(shoppers[["region", "segment"]], on="shopper_id")
    numeric = [
        "recency_days",
        "never_bought",
        "frequency_90d",
        "monetary_90d",
        "views_30d",
        "carts_30d",
        "coupons_redeemed_before",
        "tenure_days",
    ]
    X = pd.concat(
        [table[numeric].astype(float), pd.get_dummies(table[["region", "segment", "channel"]], dtype=float)],
        axis=1,
    )
    X["tenure_days"] = X["tenure_days"].fillna(X["tenure_days"].median())
    labels = pd.DataFrame(
        {
            "campaign_id": table["campaign_id"],
            "shopper_id": table["shopper_id"],
            "arm": table["arm"],
            "treated": (table["arm"] != "control").astype(int),
            "converted": table["converted"].astype(int),
            "spend": table["spend"].astype(float),
            "redeemed": table["redeemed"].astype(int),
        }
    )
    if not np.isfinite(X.to_numpy()).all():
        raise ValueError("the feature table has missing or infinite values")
    return X, labels
