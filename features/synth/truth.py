"""Read the generator's ground truth back and ask it questions, for simulations against the truth.

Everything here is computed by the same functions (`features.synth.model`) the generator drew the
events and campaign outcomes from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.synth.campaigns import CampaignSpec, CouponSpec, coupon_truth, rfm_arrays
from features.synth.model import BLOCK_CELLS, FOREVER_US, NEVER_US, CatalogModel, ModelParams, Tastes
from features.synth.timeline import Timeline, to_us


@dataclass(frozen=True)
class Truth:
    """The latent state of a generated marketplace (see `load_truth`)."""

    shopper_ids: np.ndarray
    segment: np.ndarray
    tastes: Tastes
    product_ids: np.ndarray
    catalog: CatalogModel
    params: ModelParams
    timeline: Timeline
    leaf_ids: list[str]
    leaf_median_price: np.ndarray
    coupon_effects: pd.DataFrame

    def shopper_rows(self, shopper_ids) -> np.ndarray:
        return _rows(self.shopper_ids, shopper_ids, "shopper")

    def product_rows(self, product_ids) -> np.ndarray:
        return _rows(self.product_ids, product_ids, "product")


def _rows(known: np.ndarray, wanted, what: str) -> np.ndarray:
    wanted = np.asarray(wanted, dtype=object)
    idx = pd.Index(known).get_indexer(wanted)
    if (idx < 0).any():
        missing = wanted[idx < 0][:5].tolist()
        raise KeyError(f"unknown {what} ids (first few): {missing}")
    return idx


def _list_matrix(column) -> np.ndarray:
    return np.asarray(column.combine_chunks().flatten(), dtype=np.float64).reshape(len(column), -1)


def load_truth(directory: str | Path) -> Truth:
    """Load `truth/` plus the catalog and shopper files of a generated marketplace directory."""
    d = Path(directory)
    if not (d / "truth" / "tastes.parquet").exists():
        raise FileNotFoundError(f"{d} has no truth/tastes.parquet: is it a `crosscart generate` output?")
    order = json.loads((d / "truth" / "categories_order.json").read_text())
    meta = json.loads((d / "truth" / "model.json").read_text())
    tastes_t = pq.read_table(d / "truth" / "tastes.parquet")
    shoppers = pq.read_table(d / "shoppers.parquet", columns=["shopper_id", "segment"])
    if shoppers["shopper_id"] != tastes_t["shopper_id"]:
        raise ValueError("shoppers.parquet and truth/tastes.parquet disagree on shopper order")
    tastes = Tastes(
        _list_matrix(tastes_t["category_affinity"]),
        _list_matrix(tastes_t["origin_affinity"]),
        _list_matrix(tastes_t["latent"]),
        tastes_t["price_sensitivity"].to_numpy(),
        tastes_t["brand_loyalty"].to_numpy(),
        tastes_t["activity"].to_numpy(),
    )
    brands = pq.read_table(d / "truth" / "brands.parquet").to_pandas()
    products = pq.read_table(
        d / "products.parquet", columns=["product_id", "category_id", "brand"]
    ).to_pandas()
    ptruth = pq.read_table(d / "truth" / "products.parquet").to_pandas()
    leaf_ids = order["categories"]

    def us(col, missing):
        return np.array([missing if pd.isna(t) else to_us(t.to_pydatetime()) for t in brands[col]], np.int64)

    catalog = CatalogModel.build(
        n_leaves=len(leaf_ids),
        n_origins=len(order["origins"]),
        brand_latent=_list_matrix(
            pq.read_table(d / "truth" / "brands.parquet", columns=["latent"])["latent"]
        ),
        brand_origin=pd.Index(order["origins"]).get_indexer(brands["origin_country"]),
        brand_price_level=brands["price_level"].to_numpy(),
        brand_live_from=us("live_from", NEVER_US),
        brand_live_until=us("live_until", FOREVER_US),
        product_brand=pd.Index(brands["brand"]).get_indexer(products["brand"]),
        product_leaf=pd.Index(leaf_ids).get_indexer(products["category_id"]),
        product_popularity=ptruth["popularity"].to_numpy(),
        product_rel_price=ptruth["rel_price"].to_numpy(),
    )
    return Truth(
        shopper_ids=tastes_t["shopper_id"].to_numpy(zero_copy_only=False),
        segment=shoppers["segment"].to_numpy(zero_copy_only=False),
        tastes=tastes,
        product_ids=products["product_id"].to_numpy(dtype=object),
        catalog=catalog,
        params=ModelParams(**meta["params"]),
        timeline=Timeline(**meta["timeline"]),
        leaf_ids=leaf_ids,
        leaf_median_price=np.array([meta["leaf_median_price"][c] for c in leaf_ids]),
        coupon_effects=pq.read_table(d / "truth" / "coupon_effects.parquet").to_pandas(),
    )


def _at_us(truth: Truth, at) -> int:
    return truth.timeline.end_us if at is None else to_us(pd.Timestamp(at).to_pydatetime())


def _probabilities(truth: Truth, shopper_ids, product_ids, at, purchase: bool, in_season: bool) -> np.ndarray:
    cat = truth.catalog
    rows = truth.shopper_rows(shopper_ids)
    cols = np.arange(len(truth.product_ids)) if product_ids is None else truth.product_rows(product_ids)
    live = cat.brand_live(_at_us(truth, at))
    line_pop = np.where(live[cat.line_brand], cat.line_popularity(), 0.0)
    prod_share = np.divide(
        cat.product_popularity,
        line_pop[cat.product_line],
        out=np.zeros(len(cat.product_line)),
        where=line_pop[cat.product_line] > 0,
    )
    out = np.empty((len(rows), len(cols)))
    block = max(1, BLOCK_CELLS // max(len(truth.product_ids), cat.n_lines))
    for lo in range(0, len(rows), block):
        t = truth.tastes.take(rows[lo : lo + block])
        within = cat.line_choice_within_leaf(t, truth.params, live)
        p_line = within * t.category_affinity[:, cat.line_leaf]
        p_line /= p_line.sum(axis=1, keepdims=True)  # leaves with nothing live never yield a view
        p = p_line[:, cat.product_line] * prod_share[None, :]
        if purchase:
            n = len(t)
            buy = cat.buy_probability(in_season, truth.params)
            p *= buy * cat.cart_probability(
                t.activity[:, None],
                t.price_sensitivity[:, None],
                np.arange(len(prod_share))[None, :].repeat(n, 0),
                in_season,
                truth.params,
            )
            p /= p.sum(axis=1, keepdims=True)
        out[lo : lo + block] = p[:, cols]
    return out


def choice_probabilities(truth: Truth, shopper_ids, product_ids=None, at=None) -> np.ndarray:
    """(n_shoppers, n_products): probability that a shopper's next organic product view is each product.

    Rows sum to 1 over the whole catalog (when `product_ids` is None, columns follow products.parquet).
    `at` (a timestamp; default the end of the period) decides which merchants are live.
    """
    return _probabilities(truth, shopper_ids, product_ids, at, purchase=False, in_season=False)


def purchase_probabilities(truth: Truth, shopper_ids, product_ids=None, at=None, in_season: bool = False):
    """(n_shoppers, n_products): probability that a shopper's next organic purchase is each product.

    The view distribution reweighted by the chance the view is carted and bought; rows sum to 1 over
    the whole catalog. Replenishment and campaign purchases come on top of this organic behaviour.
    """
    return _probabilities(truth, shopper_ids, product_ids, at, purchase=True, in_season=in_season)


def shopper_rfm(events: pd.DataFrame, shopper_ids, as_of) -> pd.DataFrame:
    """Recency (days since the last purchase, NaN = none), frequency and monetary over the 90 days before
    `as_of`, from an events frame with `shopper_id`, `ts`, `event_type`, `value`."""
    shopper_ids = pd.Index(np.asarray(shopper_ids, dtype=object))
    pur = events[events["event_type"] == "purchase"]
    rows = shopper_ids.get_indexer(pur["shopper_id"])
    known = rows >= 0
    ts = pur["ts"].dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy()[known]
    rec, freq, mon = rfm_arrays(
        rows[known],
        ts,
        pur["value"].to_numpy()[known],
        len(shopper_ids),
        to_us(pd.Timestamp(as_of).to_pydatetime()),
    )
    return pd.DataFrame({"shopper_id": shopper_ids, "recency_days": rec, "frequency": freq, "monetary": mon})


def coupon_response(
    truth: Truth,
    rfm: pd.DataFrame,
    *,
    kind: str,
    value: float,
    cap: float | None = None,
    min_spend: float = 0.0,
    scope_category_id: str | None = None,
) -> pd.DataFrame:
    """True response of shoppers (rows of `shopper_rfm`) to a coupon: p_control, p_treated, true_uplift,
    spend_control, spend_treated (expected CNY in a campaign window)."""
    if kind not in ("amount_off", "percent_off"):
        raise ValueError(f"kind must be amount_off or percent_off, not {kind!r}")
    if kind == "percent_off" and not 0 < value <= 1:
        raise ValueError("a percent_off value is a fraction in (0, 1]")
    scope = None if scope_category_id is None else truth.leaf_ids.index(scope_category_id)
    spec = CouponSpec("simulated", kind, float(value), cap, float(min_spend), scope_leaf=scope)
    rows = truth.shopper_rows(rfm["shopper_id"])
    camp = CampaignSpec("simulated", "simulated", "site", 0, 1, 0.5, (spec,))
    ((p0, p1, s0, s1),) = coupon_truth(
        camp,
        (rfm["recency_days"].to_numpy(), rfm["frequency"].to_numpy(), rfm["monetary"].to_numpy()),
        truth.tastes.take(rows),
        truth.segment[rows],
        truth.leaf_median_price,
    )
    return pd.DataFrame(
        {
            "shopper_id": rfm["shopper_id"].to_numpy(),
            "p_control": p0,
            "p_treated": p1,
            "true_uplift": p1 - p0,
            "spend_control": s0,
            "spend_treated": s1,
        }
    )


__all__ = [
    "Truth",
    "choice_probabilities",
    "coupon_response",
    "load_truth",
    "purchase_probabilities",
    "shopper_rfm",
]
