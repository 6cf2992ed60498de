"""Simulated randomised campaigns with known per-shopper effects, for tests and benchmarks.

`hillstrom_like` mimics the MineThatData e-mail file (same columns and value sets, realistic rates,
weak and noisy heterogeneity) so that models can be developed without the real file.
`coupon_marketplace` simulates shoppers, several coupon types and their true conversion and spend
effects, for the campaign planner. Both return the truth so that plans and intervals can be scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["hillstrom_like", "coupon_marketplace", "draw_campaign", "draw_outcomes", "HISTORY_SEGMENTS"]

SPEND_NOISE = 0.2  # sd of log order value around its expectation

HISTORY_SEGMENTS = [
    (100, "1) $0 - $100"),
    (200, "2) $100 - $200"),
    (350, "3) $200 - $350"),
    (500, "4) $350 - $500"),
    (750, "5) $500 - $750"),
    (1000, "6) $750 - $1,000"),
    (np.inf, "7) $1,000 +"),
]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# months since the last purchase in the real file: most recent and 9-10 months back are the modes
RECENCY_COUNTS = np.array([8952, 7537, 5904, 5077, 4510, 4605, 4078, 3495, 6441, 7565, 3504, 2332], float)


def hillstrom_like(n: int = 64_000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(data, truth): the Hillstrom columns and value sets (zip code `Surburban` spelt as in the real
    file), and per-row true visit and conversion probabilities under each arm.

    Rates as in the real file: visits 10.6% (no e-mail), ~18% (men's), ~15.5% (women's); conversions
    0.6%, 1.2%, 0.9%; spend zero except for buyers, whose orders are log-normal (median ~$95, mean
    ~$115, $30-$499). The men's mail works more on men's-line buyers, the women's mail on women's-line
    buyers, both more on recent, high-history, web shoppers, through smooth terms and steps alike; the
    per-visit conversion lift is small and barely heterogeneous, so conversion and spend carry a weak
    signal. An unobserved taste term adds
    noise to base rates and effects alike.
    """
    rng = np.random.default_rng(seed)
    recency = rng.choice(np.arange(1, 13), n, p=RECENCY_COUNTS / RECENCY_COUNTS.sum())
    history = np.round(np.clip(np.exp(rng.normal(5.05, 0.9, n)), 29.99, 3345.93), 2)
    both = rng.random(n) < 0.1
    mens = np.where(both, 1, (rng.random(n) < 0.5).astype(int))
    womens = np.where(both, 1, 1 - mens)
    zip_code = rng.choice(["Urban", "Surburban", "Rural"], n, p=[0.401, 0.449, 0.15])
    newbie = (rng.random(n) < 0.5).astype(int)
    channel = rng.choice(["Phone", "Web", "Multichannel"], n, p=[0.438, 0.44, 0.122])
    segment = rng.choice(["Mens E-Mail", "Womens E-Mail", "No E-Mail"], n)
    bounds = np.array([b for b, _ in HISTORY_SEGMENTS])
    history_segment = np.array([label for _, label in HISTORY_SEGMENTS])[np.searchsorted(bounds, history)]

    taste = rng.normal(0, 0.6, n)  # unobserved
    lh = np.log(history) - 5.0
    web, multi = channel == "Web", channel == "Multichannel"
    base = (
        -2.4
        - 0.06 * (recency - 6)
        + 0.2 * lh
        + 0.15 * womens
        - 0.15 * newbie
        + 0.3 * multi
        + 0.1 * web
        - 0.1 * (zip_code == "Rural")
        + taste
    )
    # The effect mixes smooth terms with steps and interactions (recent buyers, the $350+ history
    # segments, web shoppers who are not new, rural phone shoppers), so neither a logistic model
    # (linear in the logit) nor trees (steps) has the true shape built in.
    common = (
        0.25
        - 0.015 * (recency - 6)
        + 0.15 * (recency <= 3)
        - 0.1 * (recency >= 10)
        + 0.04 * lh
        + 0.12 * (history >= 350)
        + 0.15 * (web & (newbie == 0))
        - 0.15 * ((zip_code == "Rural") & (channel == "Phone"))
        + 0.1 * taste
    )
    effect_mens = common + 0.1 + 0.35 * mens - 0.15 * womens + 0.05 * newbie
    effect_womens = common + 0.25 * womens - 0.15 * mens - 0.05 * newbie
    # conversion given a visit: the mail lifts it a little, hardly differently across shoppers
    buy = -3.15 + 0.3 * lh - 0.04 * (recency - 6) + 0.2 * multi + 0.4 * taste
    buy_mens = buy + 0.1 + 0.15 * mens - 0.05 * newbie + 0.1 * (history >= 500)
    buy_womens = buy - 0.05 + 0.1 * womens + 0.1 * (history >= 500) - 0.1 * (recency >= 9)
    p0 = _sigmoid(base)
    p_mens, p_womens = _sigmoid(base + effect_mens), _sigmoid(base + effect_womens)
    mens_mail, womens_mail = segment == "Mens E-Mail", segment == "Womens E-Mail"
    p = np.select([mens_mail, womens_mail], [p_mens, p_womens], p0)
    q0, q_mens, q_womens = _sigmoid(buy), _sigmoid(buy_mens), _sigmoid(buy_womens)
    q = np.select([mens_mail, womens_mail], [q_mens, q_womens], q0)
    visit = (rng.random(n) < p).astype(int)
    conversion = visit * (rng.random(n) < q).astype(int)
    spend = np.round(conversion * np.clip(np.exp(rng.normal(4.5 + 0.1 * lh, 0.6, n)), 29.99, 499.0), 2)
    data = pd.DataFrame(
        {
            "recency": recency,
            "history_segment": history_segment,
            "history": history,
            "mens": mens,
            "womens": womens,
            "zip_code": zip_code,
            "newbie": newbie,
            "channel": channel,
            "segment": segment,
            "visit": visit,
            "conversion": conversion,
            "spend": spend,
        }
    )
    truth = pd.DataFrame(
        {
            "p_control": p0,
            "p_mens": p_mens,
            "p_womens": p_womens,
            "conversion_control": p0 * q0,
            "conversion_mens": p_mens * q_mens,
            "conversion_womens": p_womens * q_womens,
        }
    )
    return data, truth


def coupon_marketplace(n: int = 20_000, seed: int = 0) -> dict:
    """Shoppers, three coupon types and the true effect of each coupon on each shopper.

    Returns a dict with `features` (DataFrame), `coupons` (DataFrame: coupon_id, face_value,
    min_spend), `truth` (long DataFrame: shopper, coupon_id, p_control, p_treated, spend_control,
    spend_treated, p_redeem, and the simulator's own reach and basket; spend is expected CNY,
    unconditional on buying; p_redeem = P(buys and uses the coupon)) and `margin` (gross margin rate).
    A coupon works only through orders that can be topped up to its minimum spend (`reach`), and
    every such order redeems it, whether or not the shopper would have bought anyway.
    Price-sensitive, lapsing shoppers respond to coupons; loyal heavy buyers buy anyway, so a
    response model (target likely buyers) wastes budget on them.
    """
    rng = np.random.default_rng(seed)
    activity = rng.gamma(2.0, 1.0, n)
    price_sensitivity = rng.beta(2, 2, n)
    days_since = rng.exponential(30, n)
    basket = np.exp(rng.normal(5.3, 0.4, n))  # typical order value, CNY
    region = rng.choice(["east", "south", "north", "west"], n)
    features = pd.DataFrame(
        {
            "activity": activity + rng.normal(0, 0.3, n),
            "price_sensitivity": price_sensitivity + rng.normal(0, 0.1, n),
            "days_since_last_order": days_since,
            "avg_order_value": basket * np.exp(rng.normal(0, 0.1, n)),
            "region": region,
        }
    )
    coupons = pd.DataFrame(
        {
            "coupon_id": ["c10", "c30", "c60"],
            "face_value": [10.0, 30.0, 60.0],
            "min_spend": [99.0, 199.0, 299.0],
        }
    )
    base = -2.6 + 0.5 * np.log(activity) - 0.01 * days_since + 0.4 * (region == "east")
    p_control = _sigmoid(base)
    rows = []
    for coupon in coupons.itertuples():
        # share of the shopper's orders that can be topped up to the minimum spend and use the coupon
        reach = _sigmoid((basket - 0.7 * coupon.min_spend) / (0.1 * coupon.min_spend))
        strength = coupon.face_value / coupon.min_spend * 6
        lift = reach * strength * (2.2 * price_sensitivity - 0.6) * (1 + 0.01 * np.minimum(days_since, 90))
        p_treated = _sigmoid(base + lift)
        order_value = reach * np.maximum(basket, coupon.min_spend) + (1 - reach) * basket
        rows.append(
            pd.DataFrame(
                {
                    "shopper": np.arange(n),
                    "coupon_id": coupon.coupon_id,
                    "p_control": p_control,
                    "p_treated": p_treated,
                    "spend_control": p_control * basket,
                    "spend_treated": p_treated * order_value,
                    "p_redeem": p_treated * reach,
                    "reach": reach,
                    "basket": basket,
                }
            )
        )
    return {
        "features": features,
        "coupons": coupons,
        "truth": pd.concat(rows, ignore_index=True),
        "margin": 0.3,
    }


def draw_campaign(market: dict, control_share: float = 0.25, seed: int = 0) -> pd.DataFrame:
    """One randomised past campaign over every shopper: arm (`control` or a coupon id), converted, spend,
    redeemed (bought and used the coupon, topping the order up to its minimum spend)."""
    rng = np.random.default_rng(seed)
    n = len(market["features"])
    coupon_ids = market["coupons"]["coupon_id"].to_numpy()
    shares = np.r_[control_share, np.full(len(coupon_ids), (1 - control_share) / len(coupon_ids))]
    arm = rng.choice(np.r_[["control"], coupon_ids], n, p=shares)
    return draw_outcomes(market, np.arange(n), arm, rng)


def draw_outcomes(market: dict, shoppers, arm, rng: np.random.Generator) -> pd.DataFrame:
    """Outcomes of giving each listed shopper their arm (a coupon id or `control`), from the truth."""
    shoppers, arm = np.asarray(shoppers), np.asarray(arm, dtype=object)
    n = len(shoppers)
    truth = market["truth"]
    coupon_ids = market["coupons"]["coupon_id"].to_numpy()
    first = truth[truth["coupon_id"] == coupon_ids[0]].set_index("shopper").loc[shoppers]
    p = first["p_control"].to_numpy().copy()
    basket = first["basket"].to_numpy()
    reach = np.zeros(n)
    min_spend = np.zeros(n)
    for coupon in market["coupons"].itertuples():
        sel = arm == coupon.coupon_id
        if not sel.any():
            continue
        arm_truth = truth[truth["coupon_id"] == coupon.coupon_id].set_index("shopper").loc[shoppers[sel]]
        p[sel] = arm_truth["p_treated"].to_numpy()
        reach[sel] = arm_truth["reach"].to_numpy()
        min_spend[sel] = coupon.min_spend
    converted = rng.random(n) < p
    redeemed = converted & (rng.random(n) < reach)
    value = np.where(redeemed, np.maximum(basket, min_spend), basket)
    spend = np.where(converted, value * rng.lognormal(-(SPEND_NOISE**2) / 2, SPEND_NOISE, n), 0.0)
    return pd.DataFrame(
        {
            "shopper": shoppers,
            "arm": arm,
            "converted": converted.astype(int),
            "spend": spend,
            "redeemed": redeemed.astype(int),
        }
    )
