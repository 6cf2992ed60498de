"""Past coupon campaigns: random assignment, heterogeneous true effects, drawn outcomes and their events."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa

from features.synth.catalog import TS, Catalog
from features.synth.events import CART, COUPON_GRANT, COUPON_REDEEM, PURCHASE, VIEW, Events, sample_rows
from features.synth.model import (
    BASKET_SIGMA,
    REDEEM_RATE,
    TREATED_BASKET_LIFT,
    ModelParams,
    Tastes,
    coupon_discount,
    coupon_probabilities,
    coupon_strength,
    expected_spend,
)
from features.synth.timeline import US_PER_DAY, US_PER_SECOND, Timeline

PARTICIPATION = 0.6  # share of eligible shoppers drawn into each campaign
RFM_WINDOW_DAYS = 90
MONEY = pa.decimal128(12, 2)


@dataclass(frozen=True)
class CouponSpec:
    coupon_id: str
    kind: str
    value: float  # CNY for amount_off, a fraction for percent_off
    cap: float | None
    min_spend: float
    scope_leaf: int | None = None  # a leaf-category scope; None = platform-wide


@dataclass(frozen=True)
class CampaignSpec:
    campaign_id: str
    name: str
    channel: str
    start_day: int  # offsets from the period start, [start_day, end_day)
    end_day: int
    control_share: float
    coupons: tuple[CouponSpec, ...]


CAMPAIGNS = (
    CampaignSpec(
        "CMP01",
        "Summer skincare week",
        "email",
        17,
        24,
        0.4,
        (
            CouponSpec("CPN0101", "amount_off", 30.0, None, 199.0),
            CouponSpec("CPN0102", "percent_off", 0.15, 60.0, 0.0, scope_leaf=0),
        ),
    ),
    CampaignSpec(
        "CMP02",
        "Mid-autumn gifting",
        "social",
        52,
        59,
        0.35,
        (
            CouponSpec("CPN0201", "amount_off", 50.0, None, 299.0),
            CouponSpec("CPN0202", "amount_off", 20.0, None, 99.0),
            CouponSpec("CPN0203", "percent_off", 0.10, 80.0, 0.0),
        ),
    ),
    CampaignSpec(
        "CMP03",
        "Baby care restock",
        "site",
        73,
        80,
        0.5,
        (
            CouponSpec("CPN0301", "amount_off", 40.0, None, 199.0, scope_leaf=5),
            CouponSpec("CPN0302", "percent_off", 0.12, 50.0, 0.0),
        ),
    ),
    CampaignSpec(
        "CMP04",
        "Black Friday imports",
        "search_ads",
        112,
        119,
        0.3,
        (
            CouponSpec("CPN0401", "amount_off", 60.0, None, 399.0),
            CouponSpec("CPN0402", "percent_off", 0.20, 100.0, 0.0),
        ),
    ),
)
ALL_COUPONS = tuple(c for camp in CAMPAIGNS for c in camp.coupons)


def campaign_window(spec: CampaignSpec, timeline: Timeline) -> tuple[int, int]:
    return timeline.start_us + spec.start_day * US_PER_DAY, timeline.start_us + spec.end_day * US_PER_DAY


def campaign_tables(timeline: Timeline, leaf_ids: list[str]) -> tuple[pa.Table, pa.Table]:
    """(campaigns.parquet, coupons.parquet)."""
    windows = [campaign_window(c, timeline) for c in CAMPAIGNS]
    campaigns = pa.table(
        {
            "campaign_id": [c.campaign_id for c in CAMPAIGNS],
            "name": [c.name for c in CAMPAIGNS],
            "channel": [c.channel for c in CAMPAIGNS],
            "start": pa.array([w[0] for w in windows], pa.int64()).cast(TS),
            "end": pa.array([w[1] for w in windows], pa.int64()).cast(TS),
            "control_share": pa.array([c.control_share for c in CAMPAIGNS], pa.float64()),
        }
    )
    rows = [(camp.campaign_id, c) for camp in CAMPAIGNS for c in camp.coupons]

    def money(x):
        return None if x is None else Decimal(f"{x:.2f}")

    coupons = pa.table(
        {
            "coupon_id": [c.coupon_id for _, c in rows],
            "campaign_id": [cid for cid, _ in rows],
            "kind": [c.kind for _, c in rows],
            "value": pa.array([money(c.value) for _, c in rows], MONEY),
            "cap": pa.array([money(c.cap) for _, c in rows], MONEY),
            "min_spend": pa.array([money(c.min_spend) for _, c in rows], MONEY),
            "scope_type": ["platform" if c.scope_leaf is None else "category" for _, c in rows],
            "scope_id": pa.array(
                [None if c.scope_leaf is None else leaf_ids[c.scope_leaf] for _, c in rows], pa.string()
            ),
        }
    )
    return campaigns, coupons


def rfm_arrays(shopper, ts, value, n_shoppers: int, as_of_us: int):
    """Recency (days since last purchase, NaN if none), frequency and monetary (last 90 days) per shopper.

    `shopper`, `ts`, `value` describe purchase events only; rows at or after `as_of_us` are ignored.
    """
    before = ts < as_of_us
    last = np.full(n_shoppers, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, shopper[before], ts[before])
    recency = np.where(last > np.iinfo(np.int64).min, (as_of_us - last) / US_PER_DAY, np.nan)
    recent = before & (ts >= as_of_us - RFM_WINDOW_DAYS * US_PER_DAY)
    frequency = np.bincount(shopper[recent], minlength=n_shoppers).astype(np.float64)
    monetary = np.bincount(shopper[recent], weights=value[recent], minlength=n_shoppers)
    return recency, frequency, monetary


def basket_mean(
    category_affinity: np.ndarray, price_sensitivity: np.ndarray, leaf_median_price
) -> np.ndarray:
    """Typical CNY basket: the affinity-weighted leaf median price, lower when price-sensitive."""
    return np.exp(category_affinity @ np.log(leaf_median_price)) * (1.25 - 0.5 * price_sensitivity)


def scope_relevance(category_affinity: np.ndarray, coupon: CouponSpec) -> np.ndarray:
    if coupon.scope_leaf is None:
        return np.ones(len(category_affinity))
    return np.minimum(1.0, category_affinity[:, coupon.scope_leaf] * category_affinity.shape[1] / 3.0)


def coupon_truth(spec: CampaignSpec, rfm, tastes: Tastes, segment, leaf_median_price):
    """Per coupon of the campaign: (p_control, p_treated, spend_control, spend_treated) arrays."""
    recency, frequency, monetary = rfm
    basket = basket_mean(tastes.category_affinity, tastes.price_sensitivity, leaf_median_price)
    out = []
    for c in spec.coupons:
        p0, p1 = coupon_probabilities(
            recency,
            frequency,
            monetary,
            tastes.price_sensitivity,
            tastes.activity,
            segment,
            coupon_strength(c.kind, c.value, c.cap, c.min_spend),
            scope_relevance(tastes.category_affinity, c),
        )
        s0, s1 = expected_spend(p0, p1, basket, c.kind, c.value, c.cap, c.min_spend)
        out.append((p0, p1, s0, s1))
    return out


@dataclass
class CampaignRows:
    """Assignments and truth rows of a block (shopper rows in the block, arm -1 = control)."""

    assignments: list
    effects: list


def run_campaigns(
    rng: np.random.Generator,
    events: Events,
    tastes: Tastes,
    segment: np.ndarray,
    created_us: np.ndarray,
    catalog: Catalog,
    params: ModelParams,
    timeline: Timeline,
    next_session: int,
) -> tuple[Events, CampaignRows, int]:
    """Assign the block's shoppers to each past campaign in time order, draw outcomes, rewrite the log.

    Inside a window, an assigned shopper's organic purchases are replaced by the drawn outcome, so the
    event log agrees with `assignments.parquet` (bought in the window iff `converted`).
    """
    rows = CampaignRows([], [])
    med = catalog.leaves.median_price
    n = len(tastes)
    for ci, spec in enumerate(CAMPAIGNS):
        start, end = campaign_window(spec, timeline)
        who = np.flatnonzero((created_us < start) & (rng.random(n) < PARTICIPATION))
        arm = np.where(
            rng.random(len(who)) < spec.control_share, -1, rng.integers(0, len(spec.coupons), len(who))
        )
        pur = events.etype == PURCHASE
        rfm = rfm_arrays(events.shopper[pur], events.ts[pur], events.value[pur], n, start)
        sub = tastes.take(who)
        truth = coupon_truth(spec, tuple(x[who] for x in rfm), sub, segment[who], med)
        p0 = truth[0][0]
        p1 = np.stack([t[1] for t in truth], axis=1)
        treated = arm >= 0
        p_real = np.where(treated, p1[np.arange(len(who)), np.maximum(arm, 0)], p0)
        converted = rng.random(len(who)) < p_real
        basket = (
            basket_mean(sub.category_affinity, sub.price_sensitivity, med)
            * np.where(treated, TREATED_BASKET_LIFT, 1.0)
            * np.exp(BASKET_SIGMA * rng.standard_normal(len(who)) - BASKET_SIGMA**2 / 2)
        )
        disc = np.zeros(len(who))
        for k, c in enumerate(spec.coupons):
            on = arm == k
            disc[on] = coupon_discount(basket[on], c.kind, c.value, c.cap, c.min_spend)
        redeemed = treated & converted & (disc > 0) & (rng.random(len(who)) < REDEEM_RATE)

        # Products bought in the window: a scoped coupon's leaf when redeemed, else the shopper's taste.
        t_grant = start + rng.integers(0, 6 * 3600 * US_PER_SECOND, len(who))
        t_buy = t_grant + rng.integers(
            600 * US_PER_SECOND, max(end - start - 8 * 3600 * US_PER_SECOND, 1), len(who)
        )
        leaf = sample_rows(rng, tastes.category_affinity, who)
        scope = np.array([-1 if c.scope_leaf is None else c.scope_leaf for c in spec.coupons])
        scoped = redeemed & (scope[np.maximum(arm, 0)] >= 0)
        leaf = np.where(scoped, scope[np.maximum(arm, 0)], leaf)
        buyers = np.flatnonzero(converted)
        product = np.full(len(who), -1)
        product[buyers] = catalog.model.sample_products(
            rng, tastes, params, who[buyers], leaf[buyers], t_buy[buyers]
        )
        lost = converted & (product < 0)
        if lost.any():  # the leaf had nothing live: no scoped redemption, buy from the busiest leaf
            redeemed &= ~lost
            best_leaf = np.bincount(catalog.model.line_leaf, minlength=len(med)).argmax()
            idx = np.flatnonzero(lost)
            product[idx] = catalog.model.sample_products(
                rng, tastes, params, who[idx], np.full(len(idx), best_leaf), t_buy[idx]
            )
            converted &= product >= 0
        spend = np.where(converted, np.round(basket - np.where(redeemed, disc, 0.0), 2), 0.0)

        in_window = np.zeros(n, dtype=bool)
        in_window[who] = True
        drop = (
            (events.etype == PURCHASE) & in_window[events.shopper] & (events.ts >= start) & (events.ts < end)
        )
        b = np.flatnonzero(converted)
        sess = next_session + np.arange(len(b))
        next_session += len(b)
        coupon_index = np.array([ALL_COUPONS.index(c) for c in spec.coupons])
        arm_coupon = np.where(treated, coupon_index[np.maximum(arm, 0)], -1)
        qty = np.maximum(1, np.round(basket[b] / catalog.product_price[product[b]])).astype(np.int32)
        tb = t_buy[b]
        g = np.flatnonzero(treated)
        r = np.flatnonzero(redeemed)
        r_sess = sess[np.searchsorted(b, r)]
        events = Events.concat(
            [
                events.select(~drop),
                Events.make(who[g], -1, COUPON_GRANT, t_grant[g], -1, 0, campaign=ci, coupon=arm_coupon[g]),
                Events.make(who[b], product[b], VIEW, tb - 90 * US_PER_SECOND, sess),
                Events.make(who[b], product[b], CART, tb - 45 * US_PER_SECOND, sess),
                Events.make(who[b], product[b], PURCHASE, tb, sess, qty, spend[b]),
                Events.make(
                    who[r],
                    -1,
                    COUPON_REDEEM,
                    t_buy[r] + US_PER_SECOND,
                    r_sess,
                    0,
                    campaign=ci,
                    coupon=arm_coupon[r],
                ),
            ]
        )
        rows.assignments.append((ci, who, arm_coupon, converted, spend, redeemed))
        rows.effects.append((ci, who, truth))
    return events, rows, next_session
