"""Campaign planning: who gets which coupon (at most one each) for the most incremental profit in budget.

For shopper i and coupon c, from predicted (or true) conversion probabilities and expected spend:

    incremental revenue  = spend_treated - spend_control
    basket               = lognormal around `basket_mean` (the expected gross order value under the
                           coupon) when the candidates carry it, else spend_treated / p_treated, with
                           log-scale spread `basket_sigma` (0 when the candidates carry none: a point
                           basket)
    discount             = face value (amount_off), or min(cap, rate x basket) (percent_off), on
                           baskets that reach the minimum spend
    expected cost        = p_treated x E[discount x 1{basket >= min spend}], counting every buyer who
                           redeems, including those who would have bought anyway; with a `p_redeem`
                           column (learned from past redemptions): p_redeem x the expected discount;
                           with a `redeem_rate` column (the share of eligible buyers who use the
                           coupon): that rate x the above
    incremental profit   = margin x incremental revenue - expected cost

Choosing one option per shopper under a budget is a multiple-choice knapsack. The Lagrangian method
prices budget at lambda, lets each shopper take the option with the best profit - lambda x cost, and
bisects lambda until the plan fits; the budget left is then filled greedily by profit per cost. A
random holdout (control share) of the chosen audience, drawn per coupon, gets nothing, so the result
can be measured afterwards; the audience is planned at budget / (1 - control share) so the treated
part spends the budget in expectation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pandas as pd

__all__ = [
    "CampaignPlan",
    "basket_terms",
    "coupon_terms",
    "score_options",
    "plan_campaign",
    "response_plan",
    "evaluate_assignment",
]

CANDIDATE_COLUMNS = ("shopper_id", "coupon_id", "p_control", "p_treated", "spend_control", "spend_treated")
COUPON_COLUMNS = ("coupon_id", "face_value", "min_spend")  # optional: kind (default amount_off), cap
COUPON_KINDS = ("amount_off", "percent_off")
BASKET_QUANTILES = 64


@dataclass
class CampaignPlan:
    """`assignments`: one row per audience member (arm = coupon id or `control`) with expected figures;
    `summary`: expected totals for the treated part; `curve`: profit versus audience size."""

    assignments: pd.DataFrame
    summary: dict = field(default_factory=dict)
    curve: pd.DataFrame = field(default_factory=pd.DataFrame)


def check_candidate_columns(candidates: pd.DataFrame) -> None:
    """Refuse a candidates table (a user's `--candidates` CSV too) without the planner's columns, naming
    them all: read further, it failed on the first one it lacked (a bare `KeyError: 'coupon_id'`)."""
    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing:
        raise ValueError(f"candidates lack columns {missing}; they need {', '.join(CANDIDATE_COLUMNS)}")


def _validate(candidates: pd.DataFrame, coupons: pd.DataFrame) -> None:
    check_candidate_columns(candidates)
    missing = [c for c in COUPON_COLUMNS if c not in coupons.columns]
    if missing:
        raise ValueError(f"coupons lack columns {missing}")
    kinds = coupons["kind"] if "kind" in coupons.columns else pd.Series("amount_off", index=coupons.index)
    if bad := sorted(set(kinds) - set(COUPON_KINDS)):
        raise ValueError(f"coupon kinds must be {COUPON_KINDS}, got {bad}")
    rates = coupons.loc[kinds == "percent_off", "face_value"].map(float)
    if ((rates <= 0) | (rates > 1)).any():
        raise ValueError("a percent_off coupon's face_value is a fraction in (0, 1] (0.15 = 15% off)")
    unknown = set(candidates["coupon_id"]) - set(coupons["coupon_id"])
    if unknown:
        raise ValueError(f"candidates name unknown coupons {sorted(unknown)[:5]}")
    probs = candidates[["p_control", "p_treated"]].to_numpy(dtype=float)
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("p_control and p_treated must be probabilities in [0, 1]")
    if candidates.duplicated(["shopper_id", "coupon_id"]).any():
        raise ValueError("candidates hold duplicate (shopper_id, coupon_id) rows")


def basket_terms(order_value: np.ndarray, sigma: np.ndarray, opts: pd.DataFrame):
    """(P(basket >= min spend), E[discount x 1{basket >= min spend}]) per option, for a lognormal
    basket with mean `order_value` and log-scale spread `sigma`, over 64 fixed quantiles; sigma 0 is
    the point rule: min(cap, rate x expected basket), and redeemed iff that basket reaches min spend."""
    from scipy.special import ndtri

    z = ndtri((np.arange(BASKET_QUANTILES) + 0.5) / BASKET_QUANTILES)
    basket = order_value[:, None] * np.exp(sigma[:, None] * z[None, :] - sigma[:, None] ** 2 / 2)
    reaches = basket >= opts["min_spend"].to_numpy()[:, None]
    face = opts["face_value"].to_numpy()[:, None]
    percent = np.fmin(opts["cap"].to_numpy()[:, None], face * basket)  # fmin: a NaN cap is no cap
    per_basket = np.where(opts["kind"].to_numpy()[:, None] == "percent_off", percent, face)
    return reaches.mean(axis=1), np.where(reaches, per_basket, 0.0).mean(axis=1)


def coupon_terms(coupons: pd.DataFrame) -> pd.DataFrame:
    """coupon_id, face_value, min_spend, kind, cap as floats (NaN cap = none), defaults filled in."""
    return coupons[list(COUPON_COLUMNS)].assign(
        face_value=lambda d: d["face_value"].map(float),
        min_spend=lambda d: d["min_spend"].map(float),
        kind=coupons["kind"] if "kind" in coupons.columns else "amount_off",
        cap=(coupons["cap"] if "cap" in coupons.columns else pd.Series(np.nan, index=coupons.index))
        .map(lambda v: np.nan if pd.isna(v) else float(v))
        .astype(float),
    )


def score_options(
    candidates: pd.DataFrame, coupons: pd.DataFrame, margin_rate: float | Decimal
) -> pd.DataFrame:
    """Candidates with expected incremental conversions, revenue, cost and profit per option."""
    _validate(candidates, coupons)
    margin = float(margin_rate)
    if not 0 < margin <= 1:
        raise ValueError(f"margin_rate must be in (0, 1], got {margin}")
    opts = candidates.merge(coupon_terms(coupons), on="coupon_id", how="left")
    p_t = opts["p_treated"].to_numpy(dtype=float)
    if "basket_mean" in opts.columns:  # the gross basket, known apart from net spend
        order_value = opts["basket_mean"].to_numpy(dtype=float)
        if not np.isfinite(order_value).all() or (order_value < 0).any():
            raise ValueError("basket_mean must be finite and non-negative")
    else:
        order_value = np.divide(
            opts["spend_treated"].to_numpy(dtype=float), p_t, out=np.zeros(len(opts)), where=p_t > 0
        )
    sigma = (
        opts["basket_sigma"].to_numpy(dtype=float) if "basket_sigma" in opts.columns else np.zeros(len(opts))
    )
    if not np.isfinite(sigma).all() or (sigma < 0).any():
        raise ValueError("basket_sigma must be finite and non-negative")
    share, discount = basket_terms(order_value, sigma, opts)
    # the expected discount of one redemption (face value when no basket reaches the minimum spend)
    opts["discount"] = np.divide(discount, share, out=opts["face_value"].to_numpy().copy(), where=share > 0)
    if "p_redeem" in opts.columns and "redeem_rate" in opts.columns:
        raise ValueError("give either p_redeem or redeem_rate, not both")
    if "p_redeem" in opts.columns:
        p_redeem = opts["p_redeem"].to_numpy(dtype=float)
        if not np.isfinite(p_redeem).all() or (p_redeem < 0).any() or (p_redeem > p_t + 1e-9).any():
            raise ValueError("p_redeem must be a probability no larger than p_treated")
    elif "redeem_rate" in opts.columns:  # P(redeem | bought, basket reaches the minimum spend)
        rate = opts["redeem_rate"].to_numpy(dtype=float)
        if not np.isfinite(rate).all() or (rate < 0).any() or (rate > 1).any():
            raise ValueError("redeem_rate must be a probability in [0, 1]")
        p_redeem = p_t * share * rate
    else:
        p_redeem = p_t * share
    opts["inc_conversions"] = p_t - opts["p_control"].to_numpy(dtype=float)
    opts["inc_revenue"] = opts["spend_treated"].to_numpy(dtype=float) - opts["spend_control"].to_numpy(
        dtype=float
    )
    opts["cost"] = opts["discount"].to_numpy() * p_redeem
    opts["profit"] = margin * opts["inc_revenue"] - opts["cost"]
    return opts


class _Picker:
    """Each shopper's best option at budget price `lam` (profit - lam x cost; the first listed wins a
    tie), kept only when it beats giving nothing. Options are grouped by shopper once, so the
    bisection's many prices cost a pass over arrays each, not a sort."""

    def __init__(self, opts: pd.DataFrame):
        self.opts = opts
        codes = pd.factorize(opts["shopper_id"], sort=True)[0]
        self.order = np.argsort(codes, kind="stable")
        codes = codes[self.order]
        self.starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else np.zeros(0, int)
        self.sizes = np.diff(np.r_[self.starts, len(codes)])
        self.profit = opts["profit"].to_numpy(dtype=float)[self.order]
        self.cost = opts["cost"].to_numpy(dtype=float)[self.order]

    def positions(self, lam: float) -> np.ndarray:
        if not len(self.order):
            return np.zeros(0, dtype=int)
        value = self.profit - lam * self.cost
        best = np.repeat(np.maximum.reduceat(value, self.starts), self.sizes)
        where = np.where(value == best, np.arange(len(value)), len(value))
        first = np.minimum.reduceat(where, self.starts)
        keep = (value[first] > 0) & (self.profit[first] > 0)
        return first[keep]

    def cost_at(self, lam: float) -> float:
        return float(self.cost[self.positions(lam)].sum())

    def __call__(self, lam: float) -> pd.DataFrame:
        return self.opts.iloc[self.order[self.positions(lam)]]


def _pick(opts: pd.DataFrame, lam: float) -> pd.DataFrame:
    """Each shopper's best option at budget price `lam`, kept only when it beats giving nothing."""
    return _Picker(opts)(lam)


def _lagrangian(opts: pd.DataFrame, budget: float) -> pd.DataFrame:
    pick = _Picker(opts)
    chosen = pick(0.0)
    if chosen["cost"].sum() <= budget:
        return chosen
    lo, hi = 0.0, 1.0
    while pick.cost_at(hi) > budget:  # ends: at a high enough price only free options stay
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        if pick.cost_at(mid) > budget:
            lo = mid
        else:
            hi = mid
    chosen = pick(hi)
    return _fill(opts, chosen, budget)


def _fill(opts: pd.DataFrame, chosen: pd.DataFrame, budget: float) -> pd.DataFrame:
    """Add options of not-yet-chosen shoppers by profit per cost while budget remains."""
    left = budget - chosen["cost"].sum()
    rest = opts[~opts["shopper_id"].isin(chosen["shopper_id"]) & (opts["profit"] > 0)]
    ratio = rest["profit"] / rest["cost"].where(rest["cost"] > 0, np.nan)
    rest = rest.assign(_r=ratio.fillna(np.inf)).sort_values("_r", ascending=False, kind="mergesort")
    take, seen = [], set()
    for idx, shopper, cost in zip(rest.index, rest["shopper_id"], rest["cost"], strict=True):
        if shopper in seen or cost > left:
            continue
        take.append(idx)
        seen.add(shopper)
        left -= cost
    return pd.concat([chosen, rest.loc[take].drop(columns="_r")])


def _greedy(opts: pd.DataFrame, budget: float) -> pd.DataFrame:
    return _fill(opts, opts.iloc[0:0], budget)


def _holdout(chosen: pd.DataFrame, control_share: float, rng: np.random.Generator) -> pd.DataFrame:
    """Mark a random `control_share` of each coupon's audience as holdout (arm `control`)."""
    arm = chosen["coupon_id"].astype(object).copy()
    for _, idx in chosen.groupby("coupon_id").groups.items():
        n_hold = int(round(control_share * len(idx)))
        if n_hold:
            arm.loc[rng.choice(np.asarray(idx), n_hold, replace=False)] = "control"
    return chosen.assign(arm=arm)


def _summarize(assignments: pd.DataFrame, budget: float) -> dict:
    treated = assignments[assignments["arm"] != "control"]
    cost = float(treated["cost"].sum())
    profit = float(treated["profit"].sum())
    return {
        "audience": int(len(assignments)),
        "treated": int(len(treated)),
        "holdout": int((assignments["arm"] == "control").sum()),
        "budget": budget,
        "expected_incremental_conversions": float(treated["inc_conversions"].sum()),
        "expected_incremental_revenue": float(treated["inc_revenue"].sum()),
        "expected_cost": cost,
        "expected_incremental_profit": profit,
        "expected_roi": profit / cost if cost > 0 else float("nan"),
        "coupons": treated["coupon_id"].value_counts().to_dict(),
    }


def _curve(opts: pd.DataFrame) -> pd.DataFrame:
    """Cumulative profit and cost when shoppers are added by their best option's profit per cost."""
    best = opts.sort_values(["shopper_id", "profit"], ascending=[True, False], kind="mergesort")
    best = best.drop_duplicates("shopper_id")
    ratio = best["profit"] / best["cost"].where(best["cost"] > 0, np.nan)
    best = best.assign(_r=ratio.fillna(np.inf)).sort_values("_r", ascending=False, kind="mergesort")
    return pd.DataFrame(
        {
            "audience_size": np.arange(1, len(best) + 1),
            "cumulative_profit": best["profit"].cumsum().to_numpy(),
            "cumulative_cost": best["cost"].cumsum().to_numpy(),
        }
    )


def plan_campaign(
    candidates: pd.DataFrame,
    coupons: pd.DataFrame,
    budget: float | Decimal,
    *,
    margin_rate: float | Decimal = 0.3,
    control_share: float = 0.1,
    method: str = "lagrangian",
    random_state: int | None = 0,
    cost_safety: float = 1.0,
) -> CampaignPlan:
    """Choose the audience and coupons; see the module docstring for the model of profit and cost.

    `cost_safety` (>= 1) keeps the predicted expected cost within budget / cost_safety: a margin for
    predicted costs that run low on the options picked (`CouponTermsEffectModel.cost_factor_`
    measures it on held-out past campaigns). The summary's `budget` stays the one given."""
    budget_f = float(budget)
    if budget_f <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    if not np.isfinite(cost_safety) or cost_safety < 1:
        raise ValueError(f"cost_safety must be a finite number >= 1, got {cost_safety}")
    if not 0 <= control_share < 1:
        raise ValueError(f"control_share must be in [0, 1), got {control_share}")
    if method not in ("lagrangian", "greedy"):
        raise ValueError(f"method must be 'lagrangian' or 'greedy', got {method!r}")
    opts = score_options(candidates, coupons, margin_rate)
    audience_budget = budget_f / (1 - control_share) / cost_safety
    chosen = _lagrangian(opts, audience_budget) if method == "lagrangian" else _greedy(opts, audience_budget)
    chosen = chosen.sort_values("shopper_id", kind="mergesort").reset_index(drop=True)
    assignments = _holdout(chosen, control_share, np.random.default_rng(random_state))
    return CampaignPlan(assignments, _summarize(assignments, budget_f), _curve(opts))


def response_plan(
    candidates: pd.DataFrame,
    coupons: pd.DataFrame,
    budget: float | Decimal,
    *,
    margin_rate: float | Decimal = 0.3,
) -> pd.DataFrame:
    """The usual practice the planner replaces: give shoppers most likely to buy their likeliest coupon,
    in that order, until the expected cost reaches the budget (no holdout; for comparison only)."""
    opts = score_options(candidates, coupons, margin_rate)
    best = opts.sort_values(["shopper_id", "p_treated"], ascending=[True, False], kind="mergesort")
    best = best.drop_duplicates("shopper_id").sort_values("p_treated", ascending=False, kind="mergesort")
    within = best["cost"].cumsum() <= float(budget)
    return best[within].reset_index(drop=True)


def evaluate_assignment(
    assignment: pd.DataFrame, truth: pd.DataFrame, coupons: pd.DataFrame, margin_rate: float | Decimal
) -> dict:
    """True expected figures of giving `assignment`'s (shopper_id, coupon_id) pairs, from `truth`
    candidates (same columns as the planner's input, but the real probabilities and spend)."""
    true_opts = score_options(truth, coupons, margin_rate)
    pairs = assignment[["shopper_id", "coupon_id"]]
    scored = pairs.merge(true_opts, on=["shopper_id", "coupon_id"], how="left")
    if scored["profit"].isna().any():
        raise ValueError("assignment names (shopper, coupon) pairs absent from the truth")
    return {
        "shoppers": int(len(scored)),
        "incremental_conversions": float(scored["inc_conversions"].sum()),
        "incremental_revenue": float(scored["inc_revenue"].sum()),
        "cost": float(scored["cost"].sum()),
        "incremental_profit": float(scored["profit"].sum()),
    }
