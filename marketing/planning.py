"""Plan a stored campaign and store its audience: the one planning path the API, the CLI and the
demo take, whether effects come from an uplift model or from the caller's own candidate table.

Only a draft campaign is planned (checked before any scoring). Effects: `model.predict_candidates`
over the candidate shoppers' pre-campaign features (`marketing.audience`), or `candidates` as given;
then `models.uplift.planner.plan_campaign` within the campaign's budget and holdout share, and the
assignments become the campaign's audience, all in one transaction. Each member logs the chance of
its arm (the holdout is drawn at random per coupon), so later plans can be valued from this one's
outcomes; the plan's own value from earlier such campaigns is `summary["policy_value"]`
(`marketing.plan_value`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from commerce.campaigns import CONTROL, Campaign
from commerce.coupons import Coupon
from commerce.db import read_only, transaction
from commerce.errors import Conflict, InvalidState
from commerce.services._util import locked_or_404, lookup_name
from commerce.services.campaigns import check_measurable, get_campaign, set_audience
from features.campaign_features import encode_features
from marketing.audience import audience_features, coupon_terms
from marketing.contact_policy import ContactPolicy, contact_exclusions
from marketing.plan_value import plan_policy_value
from models.uplift import planner
from models.uplift.base import CouponUpliftModel
from training.uplift import fit_terms_model, load_uplift_model

__all__ = ["plan_and_store", "effect_model", "holdout_probabilities"]


def effect_model(
    *,
    market_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    name: str | None = None,
    alias: str = "champion",
    seed: int = 0,
) -> CouponUpliftModel:
    """A model fitted afresh on `market_dir` (each coupon priced by its terms), else the registered
    `name@alias` at `tracking_uri` (ModelUnavailable when there is none)."""
    if market_dir is not None:
        return fit_terms_model(market_dir, seed=seed)
    if tracking_uri is None or name is None:
        raise ValueError("give a marketplace directory or the registry's tracking URI and model name")
    return load_uplift_model(tracking_uri, name, alias)


def plan_and_store(
    session_factory: sessionmaker[Session],
    campaign_id: str,
    *,
    model: CouponUpliftModel | None = None,
    candidates: pd.DataFrame | None = None,
    events_path: str | Path | None = None,
    region: str | None = None,
    segment: str | None = None,
    margin_rate: float | Decimal = 0.3,
    method: str = "lagrangian",
    random_state: int | None = 0,
    contact_policy: ContactPolicy | None = ContactPolicy(),  # noqa: B008 (frozen, immutable)
    on_stored: Callable[[Session, dict], None] | None = None,
) -> planner.CampaignPlan:
    """Plan draft `campaign_id` with `model` (scoring the database's shoppers, optionally of one
    `region` / `segment`, features from the events table or the Parquet at `events_path`) or with
    `candidates` (the planner's columns, see `models.uplift.planner`), and store the audience.

    Shoppers the `contact_policy` rules out (`marketing.contact_policy`: a live coupon of an
    overlapping campaign, the frequency cap) are not candidates; `summary["excluded"]` counts them
    per rule. `contact_policy=None` contacts anyone. `summary["policy_value"]` is the plan's
    `marketing.plan_value.PlanValue` as a dict: the forecast beside IPS and DR estimates from the
    stored randomised history. `on_stored(session, detail)` runs in the storing transaction with what was
    stored (source, audience size, region, segment, method): the API and the CLI write their audit entry
    there."""
    if (model is None) == (candidates is None):
        raise ValueError("plan with either an effect model or a candidates table, not both or neither")
    if candidates is not None:
        planner.check_candidate_columns(candidates)
    # Read, then optimise outside any transaction, then store: one transaction from the first read to the
    # audience held SQLite's write lock through the whole optimisation (every checkout waited for it),
    # and on PostgreSQL an optimisation longer than the API's idle-in-transaction timeout had the server
    # end the connection (the plan failed as an outage). `set_audience` locks the campaign and checks it
    # is still a draft of these coupons when storing, `_check_unchanged` that the plan's inputs are still
    # the campaign's; scheduling applies the contact policy again.
    with read_only(session_factory) as session:
        campaign = get_campaign(session, campaign_id)
        if campaign.status != "draft":  # set_audience would refuse too, after all the work
            raise InvalidState(f"campaign {campaign_id!r} is {campaign.status}; only a draft can be planned")
        campaign_id = campaign.campaign_id  # as stored, not a look-alike the caller typed
        terms = coupon_terms(session, campaign_id)
        planned_from = _inputs(campaign, terms)
        table = None
        if model is not None:
            table = audience_features(
                session, campaign, region=region, segment=segment, events_path=events_path
            )
        excluded = {} if contact_policy is None else contact_exclusions(session, campaign, contact_policy)
    cost_safety = 1.0
    if model is not None:
        X = encode_features(table, list(model.feature_names_in_))
        candidates = model.predict_candidates(X, table.index.to_numpy(), terms)
        cost_safety = model.cost_factor_
    else:  # a coupon named in a look-alike form (`ＳＡＶＥ１０`) is the campaign's `SAVE10`
        candidates = candidates.assign(coupon_id=candidates["coupon_id"].map(lookup_name))
    blocked = set().union(*excluded.values()) if excluded else set()
    candidates = candidates[~candidates["shopper_id"].isin(blocked)]
    if candidates.empty:
        raise ValueError(
            "Every shopper in this audience was contacted too recently (contact policy): "
            "nobody is left to plan for."
        )
    plan = planner.plan_campaign(
        candidates,
        terms,
        campaign.budget,
        margin_rate=margin_rate,
        control_share=float(campaign.control_share),
        method=method,
        random_state=random_state,
        cost_safety=cost_safety,
    )
    check_measurable(campaign, plan.assignments["arm"].value_counts().to_dict())  # as scheduling will
    plan.summary["excluded"] = {rule: len(ids) for rule, ids in excluded.items()}
    with read_only(session_factory) as session:
        plan.summary["policy_value"] = plan_policy_value(
            session, campaign_id, plan.assignments, float(margin_rate)
        ).to_dict()
    with transaction(session_factory) as session:
        _check_unchanged(session, campaign_id, planned_from)
        set_audience(
            session,
            campaign_id,
            list(zip(plan.assignments["shopper_id"], plan.assignments["arm"], strict=True)),
            arm_probabilities=holdout_probabilities(plan.assignments),
        )
        if on_stored is not None:
            on_stored(session, {
                "source": "model" if model is not None else "candidates",
                "audience_size": len(plan.assignments),
                "region": region, "segment": segment, "method": method,
            })  # fmt: skip
    return plan


def _inputs(campaign: Campaign, terms: pd.DataFrame) -> tuple:
    """What a plan is computed from: the budget and holdout share it spends, the window the contact
    policy excluded by, and the coupons' terms (as text, so a missing cap compares equal to itself)."""
    return (
        campaign.budget,
        campaign.control_share,
        campaign.starts_at,
        campaign.ends_at,
        tuple(map(tuple, terms.astype(str).to_numpy())),
    )


def _check_unchanged(session: Session, campaign_id: str, planned_from: tuple) -> None:
    """Refuse (409 `campaign_changed`) to store a plan computed from inputs the campaign no longer has:
    a budget set, or a coupon edited, while the plan was computed (outside any transaction). The
    campaign's coupons, then the campaign, stay locked to the end of the storing transaction (the order
    launching and redemption lock in), so no such edit lands between this check and the audience."""
    session.scalars(
        select(Coupon.coupon_id)
        .where(Coupon.campaign_id == campaign_id)
        .order_by(Coupon.coupon_id)
        .with_for_update(of=Coupon)
    ).all()
    campaign = locked_or_404(session, Campaign, campaign_id, "campaign")
    if _inputs(campaign, coupon_terms(session, campaign_id)) != planned_from:
        raise Conflict(
            f"campaign {campaign_id!r} changed while it was planned (budget, holdout share, window or "
            "coupon terms): plan again",
            code="campaign_changed",
        )


def holdout_probabilities(assignments: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Each member's chance of its planned coupon and of the holdout: the planner holds out a fixed
    number of each coupon's audience drawn at random, so the chance is that coupon's holdout share."""
    held = assignments["arm"].eq(CONTROL).groupby(assignments["coupon_id"]).mean()
    out = {}
    for shopper, coupon in zip(assignments["shopper_id"], assignments["coupon_id"], strict=True):
        p = float(held[coupon])
        out[shopper] = {k: v for k, v in ((str(coupon), 1 - p), (CONTROL, p)) if v > 0}
    return out
