"""The true behaviour model: how shoppers pick products, convert, and respond to coupons.

Both the generator and the truth API (`features.synth.truth`) call these functions, so the probabilities
the truth API reports are exactly those the events were drawn from.

Choice: a session picks a leaf category with the shopper's `category_affinity`; within the leaf a
"line" (a brand's products in that leaf) is picked with a softmax over
    beta_latent * (0.5 + brand_loyalty) * <latent_u, latent_brand>
    + beta_origin * log(n_origins * origin_affinity_u[origin]) - beta_price * price_sensitivity * price_level
    + log(live popularity of the line),
and a product within the line in proportion to its (power-law) popularity. Only brands whose merchant
is approved at the event time are live. Funnel: a view becomes a cart with
    sigmoid(cart_intercept + cart_activity * log(activity) - cart_price * price_sensitivity * rel_price
            + season_cart_boost * in_season)
and a cart is bought with sigmoid(buy_intercept + season_buy_boost * in_season).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

N_LATENT = 8
FOREVER_US = np.iinfo(np.int64).max  # a live_until that never comes (never suspended)
NEVER_US = np.iinfo(np.int64).max  # a live_from that never comes (pending / rejected merchants)
# Largest shopper x line block held in memory at once (float64 cells).
BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class ModelParams:
    """Coefficients of the choice, funnel and coupon-response models (saved in truth/model.json)."""

    beta_latent: float = 1.4
    beta_origin: float = 0.5
    beta_price: float = 1.5
    cart_intercept: float = -1.1
    cart_activity: float = 0.25
    cart_price: float = 1.2
    buy_intercept: float = -0.1
    season_cart_boost: float = 0.35
    season_buy_boost: float = 0.7

    def to_dict(self) -> dict:
        return asdict(self)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Tastes:
    """Latent tastes of a block of shoppers (row i = one shopper)."""

    category_affinity: np.ndarray  # (n, n_leaves), rows sum to 1
    origin_affinity: np.ndarray  # (n, n_origins), rows sum to 1
    latent: np.ndarray  # (n, N_LATENT)
    price_sensitivity: np.ndarray  # (n,) in (0, 1)
    brand_loyalty: np.ndarray  # (n,) in (0, 1)
    activity: np.ndarray  # (n,) mean 1

    def __len__(self) -> int:
        return len(self.activity)

    def take(self, idx: np.ndarray | slice) -> Tastes:
        return Tastes(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


@dataclass(frozen=True, eq=False)
class CatalogModel:
    """Catalog arrays the choice model needs.

    Lines are sorted by leaf (leaf l owns lines leaf_line_start[l]:leaf_line_start[l+1]); products are
    addressed by their row in products.parquet, and `line_products` lists them grouped by line.
    """

    n_leaves: int
    n_origins: int
    brand_latent: np.ndarray  # (n_brands, N_LATENT)
    brand_origin: np.ndarray  # (n_brands,) index into origins
    brand_price_level: np.ndarray  # (n_brands,) mean log price relative to the leaf median
    brand_live_from: np.ndarray  # (n_brands,) epoch us when its merchant became approved (NEVER_US: never)
    brand_live_until: np.ndarray  # (n_brands,) epoch us when its merchant was suspended (FOREVER_US: not)
    product_line: np.ndarray  # (n_products,)
    product_popularity: np.ndarray  # (n_products,) > 0
    product_rel_price: np.ndarray  # (n_products,) log(price / leaf median price)
    line_leaf: np.ndarray  # (n_lines,) sorted
    line_brand: np.ndarray  # (n_lines,)

    @classmethod
    def build(
        cls,
        *,
        n_leaves,
        n_origins,
        brand_latent,
        brand_origin,
        brand_price_level,
        brand_live_from,
        brand_live_until,
        product_brand,
        product_leaf,
        product_popularity,
        product_rel_price,
    ):
        """Derive the lines (brand x leaf pairs that have products) and each product's line."""
        pairs = np.unique(np.stack([product_leaf, product_brand], axis=1), axis=0)  # sorted by leaf
        line_of_pair = {(int(leaf), int(b)): i for i, (leaf, b) in enumerate(pairs)}
        product_line = np.array(
            [line_of_pair[(int(leaf), int(b))] for leaf, b in zip(product_leaf, product_brand, strict=True)],
            dtype=np.int64,
        )
        return cls(
            n_leaves=int(n_leaves),
            n_origins=int(n_origins),
            brand_latent=np.asarray(brand_latent, dtype=np.float64),
            brand_origin=np.asarray(brand_origin, dtype=np.int64),
            brand_price_level=np.asarray(brand_price_level, dtype=np.float64),
            brand_live_from=np.asarray(brand_live_from, dtype=np.int64),
            brand_live_until=np.asarray(brand_live_until, dtype=np.int64),
            product_line=product_line,
            product_popularity=np.asarray(product_popularity, dtype=np.float64),
            product_rel_price=np.asarray(product_rel_price, dtype=np.float64),
            line_leaf=pairs[:, 0].astype(np.int64),
            line_brand=pairs[:, 1].astype(np.int64),
        )

    @property
    def n_lines(self) -> int:
        return len(self.line_leaf)

    @property
    def leaf_line_start(self) -> np.ndarray:
        return np.searchsorted(self.line_leaf, np.arange(self.n_leaves + 1))

    @cached_property
    def line_products(self) -> tuple[np.ndarray, np.ndarray]:
        """(product rows ordered by line, start offset of each line in that order)."""
        order = np.argsort(self.product_line, kind="stable")
        return order, np.searchsorted(self.product_line[order], np.arange(self.n_lines + 1))

    @cached_property
    def _line_popularity(self) -> np.ndarray:
        return np.bincount(self.product_line, weights=self.product_popularity, minlength=self.n_lines)

    def line_popularity(self) -> np.ndarray:
        return self._line_popularity

    def brand_live(self, at_us: int) -> np.ndarray:
        return (self.brand_live_from <= at_us) & (at_us < self.brand_live_until)

    def line_log_weights(
        self, tastes: Tastes, params: ModelParams, brand_live: np.ndarray, lines: np.ndarray | None = None
    ) -> np.ndarray:
        """(n_shoppers, n_lines) unnormalised log choice weights (of `lines` only, if given);
        -inf for lines that are not live."""
        ln = np.arange(self.n_lines) if lines is None else lines
        b = self.line_brand[ln]
        u = (params.beta_latent * (0.5 + tastes.brand_loyalty))[:, None] * (
            tastes.latent @ self.brand_latent[b].T
        )
        origin_aff = np.maximum(tastes.origin_affinity[:, self.brand_origin[b]] * self.n_origins, 1e-3)
        u += params.beta_origin * np.log(origin_aff)
        u -= params.beta_price * tastes.price_sensitivity[:, None] * self.brand_price_level[b][None, :]
        pop = np.where(brand_live[b], self.line_popularity()[ln], 0.0)
        with np.errstate(divide="ignore"):
            u += np.log(pop)[None, :]
        return u

    def line_choice_within_leaf(self, tastes: Tastes, params: ModelParams, brand_live: np.ndarray):
        """(n, n_lines) probability of each line given its leaf (rows of a leaf without live lines: 0)."""
        logw = self.line_log_weights(tastes, params, brand_live)
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(w, axis=1)], axis=1)
        starts = self.leaf_line_start
        seg = cum[:, starts[1:]] - cum[:, starts[:-1]]  # (n, n_leaves)
        seg_of_line = seg[:, self.line_leaf]
        return np.divide(w, seg_of_line, out=np.zeros_like(w), where=seg_of_line > 0)

    def cart_probability(self, activity, price_sensitivity, products, in_season, params: ModelParams):
        """Probability that a view of `products[i]` by a shopper with activity[i], price_sensitivity[i]
        becomes a cart (elementwise)."""
        return sigmoid(
            params.cart_intercept
            + params.cart_activity * np.log(activity)
            - params.cart_price * price_sensitivity * self.product_rel_price[products]
            + params.season_cart_boost * np.asarray(in_season, dtype=np.float64)
        )

    @staticmethod
    def buy_probability(in_season, params: ModelParams) -> np.ndarray:
        """Probability that a cart is bought at checkout."""
        return sigmoid(
            params.buy_intercept + params.season_buy_boost * np.asarray(in_season, dtype=np.float64)
        )

    def sample_products(
        self,
        rng: np.random.Generator,
        tastes: Tastes,
        params: ModelParams,
        shopper: np.ndarray,
        leaf: np.ndarray,
        ts_us: np.ndarray,
    ) -> np.ndarray:
        """One product row per request (shopper row, leaf, time); -1 where the leaf has nothing live.

        Lines are drawn for the catalog as live before any suspension; a draw that hits a brand that is
        not live at that time is redrawn among brands live at the period's end (exact once all
        suspensions have happened, and never yields a product that is not live).
        """
        n = len(shopper)
        line = np.full(n, -1, dtype=np.int64)
        never = self.brand_live_from == NEVER_US
        ever_live = ~never
        end_live = ever_live & (self.brand_live_until == FOREVER_US)
        r = rng.random(n)
        line[:] = self._sample_lines(tastes, params, ever_live, shopper, leaf, r)
        brand = np.where(line >= 0, self.line_brand[np.maximum(line, 0)], 0)
        bad = (line >= 0) & ((ts_us < self.brand_live_from[brand]) | (ts_us >= self.brand_live_until[brand]))
        if bad.any():
            redo = np.flatnonzero(bad)
            line[redo] = self._sample_lines(
                tastes, params, end_live, shopper[redo], leaf[redo], rng.random(len(redo))
            )
        return self.products_of_lines(rng, line)

    def products_of_lines(self, rng: np.random.Generator, line: np.ndarray) -> np.ndarray:
        """One product per line (by product popularity within the line); -1 stays -1."""
        product = np.full(len(line), -1, dtype=np.int64)
        ok = line >= 0
        order, start = self.line_products
        pop_sorted = self.product_popularity[order]
        line_sorted = self.product_line[order]
        cum = np.cumsum(pop_sorted)
        before = np.concatenate([[0.0], cum])[start[:-1]]
        total = cum[start[1:] - 1] - before
        flat = line_sorted + (cum - before[line_sorted]) / total[line_sorted]
        pick = np.searchsorted(flat, line[ok] + rng.random(ok.sum()), side="right")
        pick = np.clip(pick, start[line[ok]], start[line[ok] + 1] - 1)
        product[ok] = order[pick]
        return product

    def _sample_lines(self, tastes, params, brand_live, shopper, leaf, r) -> np.ndarray:
        """Draw a line per request among its leaf's lines, leaf by leaf and in blocks of the requesting
        shoppers, so work and memory scale with the leaf's lines, not the whole catalog."""
        out = np.full(len(shopper), -1, dtype=np.int64)
        starts = self.leaf_line_start
        by_leaf = np.argsort(leaf, kind="stable")
        leaf_bounds = np.searchsorted(leaf[by_leaf], np.arange(self.n_leaves + 1))
        for lf in range(self.n_leaves):
            s, e = starts[lf], starts[lf + 1]
            reqs = by_leaf[leaf_bounds[lf] : leaf_bounds[lf + 1]]
            if len(reqs) == 0 or e == s:
                continue
            uniq, inv = np.unique(shopper[reqs], return_inverse=True)
            block = max(1, BLOCK_CELLS // (e - s))
            for lo in range(0, len(uniq), block):
                m = (inv >= lo) & (inv < lo + block)
                sel, u = reqs[m], inv[m] - lo
                logw = self.line_log_weights(
                    tastes.take(uniq[lo : lo + block]), params, brand_live, np.arange(s, e)
                )
                top = logw.max(axis=1, keepdims=True)
                w = np.exp(logw - np.where(np.isfinite(top), top, 0.0))
                cum = np.cumsum(w, axis=1)
                total = cum[:, -1].copy()
                cum /= np.where(total > 0, total, 1.0)[:, None]
                cum += np.arange(len(cum))[:, None]
                idx = np.searchsorted(cum.reshape(-1), u + r[sel], side="right") - u * (e - s)
                idx = np.clip(idx, 0, e - s - 1)
                valid = (total[u] > 0) & (w[u, idx] > 0)
                out[sel] = np.where(valid, s + idx, -1)
        return out


# ---------------------------------------------------------------- coupon response
SEGMENT_COUPON_MULTIPLIER = {"value_seeker": 1.4, "young_parent": 1.1, "premium": 0.2}
BASKET_SIGMA = 0.5
TREATED_BASKET_LIFT = 1.08
REDEEM_RATE = 0.9


def coupon_probabilities(
    recency_days, frequency, monetary, price_sensitivity, activity, segment, strength, relevance=1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(p_control, p_treated): chance to buy in a campaign window without / with a coupon.

    Observable drivers: recency (days since the last purchase, NaN = never), frequency and monetary
    (purchases and CNY in the 90 days before), segment; plus price sensitivity and activity. Recent,
    frequent buyers buy anyway (sure things); price-sensitive, lapsed-but-engaged shoppers buy mostly
    with a coupon (persuadables); big-spending, price-insensitive premium shoppers are put off
    (sleeping dogs); the rest hardly react. `strength` is the coupon's expected relative discount,
    `relevance` (0..1) how much of the shopper's buying the coupon's scope covers.
    """
    rec = np.clip(np.nan_to_num(np.asarray(recency_days, dtype=np.float64), nan=180.0), 0.0, 180.0)
    freq = np.asarray(frequency, dtype=np.float64)
    mon = np.asarray(monetary, dtype=np.float64)
    ps = np.asarray(price_sensitivity, dtype=np.float64)
    segment = np.asarray(segment)
    p0 = sigmoid(-2.2 + 0.7 * np.log1p(freq) - 1.8 * rec / 90.0 + 0.35 * np.log(activity))
    seg_mult = np.ones(len(p0))
    for name, m in SEGMENT_COUPON_MULTIPLIER.items():
        seg_mult[segment == name] = m
    lapsed = np.exp(-(((rec - 50.0) / 45.0) ** 2))
    gate = sigmoid((ps - 0.6) / 0.07)
    s = np.asarray(strength, dtype=np.float64) / 0.15
    tau = 0.32 * s * gate * (0.3 + 0.7 * lapsed) * seg_mult * (1.0 - p0) * relevance
    sleeping = (segment == "premium") & (ps < 0.3) & (mon >= 400.0)
    tau = np.where(sleeping, -0.45 * p0 * np.minimum(s, 1.5), tau)
    p1 = np.clip(p0 + tau, 0.001, 0.995)
    return p0, p1


def basket_quantiles(n: int = 64) -> np.ndarray:
    """Fixed standard-normal quantiles used to take expectations over the basket distribution."""
    from scipy.special import ndtri

    return ndtri((np.arange(n) + 0.5) / n)


def coupon_discount(basket, kind: str, value: float, cap: float | None, min_spend: float) -> np.ndarray:
    """CNY taken off a basket by a coupon (0 below the minimum spend)."""
    basket = np.asarray(basket, dtype=np.float64)
    off = np.full(basket.shape, value) if kind == "amount_off" else basket * value
    if cap is not None:
        off = np.minimum(off, cap)
    return np.where(basket >= min_spend, np.minimum(off, basket), 0.0)


def coupon_strength(kind: str, value: float, cap: float | None, min_spend: float, typical_basket=300.0):
    """Expected relative discount for a typical basket: what drives the size of the uplift."""
    q = typical_basket * np.exp(BASKET_SIGMA * basket_quantiles() - BASKET_SIGMA**2 / 2)
    return float(np.mean(coupon_discount(q, kind, value, cap, min_spend) / q))


def expected_spend(p_control, p_treated, basket_mean, kind, value, cap, min_spend):
    """(spend_control, spend_treated): expected CNY paid in the window, net of redeemed discounts."""
    z = basket_quantiles()
    m = np.asarray(basket_mean, dtype=np.float64)[:, None]
    basket_t = TREATED_BASKET_LIFT * m * np.exp(BASKET_SIGMA * z - BASKET_SIGMA**2 / 2)[None, :]
    disc = REDEEM_RATE * coupon_discount(basket_t, kind, value, cap, min_spend).mean(axis=1)
    return p_control * m[:, 0], p_treated * (TREATED_BASKET_LIFT * m[:, 0] - disc)
