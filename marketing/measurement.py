"""Measurement of a finished campaign: treated shoppers against the random holdout of the same audience.

Because the holdout was drawn at random from the targeted audience, the difference between the groups
estimates the campaign's causal effect on the treated audience. Reported with 95% intervals:

- incremental conversion rate: Newcombe's hybrid score interval for a difference of two proportions
  (well behaved at low rates and small groups, unlike the plain Wald interval);
- incremental revenue per treated shopper and in total: Welch's unequal-variance t interval;
- ROI = (margin x incremental revenue - coupon cost) / coupon cost, by the delta method with the
  treated group's revenue-cost covariance (cost is itself random: who redeems is not known ahead).

Revenue is gross merchandise value before the coupon discount; cost is the discount given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from commerce.campaigns import CONTROL
from commerce.services.campaigns import campaign_outcomes
from models.uplift.simulate import coupon_marketplace, draw_outcomes

__all__ = ["CampaignMeasurement", "measure_campaign", "measure_stored_campaign", "coverage_study"]


@dataclass(frozen=True)
class CampaignMeasurement:
    n_treated: int
    n_holdout: int
    conversion_rate_treated: float
    conversion_rate_holdout: float
    incremental_conversion_rate: float
    incremental_conversion_rate_ci: tuple[float, float]
    incremental_conversions: float
    incremental_revenue_per_shopper: float
    incremental_revenue_per_shopper_ci: tuple[float, float]
    incremental_revenue: float
    incremental_revenue_ci: tuple[float, float]
    cost: float
    roi: float
    roi_ci: tuple[float, float]
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def _array(values, name: str) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=float)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has missing or infinite values")
    return arr


def measure_campaign(
    treated_converted,
    treated_revenue,
    treated_cost,
    holdout_converted,
    holdout_revenue,
    margin_rate: float | Decimal,
    confidence: float = 0.95,
) -> CampaignMeasurement:
    """Per-shopper arrays in, effect estimates with `confidence` intervals out.

    `treated_cost` is each treated shopper's coupon discount (0 when not redeemed); money may be Decimal.
    """
    conv_t, conv_h = (
        _array(treated_converted, "treated_converted"),
        _array(holdout_converted, "holdout_converted"),
    )
    rev_t, rev_h = _array(treated_revenue, "treated_revenue"), _array(holdout_revenue, "holdout_revenue")
    cost_t = _array(treated_cost, "treated_cost")
    n_t, n_h = len(conv_t), len(conv_h)
    if not (len(rev_t) == len(cost_t) == n_t and len(rev_h) == n_h):
        raise ValueError("each group's converted, revenue (and cost) arrays must have one value per shopper")
    if n_t < 2 or n_h < 2:
        raise ValueError(f"need at least 2 treated and 2 holdout shoppers, got {n_t} and {n_h}")
    if not (np.isin(conv_t, [0, 1]).all() and np.isin(conv_h, [0, 1]).all()):
        raise ValueError("converted must be 0/1")
    if (cost_t < 0).any() or (rev_t < 0).any() or (rev_h < 0).any():
        raise ValueError("revenue and cost must be non-negative")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    margin = float(margin_rate)
    if not 0 < margin <= 1:
        raise ValueError(f"margin_rate must be in (0, 1], got {margin}")
    alpha = 1 - confidence
    z = stats.norm.ppf(1 - alpha / 2)

    diff_conv = conv_t.mean() - conv_h.mean()
    lo, hi = confint_proportions_2indep(
        int(conv_t.sum()), n_t, int(conv_h.sum()), n_h, method="newcomb", compare="diff", alpha=alpha
    )

    diff_rev = rev_t.mean() - rev_h.mean()
    var_t, var_h = rev_t.var(ddof=1) / n_t, rev_h.var(ddof=1) / n_h
    se_rev = np.sqrt(var_t + var_h)
    # Welch-Satterthwaite degrees of freedom
    dof = (var_t + var_h) ** 2 / (var_t**2 / (n_t - 1) + var_h**2 / (n_h - 1)) if se_rev > 0 else np.inf
    t_crit = stats.t.ppf(1 - alpha / 2, dof)
    rev_ci = (diff_rev - t_crit * se_rev, diff_rev + t_crit * se_rev)

    cost_mean = cost_t.mean()
    if cost_mean > 0:
        roi = margin * diff_rev / cost_mean - 1
        d_rev = margin / cost_mean  # d roi / d (treated or -holdout) revenue mean
        d_cost = -margin * diff_rev / cost_mean**2
        cov_rc = np.cov(rev_t, cost_t, ddof=1)[0, 1] / n_t
        var_roi = (
            d_rev**2 * (var_t + var_h) + d_cost**2 * cost_t.var(ddof=1) / n_t + 2 * d_rev * d_cost * cov_rc
        )
        se_roi = float(np.sqrt(max(var_roi, 0.0)))
        roi_ci = (roi - z * se_roi, roi + z * se_roi)
    else:
        roi, roi_ci = float("nan"), (float("nan"), float("nan"))

    return CampaignMeasurement(
        n_treated=n_t,
        n_holdout=n_h,
        conversion_rate_treated=float(conv_t.mean()),
        conversion_rate_holdout=float(conv_h.mean()),
        incremental_conversion_rate=float(diff_conv),
        incremental_conversion_rate_ci=(float(lo), float(hi)),
        incremental_conversions=float(diff_conv * n_t),
        incremental_revenue_per_shopper=float(diff_rev),
        incremental_revenue_per_shopper_ci=(float(rev_ci[0]), float(rev_ci[1])),
        incremental_revenue=float(diff_rev * n_t),
        incremental_revenue_ci=(float(rev_ci[0] * n_t), float(rev_ci[1] * n_t)),
        cost=float(cost_t.sum()),
        roi=float(roi),
        roi_ci=(float(roi_ci[0]), float(roi_ci[1])),
        confidence=confidence,
    )


def measure_stored_campaign(session, campaign_id: str, margin_rate: float | Decimal) -> CampaignMeasurement:
    """`measure_campaign` on a campaign recorded in the database: its treated members versus its holdout."""
    rows = campaign_outcomes(session, campaign_id)
    treated = [r for r in rows if r["arm"] != CONTROL]
    holdout = [r for r in rows if r["arm"] == CONTROL]
    return measure_campaign(
        [r["converted"] for r in treated],
        [r["revenue"] for r in treated],
        [r["discount"] for r in treated],
        [r["converted"] for r in holdout],
        [r["revenue"] for r in holdout],
        margin_rate=margin_rate,
    )


def coverage_study(
    n_campaigns: int = 200,
    audience: int = 4000,
    control_share: float = 0.2,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Share of simulated campaigns whose intervals cover the true effect on their audience.

    Each campaign draws an audience from a simulated marketplace (models.uplift.simulate), a coupon per
    shopper, a random holdout, and outcomes from the known probabilities; the truth is the audience's
    mean expected effect, which is what treated-versus-holdout estimates.
    """
    rng = np.random.default_rng(seed)
    market = coupon_marketplace(n=max(audience * 3, 10_000), seed=seed)
    truth = market["truth"].set_index(["shopper", "coupon_id"])
    faces = market["coupons"].set_index("coupon_id")["face_value"]
    coupon_ids = market["coupons"]["coupon_id"].to_numpy()
    margin = market["margin"]
    hits = {"incremental_conversion_rate": 0, "incremental_revenue_per_shopper": 0, "roi": 0}
    widths = []
    for _ in range(n_campaigns):
        shoppers = rng.choice(len(market["features"]), audience, replace=False)
        coupons = rng.choice(coupon_ids, audience)
        rows = truth.loc[list(zip(shoppers, coupons, strict=True))]
        true_conv = float((rows["p_treated"] - rows["p_control"]).mean())
        true_rev = float((rows["spend_treated"] - rows["spend_control"]).mean())
        true_cost = float((faces.reindex(coupons).to_numpy() * rows["p_redeem"].to_numpy()).mean())
        true_roi = margin * true_rev / true_cost - 1
        holdout = rng.random(audience) < control_share
        arm = np.where(holdout, "control", coupons)
        out = draw_outcomes(market, shoppers, arm, rng)
        cost = np.where(out["redeemed"] == 1, faces.reindex(coupons).to_numpy(), 0.0)
        t = ~holdout
        m = measure_campaign(
            out["converted"][t], out["spend"][t], cost[t], out["converted"][holdout], out["spend"][holdout],
            margin, confidence,
        )  # fmt: skip
        for key, true in (
            ("incremental_conversion_rate", true_conv),
            ("incremental_revenue_per_shopper", true_rev),
            ("roi", true_roi),
        ):
            lo, hi = getattr(m, f"{key}_ci")
            hits[key] += int(lo <= true <= hi)
        widths.append(m.incremental_conversion_rate_ci[1] - m.incremental_conversion_rate_ci[0])
    return {
        "n_campaigns": n_campaigns,
        "audience": audience,
        "control_share": control_share,
        "coverage": {k: v / n_campaigns for k, v in hits.items()},
        "mean_ci_width_conversion": float(np.mean(widths)),
    }
