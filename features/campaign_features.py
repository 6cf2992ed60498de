"""Pre-campaign shopper features for uplift models, and the uplift training table of past campaigns.

Features as of a campaign's start, so nothing measured during the campaign leaks in: recency (days
since last purchase), frequency and monetary value over 90 days, views and carts over 30 days,
coupons redeemed before, tenure, region, segment and the campaign's channel. The same functions build
the training rows (from a marketplace directory) and the rows of shoppers a new campaign may target
(from the events table or an exported Parquet), so the model sees identical features in both places.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "NUMERIC_FEATURES",
    "CATEGORICAL_FEATURES",
    "EVENT_COLUMNS",
    "SHORT_DAYS",
    "shopper_history_features",
    "PRICE_FEATURES",
    "PRICE_EVENT_COLUMNS",
    "shopper_price_features",
    "encode_features",
    "campaign_training_table",
]

WINDOW_DAYS = 90
SHORT_DAYS = 30
NEVER_BOUGHT_RECENCY = 365.0 * 3
NUMERIC_FEATURES = (
    "recency_days",
    "never_bought",
    "frequency_90d",
    "monetary_90d",
    "views_30d",
    "carts_30d",
    "coupons_redeemed_before",
    "tenure_days",
)
CATEGORICAL_FEATURES = ("region", "segment", "channel")
EVENT_COLUMNS = ("ts", "shopper_id", "event_type", "value")
PRICE_FEATURES = (
    "category_price_level",
    "price_position_viewed",
    "price_position_carted",
    "price_position_bought",
    "avg_order_value",
)
PRICE_EVENT_COLUMNS = ("ts", "shopper_id", "product_id", "event_type", "value")


def shopper_history_features(
    events: pd.DataFrame, shoppers: pd.DataFrame, as_of: pd.Timestamp, channel: str
) -> pd.DataFrame:
    """One row per shopper of `shoppers` (shopper_id, region, segment, created_at), indexed by
    shopper_id: NUMERIC_FEATURES from `events` (EVENT_COLUMNS) before `as_of`, plus the categoricals.
    An optional `n` column says how many events a row stands for (a database read sends one row per
    shopper and type of the views and carts it only counts; absent: one each)."""
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack columns {missing}")
    missing = [c for c in ("shopper_id", "region", "segment", "created_at") if c not in shoppers.columns]
    if missing:
        raise ValueError(f"shoppers lack columns {missing}")
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of
    ts = pd.to_datetime(events["ts"], utc=True)
    past = events.assign(ts=ts)[ts < as_of]
    day = pd.Timedelta(days=1)
    buys = past[past["event_type"] == "purchase"]
    last_buy = buys.groupby("shopper_id")["ts"].max()
    recent = buys[buys["ts"] >= as_of - WINDOW_DAYS * day].groupby("shopper_id")["value"]
    short = past[past["ts"] >= as_of - SHORT_DAYS * day]
    if "n" in short.columns:
        counts = short.groupby(["shopper_id", "event_type"])["n"].sum().unstack(fill_value=0)
    else:
        counts = short.groupby(["shopper_id", "event_type"]).size().unstack(fill_value=0)
    redeems = past[past["event_type"] == "coupon_redeem"].groupby("shopper_id").size()
    out = pd.DataFrame(index=pd.Index(shoppers["shopper_id"].unique(), name="shopper_id"))
    out["recency_days"] = ((as_of - last_buy) / day).reindex(out.index)
    out["never_bought"] = out["recency_days"].isna().astype(float)
    out["recency_days"] = out["recency_days"].fillna(NEVER_BOUGHT_RECENCY)
    out["frequency_90d"] = recent.count().reindex(out.index, fill_value=0).astype(float)
    out["monetary_90d"] = recent.sum().reindex(out.index, fill_value=0.0).astype(float)
    for etype in ("view", "cart"):
        col = counts[etype] if etype in counts.columns else pd.Series(dtype=float)
        out[f"{etype}s_30d"] = col.reindex(out.index, fill_value=0).astype(float)
    out["coupons_redeemed_before"] = redeems.reindex(out.index, fill_value=0).astype(float)
    info = shoppers.drop_duplicates("shopper_id").set_index("shopper_id")
    created = pd.to_datetime(info["created_at"], utc=True).reindex(out.index)
    out["tenure_days"] = (as_of - created) / day
    out["region"] = info["region"].reindex(out.index).to_numpy()
    out["segment"] = info["segment"].reindex(out.index).fillna("unknown").to_numpy()
    out["channel"] = channel
    return out


def shopper_price_features(
    events: pd.DataFrame, products: pd.DataFrame, shopper_ids, as_of: pd.Timestamp
) -> pd.DataFrame:
    """PRICE_FEATURES per shopper (indexed by `shopper_ids`) from `events` (PRICE_EVENT_COLUMNS) before
    `as_of` and the catalogue (`products`: product_id, category_id, price): where a shopper shops on
    the price ladder. `category_price_level`: the mean log median price of the categories of the
    products they viewed (what their baskets cost, and so which minimum spends they reach);
    `price_position_*`: the mean log price over its category's median of the products they viewed,
    carted, bought (price-sensitive shoppers keep to the cheap end); `avg_order_value`: their mean
    purchase value. A shopper without such events gets the median of those with them, so that the
    columns stay finite for every learner."""
    missing = [c for c in PRICE_EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack columns {missing}")
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of
    price = products["price"].map(float)
    median = price.groupby(products["category_id"].to_numpy()).transform("median")
    ladder = pd.DataFrame(
        {"level": np.log(median.to_numpy()), "position": np.log(price / median).to_numpy()},
        index=products["product_id"].to_numpy(),
    )
    ts = pd.to_datetime(events["ts"], utc=True)
    past = events[(ts < as_of).to_numpy() & events["product_id"].notna().to_numpy()]
    past = past.join(ladder, on="product_id")
    index = pd.Index(np.asarray(shopper_ids, dtype=object), name="shopper_id")
    out = pd.DataFrame(index=index)
    kinds = past.groupby("event_type")
    views = kinds.get_group("view") if "view" in kinds.groups else past.iloc[0:0]
    out["category_price_level"] = views.groupby("shopper_id")["level"].mean().reindex(index)
    for etype, name in (("view", "viewed"), ("cart", "carted"), ("purchase", "bought")):
        rows = kinds.get_group(etype) if etype in kinds.groups else past.iloc[0:0]
        out[f"price_position_{name}"] = rows.groupby("shopper_id")["position"].mean().reindex(index)
    buys = kinds.get_group("purchase") if "purchase" in kinds.groups else past.iloc[0:0]
    out["avg_order_value"] = buys.groupby("shopper_id")["value"].mean().reindex(index)
    out = out.astype(float)
    return out.fillna(out.median()).fillna(0.0)


def encode_features(table: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """Numeric model input: NUMERIC_FEATURES plus one-hot categoricals. With `columns` (a fitted
    model's), the result has exactly those columns; a category unseen in training gets all zeros, and a
    feature either side lacks is refused (ValueError)."""
    X = pd.concat(
        [
            table[list(NUMERIC_FEATURES)].astype(float),
            pd.get_dummies(table[list(CATEGORICAL_FEATURES)].astype(str), dtype=float),
        ],
        axis=1,
    )
    X["tenure_days"] = X["tenure_days"].fillna(X["tenure_days"].median()).fillna(0.0)
    if columns is not None:
        absent = [c for c in NUMERIC_FEATURES if c not in columns]
        if absent:
            raise ValueError(f"the model was not trained on these features: {absent}")
        # only a category's one-hot column may be missing (unseen here: zeros); a numeric feature the
        # model was trained on and this code no longer computes was scored as 0 for every shopper
        dummies = tuple(f"{name}_" for name in CATEGORICAL_FEATURES)
        gone = [c for c in columns if c not in X.columns and not c.startswith(dummies)]
        if gone:
            raise ValueError(f"the model needs features no longer computed: {gone}")
        X = X.reindex(columns=list(columns), fill_value=0.0)
    if not np.isfinite(X.to_numpy()).all():
        raise ValueError("the feature table has missing or infinite values")
    return X


def campaign_training_table(
    directory: str | Path, *, partitions: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(X, labels) from a marketplace directory (docs/data-contracts.md): one row per (campaign,
    shopper) of the past campaigns, in campaign order then assignment order; labels hold campaign_id,
    shopper_id, arm (coupon id or control), kind (the arm's coupon kind, or control), treated,
    converted, spend, redeemed.

    A shopper's features need only that shopper's events, so the event log is read a shopper
    partition at a time (`features.distributed.ShopperPartitions`; `partitions` defaults to the
    number of event part files): memory is one partition's events plus the assignment-sized table,
    whatever the size of the log."""
    from features.distributed import ShopperPartitions, shopper_buckets

    directory = Path(directory)
    for name in ("assignments.parquet", "campaigns.parquet", "coupons.parquet", "shoppers.parquet", "events"):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory / name} is missing; generate a marketplace first")
    assignments = pd.read_parquet(directory / "assignments.parquet")
    if assignments.empty:
        raise ValueError(f"{directory / 'assignments.parquet'} holds no campaign assignments")
    campaigns = pd.read_parquet(directory / "campaigns.parquet").set_index("campaign_id")
    kinds = pd.read_parquet(directory / "coupons.parquet").set_index("coupon_id")["kind"]
    absent = sorted(set(assignments["campaign_id"]) - set(campaigns.index))
    if absent:
        raise ValueError(f"assignments name campaign {absent[0]!r}, absent from campaigns.parquet")
    n = partitions or max(1, len(list((directory / "events").glob("*.parquet"))))
    assignments["_row"] = np.arange(len(assignments))
    assignments["_part"] = shopper_buckets(assignments["shopper_id"], n)
    parts = []
    with ShopperPartitions(directory, n) as partitioned:
        for i, events, shoppers in partitioned:
            mine = assignments[assignments["_part"] == i]
            if mine.empty:
                continue
            events = events.dropna(subset=["shopper_id"])
            for campaign_id, rows in mine.groupby("campaign_id", sort=True):
                members = shoppers[shoppers["shopper_id"].isin(rows["shopper_id"])]
                if len(members) != rows["shopper_id"].nunique():
                    raise ValueError(
                        f"campaign {campaign_id!r} assigns shoppers absent from shoppers.parquet"
                    )
                feats = shopper_history_features(
                    events, members, campaigns.at[campaign_id, "start"], campaigns.at[campaign_id, "channel"]
                )
                parts.append(rows.join(feats, on="shopper_id"))
    table = pd.concat(parts, ignore_index=True).sort_values(["campaign_id", "_row"], kind="mergesort")
    table = table.drop(columns=["_row", "_part"]).reset_index(drop=True)
    unknown = set(table["arm"]) - {"control"} - set(kinds.index)
    if unknown:
        raise ValueError(f"assignments name coupons absent from coupons.parquet: {sorted(unknown)[:5]}")
    labels = pd.DataFrame(
        {
            "campaign_id": table["campaign_id"],
            "shopper_id": table["shopper_id"],
            "arm": table["arm"],
            "kind": table["arm"].map(kinds).fillna("control"),
            "treated": (table["arm"] != "control").astype(int),
            "converted": table["converted"].astype(int),
            "spend": table["spend"].astype(float),
            "redeemed": table["redeemed"].astype(int),
        }
    )
    return encode_features(table), labels
