"""Shopper and product feature tables, computed from the event log as of an explicit time.

Every function is a pure dataframe transformation: it sees only events strictly before `as_of` and
keeps no state between calls, so the same code can run per snapshot, per partition or on Dask.
Inputs follow docs/data-contracts.md (`events`, `products`, `shoppers` frames as read from Parquet).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from commerce.files import atomic_path
from commerce.inputs import BadInputFile, check_marketplace, marketplace_dir

WINDOWS_DAYS = (7, 30, 90)
PRICE_BAND_EDGES = (0.0, 100.0, 300.0, 800.0, 2000.0, np.inf)
"""CNY edges of the price bands 0..4 (everyday, mid, upper, premium, luxury)."""
PRODUCT_EVENT_TYPES = ("view", "favorite", "cart", "purchase")
DAY = pd.Timedelta(days=1)


def as_utc(ts) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is taken to be UTC already."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


EVENT_COLUMNS = ("ts", "shopper_id", "product_id", "event_type", "value")


def compact_events(events: pd.DataFrame) -> pd.DataFrame:
    """The columns features use, ids and event types as categoricals (much faster to filter and group).

    Idempotent; callers computing many snapshots should compact once and pass the result.
    """
    missing = set(EVENT_COLUMNS) - set(events.columns)
    if missing:
        raise ValueError(f"events lacks columns {sorted(missing)}")
    ev = events[list(EVENT_COLUMNS)]
    cats = {c: "category" for c in ("shopper_id", "product_id", "event_type") if ev[c].dtype != "category"}
    return ev.astype(cats) if cats else ev


#: How far past the last event an explicit `as_of` (and a training set's labels) may be: a job run the
#: day after the export is fine; later, every recency and window feature would be measured from a time
#: the data does not reach (a shopper active yesterday reads as gone for months), and is refused.
AS_OF_TOLERANCE_DAYS = 1


class WindowOutsideEvents(BadInputFile):
    """A time asked of the marketplace's events that they do not cover: an `as_of` in the future or more
    than AS_OF_TOLERANCE_DAYS after the last event, labels outside the events' span. The features would
    be empty or measured from a time the data does not reach and, published, replace the previous ones."""


class EmptyWindow(WindowOutsideEvents):
    """No event of the marketplace is before the `as_of` asked for (a mistyped date, a window before the
    data): the feature tables would be empty and, published, replace the previous ones."""


def event_span(data_dir: str | Path) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """(first, last) event time of `data_dir/events` (None, None without events), from the parts' footers
    (their `ts` statistics; a part without them is read)."""
    import pyarrow.parquet as pq

    first = last = None
    for part in sorted((Path(data_dir) / "events").glob("*.parquet")):
        meta = pq.ParquetFile(part).metadata
        column = meta.schema.to_arrow_schema().get_field_index("ts")
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(column).statistics
            if stats is not None and stats.has_min_max:
                low, high = as_utc(stats.min), as_utc(stats.max)
            else:
                ts = pq.read_table(part, columns=["ts"])["ts"].to_pandas()
                low, high = as_utc(ts.min()), as_utc(ts.max())
            if not pd.isna(low) and (first is None or low < first):
                first = low
            if not pd.isna(high) and (last is None or high > last):
                last = high
    return first, last


def check_window(data_dir: str | Path, as_of) -> None:
    """Raise EmptyWindow unless some event in `data_dir/events` is before `as_of`, and WindowOutsideEvents
    if `as_of` is in the future or more than AS_OF_TOLERANCE_DAYS after the last event (`event_span`),
    before a feature job writes anything."""
    events, as_of = Path(data_dir) / "events", as_utc(as_of)
    first, last = event_span(data_dir)
    if first is None or first >= as_of:
        since = "there are none" if first is None else f"the first is at {first}"
        raise EmptyWindow(events, f"no event before {as_of} ({since}): nothing written")
    now = pd.Timestamp.now("UTC")
    if as_of > now:
        raise WindowOutsideEvents(events, f"as-of {as_of} is in the future (now {now}): nothing written")
    if as_of - last > pd.Timedelta(days=AS_OF_TOLERANCE_DAYS):
        raise WindowOutsideEvents(
            events,
            f"as-of {as_of} is more than {AS_OF_TOLERANCE_DAYS} day after the last event ({last}): "
            "nothing written",
        )


def check_label_window(data_dir: str | Path, labels: pd.DataFrame, source: str | Path | None = None) -> None:
    """Raise WindowOutsideEvents, naming `source` (the labels' file) or else the events, unless every
    label's `label_ts` (labels as `validate_labels` returns them) is within the events' span: not before
    the first event (its features would be empty), at most AS_OF_TOLERANCE_DAYS after the last (measured
    from a time the data does not reach)."""
    events = Path(data_dir) / "events"
    first, last = event_span(data_dir)
    low, high = labels["label_ts"].min(), labels["label_ts"].max()
    if first is None:
        raise EmptyWindow(events, "no event at all: a training set has no features to join")
    if low < first or high - last > pd.Timedelta(days=AS_OF_TOLERANCE_DAYS):
        raise WindowOutsideEvents(
            Path(source) if source is not None else events,
            f"labels from {low} to {high} are outside the span of the events in {events} ({first} to "
            f"{last}, labels up to {AS_OF_TOLERANCE_DAYS} day after it): nothing written",
        )


def events_before(events: pd.DataFrame, as_of) -> pd.DataFrame:
    """The events strictly before `as_of`: the only ones a feature stamped `as_of` may use."""
    ev = compact_events(events)
    return ev[ev["ts"] < as_utc(as_of)]


def price_band(price: pd.Series) -> pd.Series:
    """Price band 0..4 of CNY prices (NaN stays NaN)."""
    band = pd.cut(price.astype(float), PRICE_BAND_EDGES, right=False, labels=False)
    return band.astype("Float64")


def catalog_view(products: pd.DataFrame, categories: pd.DataFrame | None = None) -> pd.DataFrame:
    """Product attributes features need, indexed by product_id: float price, leaf, root, brand, origin."""
    p = products.set_index("product_id") if "product_id" in products.columns else products
    view = pd.DataFrame(
        {
            "category_id": p["category_id"],
            "brand": p["brand"],
            "origin_country": p["origin_country"],
            "fulfillment": p["fulfillment"],
            "merchant_id": p["merchant_id"],
            "self_operated": p["self_operated"],
            "price": p["price"].astype(float),
        }
    )
    if categories is not None:
        parent = categories.set_index("category_id")["parent_id"]
        view["root_category_id"] = parent.reindex(view["category_id"]).fillna(view["category_id"]).to_numpy()
    else:
        view["root_category_id"] = view["category_id"].str.split("-").str[0]
    leaf_median = view.groupby("category_id")["price"].transform("median")
    view["price_vs_leaf"] = view["price"] / leaf_median
    view["price_band"] = price_band(view["price"])
    return view


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den.where(den > 0)).astype(float)


def _plain_index(frame: pd.DataFrame) -> pd.DataFrame:
    frame.index = frame.index.astype(str)
    return frame


def _shares(frame: pd.DataFrame, key: str, col: str, values, prefix: str) -> pd.DataFrame:
    """Share of each row's events per value of `col` (columns in `values` order)."""
    counts = frame.groupby([key, col], observed=True).size().unstack(fill_value=0)
    counts.columns = counts.columns.astype(str)
    counts = counts.reindex(columns=list(values), fill_value=0)
    counts.columns.name = None
    return _plain_index(counts.div(counts.sum(axis=1).where(lambda x: x > 0), axis=0).add_prefix(prefix))


def _flags(ev: pd.DataFrame, as_of: pd.Timestamp, kinds) -> pd.DataFrame:
    """Per-event indicator columns (one per event type, and per type x window) to sum in one groupby."""
    flags = {f"is_{k}": (ev["event_type"] == k).to_numpy() for k in kinds}
    age = ((as_of - ev["ts"]) / DAY).to_numpy()
    for days in WINDOWS_DAYS:
        for k in kinds:
            flags[f"is_{k}_{days}d"] = flags[f"is_{k}"] & (age <= days)
    return pd.DataFrame(flags, index=ev.index)


def shopper_features(
    events: pd.DataFrame,
    products: pd.DataFrame,
    as_of,
    *,
    shoppers: pd.DataFrame | None = None,
    categories: pd.DataFrame | None = None,
    shopper_ids=None,
) -> pd.DataFrame:
    """One row per shopper with events before `as_of`, per shopper signed up by then (given `shoppers`),
    or exactly per `shopper_ids` (zero counts for those without history).

    Recency / frequency / monetary (90-day window, as the campaign truth uses), events and purchases per
    7/30/90-day window, conversion rates (carts and purchases per view), root-category and origin-country
    shares of product events, top leaf category, the price band and average prices of what they view
    and buy, coupon redemption rate; region, segment and tenure from `shoppers`.
    """
    as_of = as_utc(as_of)
    ev = events_before(events, as_of)
    cat = catalog_view(products, categories)
    kinds = ("view", "cart", "purchase", "search", "coupon_grant", "coupon_redeem")
    flags = _flags(ev, as_of, ("view", "cart", "purchase"))
    is_purchase = (ev["event_type"] == "purchase").to_numpy()
    work = pd.DataFrame(
        {
            "shopper_id": ev["shopper_id"],
            "ts": ev["ts"],
            "purchase_ts": ev["ts"].where(is_purchase),
            "spend": np.where(is_purchase, ev["value"], 0.0),
            "spend_90d": np.where(flags["is_purchase_90d"], ev["value"], 0.0),
            **{
                f"n_{k}": (ev["event_type"] == k).to_numpy()
                for k in kinds
                if k not in ("view", "cart", "purchase")
            },
            **{c.replace("is_", "n_"): flags[c] for c in flags.columns},
        }
    )
    agg = {c: (c, "sum") for c in work.columns if c.startswith("n_")}
    out = _plain_index(
        work.groupby("shopper_id", observed=True).agg(
            **agg,
            monetary_total=("spend", "sum"),
            monetary_90d=("spend_90d", "sum"),
            last_event=("ts", "max"),
            last_purchase=("purchase_ts", "max"),
        )
    )
    out["recency_days"] = (as_of - out.pop("last_purchase")) / DAY
    out["days_since_last_event"] = (as_of - out.pop("last_event")) / DAY
    needed = cat[["category_id", "root_category_id", "origin_country", "price", "price_vs_leaf"]]
    needed = needed.astype({c: "category" for c in ("category_id", "root_category_id", "origin_country")})
    pev = ev[ev["event_type"].isin(PRODUCT_EVENT_TYPES)].join(needed, on="product_id")
    prices = _plain_index(
        pev.groupby("shopper_id", observed=True).agg(
            avg_price_vs_leaf=("price_vs_leaf", "mean"),
            median_price=("price", "median"),
        )
    )
    prices = prices.join(
        _plain_index(
            pev[pev["event_type"] == "view"]
            .groupby("shopper_id", observed=True)
            .agg(avg_price_viewed=("price", "mean"))
        )
    )
    prices = prices.join(
        _plain_index(
            pev[pev["event_type"] == "purchase"]
            .groupby("shopper_id", observed=True)
            .agg(avg_price_bought=("price", "mean"))
        )
    )
    prices["price_band"] = price_band(prices.pop("median_price"))
    leaf_counts = pev.groupby(["shopper_id", "category_id"], observed=True).size().reset_index(name="n")
    top = leaf_counts.sort_values(["shopper_id", "n", "category_id"], ascending=[True, False, True])
    top = _plain_index(top.drop_duplicates("shopper_id").set_index("shopper_id")[["category_id"]].astype(str))
    out = out.join(
        [
            prices,
            top.rename(columns={"category_id": "top_category_id"}),
            _shares(
                pev,
                "shopper_id",
                "root_category_id",
                sorted(cat["root_category_id"].unique()),
                "category_share_",
            ),
            _shares(
                pev, "shopper_id", "origin_country", sorted(cat["origin_country"].unique()), "origin_share_"
            ),
        ]
    )
    if shoppers is not None:
        s = shoppers.set_index("shopper_id") if "shopper_id" in shoppers.columns else shoppers
        s = _plain_index(s[s["created_at"] < as_of].copy())
        out = s[["region", "segment"]].join(out, how="left")
        out["tenure_days"] = (as_of - s["created_at"]) / DAY
    if shopper_ids is not None:
        out = out.reindex(pd.Index(pd.unique(pd.Series(shopper_ids, dtype=str)), dtype=str))
    sums = [c for c in out.columns if c.startswith(("n_", "monetary_"))]
    out[sums] = out[sums].fillna(0)
    counts = [c for c in out.columns if c.startswith("n_")]
    out[counts] = out[counts].astype("int64")
    out["frequency_90d"] = out["n_purchase_90d"]
    out["avg_basket"] = _ratio(out["monetary_total"], out["n_purchase"])
    out["cart_rate"] = _ratio(out["n_cart"], out["n_view"])
    out["purchase_rate"] = _ratio(out["n_purchase"], out["n_view"])
    out["coupon_redeem_rate"] = _ratio(out["n_coupon_redeem"], out["n_coupon_grant"])
    out.index.name = "shopper_id"
    out.insert(0, "as_of", as_of)
    return out.sort_index()


def product_features(
    events: pd.DataFrame, products: pd.DataFrame, as_of, *, categories: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per product of the catalog created before `as_of`.

    Views, carts and purchases over 7/30/90 days, trend (last 7 days' daily rate over the 30-day rate,
    +1 smoothed), conversion rates over 90 days, unique buyers, days since the last purchase, age, and
    the catalog attributes (price band, price relative to the leaf median, category, brand, origin,
    fulfillment, merchant).
    """
    return product_features_from_counts(
        product_event_counts(events, as_of), products, as_of, categories=categories
    )


def product_event_counts(events: pd.DataFrame, as_of) -> pd.DataFrame:
    """Per product: event counts per type and window, `buyers_90d`, `last_purchase`.

    Additive over event sets that share no shopper (sum the counts and buyers, max `last_purchase`):
    what lets `features.distributed` compute it per shopper partition and combine.
    """
    as_of = as_utc(as_of)
    ev = events_before(events, as_of)
    ev = ev[ev["event_type"].isin(PRODUCT_EVENT_TYPES)]
    flags = _flags(ev, as_of, ("view", "cart", "purchase"))
    flags.columns = [c.replace("is_", "n_") for c in flags.columns]
    work = pd.concat([ev[["product_id", "ts"]], flags], axis=1)
    work["purchase_ts"] = ev["ts"].where(flags["n_purchase"])
    counts = _plain_index(
        work.groupby("product_id", observed=True).agg(
            **{c: (c, "sum") for c in flags.columns},
            last_purchase=("purchase_ts", "max"),
        )
    )
    buyers = (
        ev[flags["n_purchase_90d"].to_numpy()].groupby("product_id", observed=True)["shopper_id"].nunique()
    )
    counts["buyers_90d"] = _plain_index(buyers.to_frame())["shopper_id"]
    counts["buyers_90d"] = counts["buyers_90d"].fillna(0).astype("int64")
    counts.index.name = "product_id"
    return counts


def product_features_from_counts(
    counts: pd.DataFrame, products: pd.DataFrame, as_of, *, categories: pd.DataFrame | None = None
) -> pd.DataFrame:
    """`product_features` from `product_event_counts` output (one frame, or partial ones combined)."""
    as_of = as_utc(as_of)
    p = products.set_index("product_id") if "product_id" in products.columns else products
    p = p[p["created_at"] < as_of]
    out = catalog_view(p, categories).join(counts)
    sums = [c for c in out.columns if c.startswith("n_")] + ["buyers_90d"]
    out[sums] = out[sums].fillna(0).astype("int64")
    for kind in ("view", "purchase"):
        out[f"{kind}_trend_7_30"] = (out[f"n_{kind}_7d"] + 1) / (out[f"n_{kind}_30d"] * 7 / 30 + 1)
    out["cart_rate_90d"] = _ratio(out["n_cart_90d"], out["n_view_90d"])
    out["purchase_rate_90d"] = _ratio(out["n_purchase_90d"], out["n_view_90d"])
    out["days_since_last_purchase"] = (as_of - out.pop("last_purchase")) / DAY
    out["age_days"] = (as_of - p["created_at"]) / DAY
    out.index.name = "product_id"
    out.insert(0, "as_of", as_of)
    return out.sort_index()


#: The marketplace inputs (commerce.inputs.INPUTS) the feature tables are built from.
FEATURE_INPUTS = ("events", "products.parquet", "shoppers.parquet", "categories.parquet")


def read_marketplace(data_dir: str | Path) -> dict[str, pd.DataFrame]:
    """events, products, shoppers, categories of a generated marketplace directory."""
    d = marketplace_dir(data_dir)
    check_marketplace(d, FEATURE_INPUTS)
    cols = ["ts", "shopper_id", "product_id", "event_type", "value"]
    return {
        "events": pd.read_parquet(d / "events", columns=cols),
        "products": pd.read_parquet(d / "products.parquet"),
        "shoppers": pd.read_parquet(d / "shoppers.parquet"),
        "categories": pd.read_parquet(d / "categories.parquet"),
    }


def build_feature_tables(data_dir: str | Path, out_dir: str | Path, as_of=None) -> dict[str, Path]:
    """Write shopper_features.parquet and product_features.parquet for `as_of` (default: just after
    the last event). Returns the written paths."""
    m = read_marketplace(data_dir)
    if as_of is None:
        as_of = m["events"]["ts"].max() + pd.Timedelta(microseconds=1)
    else:
        check_window(data_dir, as_of)
        as_of = as_utc(as_of)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "shopper_features": shopper_features(
            m["events"], m["products"], as_of, shoppers=m["shoppers"], categories=m["categories"]
        ),
        "product_features": product_features(m["events"], m["products"], as_of, categories=m["categories"]),
    }
    paths = {name: out / f"{name}.parquet" for name in tables}
    # Both written before either is published (one `as_of`, read together): published one by one, a
    # process killed while writing the second left the new shopper table beside the previous product one.
    with ExitStack() as stack:
        for name, table in tables.items():
            table.to_parquet(stack.enter_context(atomic_path(paths[name])))
    return paths
