"""Point-in-time-correct training sets: label rows joined to features computed strictly before them.

A label row is (shopper_id, product_id, label_ts, label). Each row gets features from a snapshot
stamped `features_as_of <= label_ts`, and a snapshot stamped T only uses events with ts < T, so no
event at or after the label's own time can reach its features. Snapshots are taken at `label_ts`
floored to `snapshot_freq` (daily by default: features may be up to a day stale, never leaky), or at
each exact `label_ts` with `snapshot_freq=None`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from commerce.inputs import BadInputFile, check_file
from features.tables import (
    DAY,
    PRODUCT_EVENT_TYPES,
    as_utc,
    catalog_view,
    compact_events,
    events_before,
    product_features,
    shopper_features,
)

LABEL_COLUMNS = ("shopper_id", "product_id", "label_ts", "label")


def pair_features(
    events: pd.DataFrame,
    pairs: pd.DataFrame,
    products: pd.DataFrame,
    as_of,
    *,
    categories: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Shopper x product features for the given (shopper_id, product_id) pairs, from events before `as_of`:
    the pair's past views / carts / purchases, days since the shopper last touched the product, and the
    shopper's share of product events in the product's leaf category and brand."""
    as_of = as_utc(as_of)
    ev = events_before(events, as_of)
    ev = ev[ev["event_type"].isin(PRODUCT_EVENT_TYPES)]
    ev = ev[ev["shopper_id"].isin(pairs["shopper_id"].unique())]
    cat = catalog_view(products, categories)[["category_id", "brand"]]
    out = pairs[["shopper_id", "product_id"]].drop_duplicates().astype(str).reset_index(drop=True)
    out = out.join(cat, on="product_id")
    ev = pd.DataFrame(
        {
            "shopper_id": ev["shopper_id"].astype(str),
            "product_id": ev["product_id"].astype(str),
            "event_type": ev["event_type"].astype(str),
            "ts": ev["ts"],
        }
    ).join(cat, on="product_id")
    kinds = {"view": "views", "cart": "carts", "purchase": "purchases"}
    counts = ev.groupby(["shopper_id", "product_id", "event_type"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=list(kinds), fill_value=0).rename(columns=kinds)
    counts["last_ts"] = ev.groupby(["shopper_id", "product_id"])["ts"].max()
    out = out.join(counts, on=["shopper_id", "product_id"])
    out[list(kinds.values())] = out[list(kinds.values())].fillna(0).astype("int64")
    out["days_since_event"] = (as_of - out.pop("last_ts")) / DAY
    total = ev.groupby("shopper_id").size()
    for col, name in (("category_id", "shopper_leaf_share"), ("brand", "shopper_brand_share")):
        share = (ev.groupby(["shopper_id", col]).size() / total).rename(name)
        out = out.join(share, on=["shopper_id", col])
        has_events = out["shopper_id"].isin(total.index)
        out[name] = out[name].where(out[name].notna() | ~has_events, 0.0)
    out.insert(0, "as_of", as_of)
    return out.drop(columns=["category_id", "brand"])


def validate_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Labels with `label_ts` in UTC; a clear error when columns or times are missing."""
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"labels lack columns {missing}; need {list(LABEL_COLUMNS)}")
    ts = pd.to_datetime(labels["label_ts"], utc=True)
    if ts.isna().any():
        raise ValueError(f"{int(ts.isna().sum())} labels have no label_ts")
    if labels[["shopper_id", "product_id"]].isna().any().any():
        raise ValueError("labels have missing shopper_id or product_id")
    return labels.assign(
        label_ts=ts.dt.as_unit("us"),
        shopper_id=labels["shopper_id"].astype(str),
        product_id=labels["product_id"].astype(str),
    )


def read_labels(path: str | Path) -> pd.DataFrame:
    """The labels file `path` as `validate_labels` returns it. It is read whole, so it is checked whole
    first (every column's pages: a damaged page behind an intact footer, `commerce.inputs.check_file`),
    and a problem with it is a BadInputFile naming it (one line, nothing written: the command reads it
    before computing anything)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such labels file")
    check_file(path, {}, whole=True)
    try:
        return validate_labels(pd.read_parquet(path))
    except ValueError as exc:  # columns or times missing
        raise BadInputFile(path, str(exc)) from exc


def join_feature_snapshots(
    labels: pd.DataFrame,
    shopper_snapshots: pd.DataFrame,
    product_snapshots: pd.DataFrame,
    pair_snapshots: pd.DataFrame | None = None,
):
    """Attach to each label the latest snapshot with `as_of <= label_ts` (pandas.merge_asof per id).

    Snapshots are long frames with `as_of` and the id column(s) (as written by the feature jobs, id
    index reset). Labels with no earlier snapshot get missing features.
    """
    labels = validate_labels(labels).reset_index(drop=True)
    labels["_row"] = labels.index
    left = labels.sort_values("label_ts", kind="stable")

    def asof(left, right, by, prefix):
        right = right.rename(columns={c: f"{prefix}{c}" for c in right.columns if c not in (*by, "as_of")})
        right = right.rename(columns={"as_of": f"{prefix}as_of"})
        right[f"{prefix}as_of"] = right[f"{prefix}as_of"].dt.as_unit("us")
        right = right.sort_values(f"{prefix}as_of", kind="stable")
        return pd.merge_asof(
            left,
            right,
            left_on="label_ts",
            right_on=f"{prefix}as_of",
            by=list(by),
            direction="backward",
            allow_exact_matches=True,
        )

    out = asof(left, shopper_snapshots, ["shopper_id"], "shopper_")
    out = asof(out, product_snapshots, ["product_id"], "product_")
    if pair_snapshots is not None:
        out = asof(out, pair_snapshots, ["shopper_id", "product_id"], "pair_")
    stamps = [c for c in out.columns if c.endswith("as_of")]
    out["features_as_of"] = out[stamps].max(axis=1)
    out = out.drop(columns=stamps)
    return out.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def training_set(
    labels: pd.DataFrame,
    events: pd.DataFrame,
    products: pd.DataFrame,
    *,
    shoppers: pd.DataFrame | None = None,
    categories: pd.DataFrame | None = None,
    snapshot_freq: str | None = "1D",
) -> pd.DataFrame:
    """Labels joined with shopper, product and shopper x product features, point-in-time correct.

    One snapshot per distinct `label_ts` floored to `snapshot_freq` (None: per exact `label_ts`),
    computed only for the shoppers and products its labels need. Columns: the labels, then
    `shopper_*`, `product_*` and `pair_*` features and `features_as_of` (always <= label_ts).
    """
    labels = validate_labels(labels)
    events = compact_events(events)
    snap = labels["label_ts"] if snapshot_freq is None else labels["label_ts"].dt.floor(snapshot_freq)
    s_parts, p_parts, pair_parts = [], [], []
    for as_of, group in labels.groupby(snap, sort=True):
        who, what = group["shopper_id"].unique(), group["product_id"].unique()
        ev_s = events[events["shopper_id"].isin(who)]
        ev_p = events[events["product_id"].isin(what)]
        sh = None if shoppers is None else shoppers[shoppers["shopper_id"].isin(who)]
        s_parts.append(
            shopper_features(
                ev_s, products, as_of, shoppers=sh, categories=categories, shopper_ids=who
            ).reset_index()
        )
        prod = products[products["product_id"].isin(what)]
        p_parts.append(product_features(ev_p, prod, as_of, categories=categories).reset_index())
        pair_parts.append(pair_features(ev_s, group, products, as_of, categories=categories))
    return join_feature_snapshots(
        labels,
        pd.concat(s_parts, ignore_index=True),
        pd.concat(p_parts, ignore_index=True),
        pd.concat(pair_parts, ignore_index=True),
    )
