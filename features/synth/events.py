"""Sessions and their events for one block of shoppers: browse -> cart -> purchase, plus repurchases.

Everything is vectorised over the block (no per-event Python loops). Event arrays use row numbers
(shopper row in the block, product row in products.parquet); ids are attached when the block is written.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from features.synth.catalog import Catalog
from features.synth.model import ModelParams, Tastes
from features.synth.timeline import US_PER_DAY, US_PER_SECOND, Timeline

EVENT_TYPES = ("view", "search", "cart", "favorite", "purchase", "coupon_grant", "coupon_redeem")
VIEW, SEARCH, CART, FAVORITE, PURCHASE, COUPON_GRANT, COUPON_REDEEM = range(len(EVENT_TYPES))
VIEWS_PER_SESSION = 1.8  # extra views beyond the first (Poisson mean)
SEARCH_SHARE = 0.35
FAVORITE_RATE = 0.05
REPURCHASE_ROUNDS = 4
INTENT_STICKINESS = 0.5  # chance that a later view of a visit stays on the line the visit started on


@dataclass
class Events:
    """Columnar events of one block; -1 means null for product, campaign, coupon and query."""

    shopper: np.ndarray
    product: np.ndarray
    etype: np.ndarray
    ts: np.ndarray
    quantity: np.ndarray
    value: np.ndarray
    session: np.ndarray
    campaign: np.ndarray
    coupon: np.ndarray
    query: np.ndarray

    @classmethod
    def make(
        cls, shopper, product, etype, ts, session, quantity=None, value=None, campaign=-1, coupon=-1, query=-1
    ) -> Events:
        n = len(shopper)

        def full(x, dtype):
            return np.full(n, x, dtype=dtype) if np.isscalar(x) else np.asarray(x, dtype=dtype)

        return cls(
            full(shopper, np.int64),
            full(product, np.int64),
            full(etype, np.int8),
            full(ts, np.int64),
            full(1 if quantity is None else quantity, np.int32),
            full(0.0 if value is None else value, np.float64),
            full(session, np.int64),
            full(campaign, np.int16),
            full(coupon, np.int16),
            full(query, np.int32),
        )

    @classmethod
    def concat(cls, parts: list[Events]) -> Events:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def select(self, mask: np.ndarray) -> Events:
        return Events(*(getattr(self, f.name)[mask] for f in fields(self)))

    def __len__(self) -> int:
        return len(self.ts)


def sample_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each entry of `rows`, a column drawn from that row of the row-stochastic `probs`."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    return np.minimum((cum[rows] < rng.random((len(rows), 1))).sum(axis=1), probs.shape[1] - 1)


def paid_value(catalog: Catalog, timeline: Timeline, product, quantity, ts) -> np.ndarray:
    """CNY paid: list price x quantity, less the season discount inside the discount season."""
    disc = np.where(timeline.in_season(ts), 1.0 - timeline.discount, 1.0)
    return np.round(catalog.product_price[product] * quantity * disc, 2)


def purchase_quantity(rng, catalog: Catalog, product) -> np.ndarray:
    rep = catalog.leaves.repurchasable[catalog.model.line_leaf[catalog.model.product_line[product]]]
    return 1 + rng.poisson(np.where(rep, 0.5, 0.08))


def organic_events(
    rng: np.random.Generator,
    tastes: Tastes,
    created_us: np.ndarray,
    catalog: Catalog,
    params: ModelParams,
    timeline: Timeline,
    sessions_per_shopper: float,
) -> tuple[Events, int]:
    """Browsing sessions of a block of shoppers over the period; returns (events, sessions used)."""
    model = catalog.model
    lam = sessions_per_shopper * tastes.activity * timeline.active_share(created_us)
    s_user = np.repeat(np.arange(len(tastes)), rng.poisson(lam))
    s_ts = timeline.sample_times(rng, created_us[s_user])
    keep = s_ts < timeline.end_us - 3600 * US_PER_SECOND
    s_user, s_ts = s_user[keep], s_ts[keep]
    n_sess = len(s_user)
    s_leaf = sample_rows(rng, tastes.category_affinity, s_user)

    n_views = 1 + rng.poisson(VIEWS_PER_SESSION, n_sess)
    v_sess = np.repeat(np.arange(n_sess), n_views)
    gaps = (3 + rng.exponential(40.0, len(v_sess))) * US_PER_SECOND
    offsets = np.cumsum(gaps).astype(np.int64)
    first = np.concatenate([[0], np.cumsum(n_views)[:-1]])
    offsets -= np.repeat(offsets[first] - gaps[first].astype(np.int64), n_views)
    v_ts = s_ts[v_sess] + 5 * US_PER_SECOND + offsets
    v_user = s_user[v_sess]
    product = model.sample_products(rng, tastes, params, v_user, s_leaf[v_sess], v_ts)
    product = _follow_intent(rng.spawn(1)[0], model, product, v_sess, v_ts)
    ok = product >= 0
    v_sess, v_ts, v_user, product = v_sess[ok], v_ts[ok], v_user[ok], product[ok]

    p_cart = model.cart_probability(
        tastes.activity[v_user], tastes.price_sensitivity[v_user], product, timeline.in_season(v_ts), params
    )
    carted = rng.random(len(v_ts)) < p_cart
    fav = rng.random(len(v_ts)) < FAVORITE_RATE
    c_ts = v_ts + (1 + rng.exponential(15.0, len(v_ts))).astype(np.int64) * US_PER_SECOND
    checkout = np.zeros(n_sess, dtype=np.int64)
    np.maximum.at(checkout, v_sess[carted], c_ts[carted])
    checkout += ((20 + rng.exponential(60.0, n_sess)) * US_PER_SECOND).astype(np.int64)
    p_buy = model.buy_probability(timeline.in_season(checkout[v_sess]), params)
    bought = carted & (rng.random(len(v_ts)) < p_buy)
    bought &= ~_owned_already(catalog, v_user, product, checkout[v_sess], bought)
    qty = purchase_quantity(rng, catalog, product[bought])
    b_ts = checkout[v_sess[bought]]

    searched = rng.random(n_sess) < SEARCH_SHARE
    n_leaves = len(catalog.leaves.ids)
    first_brand = np.full(n_sess, -1)
    first_brand[v_sess[::-1]] = model.line_brand[model.product_line[product[::-1]]]
    # The query names the leaf or, a third of the time, the brand of the first product viewed.
    by_brand = (rng.random(n_sess) < 1 / 3) & (first_brand >= 0)
    query = np.where(by_brand, n_leaves + first_brand, s_leaf)

    parts = [
        Events.make(v_user, product, VIEW, v_ts, v_sess),
        Events.make(v_user[carted], product[carted], CART, c_ts[carted], v_sess[carted]),
        Events.make(v_user[fav], product[fav], FAVORITE, c_ts[fav] + US_PER_SECOND, v_sess[fav]),
        Events.make(
            v_user[bought],
            product[bought],
            PURCHASE,
            b_ts,
            v_sess[bought],
            qty,
            paid_value(catalog, timeline, product[bought], qty, b_ts),
        ),
        Events.make(
            s_user[searched], -1, SEARCH, s_ts[searched], np.flatnonzero(searched), 0, query=query[searched]
        ),
    ]
    events = Events.concat(parts)
    repeats, n_sess = repurchases(
        rng, events.select(events.etype == PURCHASE), tastes, catalog, timeline, n_sess
    )
    return Events.concat([events, repeats]), n_sess


def _follow_intent(rng, model, product, v_sess, v_ts) -> np.ndarray:
    """In-session intent: a visit pursues one need, so each later view stays, with INTENT_STICKINESS,
    on the product line of the visit's first view (variants of one product), if its brand is still live.

    Draws come from their own generator (spawned from the block's), so the rest of the stream is what it
    would be without intent."""
    first = np.ones(len(v_sess), dtype=bool)
    first[1:] = v_sess[1:] != v_sess[:-1]
    anchor = product[np.flatnonzero(first)[np.cumsum(first) - 1]]
    stick = ~first & (anchor >= 0) & (rng.random(len(product)) < INTENT_STICKINESS)
    line = np.where(stick, model.product_line[np.maximum(anchor, 0)], -1)
    brand = model.line_brand[np.maximum(line, 0)]
    stick &= (v_ts >= model.brand_live_from[brand]) & (v_ts < model.brand_live_until[brand])
    replaced = model.products_of_lines(rng, np.where(stick, line, -1))
    return np.where(stick, replaced, product)


def _owned_already(catalog: Catalog, user, product, ts, bought) -> np.ndarray:
    """Purchases of a non-repurchasable product the shopper has already bought (nobody buys a second
    identical handbag)."""
    model = catalog.model
    idx = np.flatnonzero(bought & ~catalog.leaves.repurchasable[model.line_leaf[model.product_line[product]]])
    order = idx[np.lexsort((ts[idx], product[idx], user[idx]))]
    same = (user[order][1:] == user[order][:-1]) & (product[order][1:] == product[order][:-1])
    out = np.zeros(len(user), dtype=bool)
    out[order[1:][same]] = True
    return out


def repurchases(
    rng, purchases: Events, tastes: Tastes, catalog: Catalog, timeline: Timeline, next_session: int
) -> tuple[Events, int]:
    """Replenishment: a bought product in a repurchasable leaf is bought again after about one cycle."""
    model = catalog.model
    parts = []
    src = purchases
    for _ in range(REPURCHASE_ROUNDS):
        leaf = model.line_leaf[model.product_line[src.product]]
        brand = model.line_brand[model.product_line[src.product]]
        go = catalog.leaves.repurchasable[leaf] & (
            rng.random(len(src)) < 0.2 + 0.5 * tastes.brand_loyalty[src.shopper]
        )
        cycle = catalog.leaves.cycle_days[leaf]
        t = src.ts + (rng.gamma(4.0, cycle / 4.0) * US_PER_DAY).astype(np.int64)
        go &= (
            (t < timeline.end_us - 3600 * US_PER_SECOND)
            & (t >= model.brand_live_from[brand])
            & (t < model.brand_live_until[brand])
        )
        if not go.any():
            break
        user, product, t = src.shopper[go], src.product[go], t[go]
        sess = next_session + np.arange(len(user))
        next_session += len(user)
        c_ts = t + (5 + rng.exponential(20.0, len(t))).astype(np.int64) * US_PER_SECOND
        b_ts = c_ts + (20 + rng.exponential(60.0, len(t))).astype(np.int64) * US_PER_SECOND
        qty = purchase_quantity(rng, catalog, product)
        bought = Events.make(
            user, product, PURCHASE, b_ts, sess, qty, paid_value(catalog, timeline, product, qty, b_ts)
        )
        parts += [
            Events.make(user, product, VIEW, t, sess),
            Events.make(user, product, CART, c_ts, sess),
            bought,
        ]
        src = bought
    if not parts:
        return Events.make(np.zeros(0), -1, VIEW, np.zeros(0), np.zeros(0)), next_session
    return Events.concat(parts), next_session
