"""A plan's incremental profit estimated from the stored randomised history, beside the model's forecast.

The model that chose the plan also predicts what it earns, and it is optimistic where it is wrong
(the planner picks where it looks best). Past campaigns that drew arms at random with logged
probabilities (`CampaignMember.arm_probabilities`: a random holdout, randomised coupons) estimate it
without the model: inverse propensity (IPS) and doubly robust (DR, the model as the outcome model)
policy values from `marketing.policy_value.policy_value`, each with a normal interval.

Rows. Coupons never run cannot be matched by id, so an arm is its coupon's terms (kind, value, cap,
minimum spend, scope): the same terms are assumed to have the same effect. For each shopper the plan
gives a coupon, the latest completed campaign in which both those terms and the holdout had a positive
logged probability gives one row (one per shopper: rows are then independent, as the interval
assumes): the arm drawn there, its probability (summed over that campaign's coupons with the same
terms) and the shopper's profit there, margin x gross revenue - discount (as `marketing.measurement`
counts it). Rows without logged probabilities (audiences stored before they were logged, or set by
hand) are left out and counted; so are rows where the plan's terms or the holdout were impossible.

Estimate. Per group of the plan's treated shoppers with the same terms: the mean row term times the
group's size (the shoppers with a row stand for the group: true when history reached shoppers at
random, as the past campaigns' participation did); groups add, and so do their variances. A group
with fewer than `min_rows` rows is not estimated: its coupons are named, and the model's forecast is
compared over the estimated groups only. The model gives no interval of its own, so it disagrees
when its forecast lies outside the DR interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.campaigns import CONTROL, Campaign, CampaignMember
from commerce.coupons import Coupon
from commerce.services.campaigns import campaign_outcomes
from marketing.audience import ID_CHUNK
from marketing.policy_value import policy_value

__all__ = ["PlanValue", "estimate_plan_value", "logged_rows", "plan_policy_value"]

MIN_ROWS = 20  # logged rows per coupon-terms group before its normal interval means anything
TARGET, OTHER = "target", "other"  # a logged row's arm: the plan's terms, the holdout (CONTROL), else


@dataclass(frozen=True)
class PlanValue:
    """The `policy_value` block of a plan (CNY; intervals at `confidence`); null estimates carry `reason`."""

    confidence: float
    model_profit: float  # the model's forecast of the whole plan
    model_low: float | None
    model_high: float | None
    model_profit_estimated: float | None  # the forecast of the shoppers the estimates cover
    ips: float | None
    ips_low: float | None
    ips_high: float | None
    dr: float | None
    dr_low: float | None
    dr_high: float | None
    rows_used: int
    rows_without_propensity: int
    rows_without_support: int
    treated: int
    treated_estimated: int
    coupons_without_history: list[str] = field(default_factory=list)
    disagreement: bool = False
    message: str = ""
    reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_plan_value(
    treated: pd.DataFrame,
    rows: pd.DataFrame,
    *,
    rows_without_propensity: int = 0,
    rows_without_support: int = 0,
    confidence: float = 0.95,
    min_rows: int = MIN_ROWS,
) -> PlanValue:
    """`treated`: one row per shopper the plan gives a coupon: shopper_id, coupon_id, `group` (the
    coupon's terms), `profit` (the model's predicted incremental profit) and `baseline` (its predicted
    profit without a coupon). `rows`: at most one logged row per shopper: shopper_id, `arm` ("target",
    "control" or "other"), `propensity` (of that arm), `reward` (the profit observed)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if rows["shopper_id"].duplicated().any():
        raise ValueError("one logged row per shopper: rows of one shopper are not independent")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    model_profit = float(treated["profit"].sum())
    merged = treated.merge(rows, on="shopper_id", how="left")
    ips, dr, estimated, forecast, used, missing = [], [], 0, 0.0, 0, []
    for _, group in merged.groupby("group", sort=True):
        logged = group[group["arm"].notna()]
        if len(logged) < min_rows:
            missing.extend(sorted(group["coupon_id"].unique()))
            continue
        q_base = logged["baseline"].to_numpy(float)
        q_target = q_base + logged["profit"].to_numpy(float)
        arm = logged["arm"].to_numpy(object)
        value = policy_value(
            logged["reward"].to_numpy(float), arm, logged["propensity"].to_numpy(float),
            np.full(len(logged), TARGET, dtype=object), baseline=CONTROL, q_target=q_target,
            q_baseline=q_base, q_logged=np.where(arm == TARGET, q_target, q_base), scale=len(group), z=z,
        )  # fmt: skip
        ips.append((value.ips, (value.ips_high - value.ips_low) / (2 * z)))
        dr.append((value.dr, (value.dr_high - value.dr_low) / (2 * z)))
        estimated += len(group)
        forecast += float(group["profit"].sum())
        used += len(logged)
    common = dict(
        confidence=confidence, model_profit=model_profit, model_low=None, model_high=None,
        rows_used=used, rows_without_propensity=rows_without_propensity,
        rows_without_support=rows_without_support, treated=len(treated), treated_estimated=estimated,
        coupons_without_history=missing,
    )  # fmt: skip
    if not ips:
        reason = _no_estimate_reason(treated, rows, rows_without_propensity, rows_without_support, min_rows)
        return PlanValue(
            **common, model_profit_estimated=None, ips=None, ips_low=None, ips_high=None, dr=None,
            dr_low=None, dr_high=None, message=f"No policy value: {reason}", reason=reason,
        )  # fmt: skip
    (ips_v, ips_lo, ips_hi), (dr_v, dr_lo, dr_hi) = _total(ips, z), _total(dr, z)
    outside = not dr_lo <= forecast <= dr_hi  # the model has no interval: a point outside is disjoint
    part = (
        ""
        if not missing
        else (
            f" for the {estimated} of {len(treated)} treated shoppers whose coupon terms ran at random before"
        )
    )
    if outside:
        message = (
            f"The model forecasts {forecast:,.0f} CNY{part}, outside the doubly robust interval "
            f"{dr_lo:,.0f} to {dr_hi:,.0f} CNY from {used} logged randomised rows: the past campaigns "
            "disagree with the model; check it before launching."
        )
    else:
        message = (
            f"The model's forecast of {forecast:,.0f} CNY{part} lies within the doubly robust interval "
            f"{dr_lo:,.0f} to {dr_hi:,.0f} CNY from {used} logged randomised rows."
        )
    return PlanValue(
        **common, model_profit_estimated=forecast, ips=ips_v, ips_low=ips_lo, ips_high=ips_hi, dr=dr_v,
        dr_low=dr_lo, dr_high=dr_hi, disagreement=outside, message=message,
    )  # fmt: skip


def _total(parts: list[tuple[float, float]], z: float) -> tuple[float, float, float]:
    """Sum of independent groups' estimates with the normal interval of the summed variance."""
    total = float(sum(v for v, _ in parts))
    se = float(np.sqrt(sum(s**2 for _, s in parts)))
    return total, total - z * se, total + z * se


def _no_estimate_reason(treated, rows, without_propensity, without_support, min_rows) -> str:
    if treated.empty:
        return "the plan gives nobody a coupon"
    if rows.empty and without_propensity == 0 and without_support == 0:
        return "no completed campaign reached the plan's shoppers: there is no randomised history"
    return (
        f"too little randomised history for any of the plan's coupon terms (fewer than {min_rows} "
        f"usable rows per coupon; {len(rows)} usable, {without_propensity} without logged "
        f"probabilities, {without_support} where the plan's terms or the holdout could not be drawn)"
    )


def _terms_keys(session: Session, campaign_ids) -> dict[str, str]:
    """coupon_id -> its terms as a key: coupons with equal keys are assumed to act alike."""
    coupons = session.scalars(select(Coupon).where(Coupon.campaign_id.in_(list(campaign_ids))))
    return {
        c.coupon_id: "|".join(
            (
                c.kind,
                f"{float(c.value):g}",
                "" if c.cap is None else f"{float(c.cap):g}",
                f"{float(c.min_spend):g}",
                c.scope_type,
                c.scope_id or "",
            )
        )  # fmt: skip
        for c in coupons
    }


def logged_rows(
    session: Session, campaign_id: str, targets: dict[str, str], margin_rate: float
) -> tuple[pd.DataFrame, int, int]:
    """The randomised history of `targets` (shopper_id -> the plan's coupon id, of draft
    `campaign_id`): one row per shopper (see the module docstring), the number of rows left out for
    lacking logged probabilities and the number left out for lacking support."""
    keys = _terms_keys(session, [campaign_id])
    target_key = {s: keys[c] for s, c in targets.items()}
    shoppers = sorted(targets)
    found = []
    for start in range(0, len(shoppers), ID_CHUNK):
        query = (
            select(
                CampaignMember.campaign_id,
                CampaignMember.shopper_id,
                CampaignMember.arm,
                CampaignMember.arm_probabilities,
                Campaign.starts_at,
            )  # fmt: skip
            .join(Campaign, Campaign.campaign_id == CampaignMember.campaign_id)
            .where(
                Campaign.status == "completed",
                Campaign.campaign_id != campaign_id,
                CampaignMember.shopper_id.in_(shoppers[start : start + ID_CHUNK]),
            )
        )
        found.extend(session.execute(query).all())
    empty = pd.DataFrame(columns=["shopper_id", "arm", "propensity", "reward"])
    without_propensity = sum(1 for r in found if r.arm_probabilities is None)
    found = [r for r in found if r.arm_probabilities is not None]
    keys.update(_terms_keys(session, {r.campaign_id for r in found}))
    best: dict[str, tuple] = {}
    unsupported = 0
    for r in found:
        probs, want = r.arm_probabilities, target_key[r.shopper_id]
        p_target = sum(p for a, p in probs.items() if a != CONTROL and keys.get(a) == want)
        if p_target <= 0 or probs.get(CONTROL, 0) <= 0:
            unsupported += 1
            continue
        arm = CONTROL if r.arm == CONTROL else TARGET if keys.get(r.arm) == want else OTHER
        p = probs.get(CONTROL) if arm == CONTROL else p_target if arm == TARGET else probs[r.arm]
        if r.shopper_id not in best or (r.starts_at, r.campaign_id) > best[r.shopper_id][:2]:
            best[r.shopper_id] = (r.starts_at, r.campaign_id, arm, p)
    if not best:
        return empty, without_propensity, unsupported
    margin = float(margin_rate)
    reward: dict[tuple[str, str], float] = {}
    for cid in sorted({b[1] for b in best.values()}):
        for o in campaign_outcomes(session, cid):
            reward[(cid, o["shopper_id"])] = margin * float(o["revenue"]) - float(o["discount"])
    rows = pd.DataFrame(
        [(s, arm, p, reward[(cid, s)]) for s, (_, cid, arm, p) in sorted(best.items())],
        columns=["shopper_id", "arm", "propensity", "reward"],
    )
    return rows, without_propensity, unsupported


def plan_policy_value(
    session: Session,
    campaign_id: str,
    assignments: pd.DataFrame,
    margin_rate: float,
    *,
    confidence: float = 0.95,
    min_rows: int = MIN_ROWS,
) -> PlanValue:
    """The `policy_value` block of a plan of draft `campaign_id`: `assignments` are the planner's
    (shopper_id, coupon_id, arm, profit, spend_control per audience member; arm `control` = holdout)."""
    treated = assignments[assignments["arm"] != CONTROL]
    keys = _terms_keys(session, [campaign_id])
    table = pd.DataFrame(
        {
            "shopper_id": treated["shopper_id"].astype(str).to_numpy(),
            "coupon_id": treated["coupon_id"].astype(str).to_numpy(),
            "group": treated["coupon_id"].astype(str).map(keys).to_numpy(),
            "profit": treated["profit"].to_numpy(float),
            "baseline": float(margin_rate) * treated["spend_control"].to_numpy(float),
        }
    )
    rows, without_propensity, unsupported = logged_rows(
        session, campaign_id, dict(zip(table["shopper_id"], table["coupon_id"], strict=True)), margin_rate
    )
    return estimate_plan_value(
        table, rows, rows_without_propensity=without_propensity, rows_without_support=unsupported,
        confidence=confidence, min_rows=min_rows,
    )  # fmt: skip
