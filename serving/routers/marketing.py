"""Precision marketing (marketer, admin): campaigns create / plan / launch / complete / report, audience CSV.

Thin over `commerce.campaigns` (lifecycle, grants), `marketing.planning` (who gets which coupon) and
`marketing.measurement` (treated versus holdout), the calls `crosscart campaign` makes.
"""

from __future__ import annotations

import io
import math
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response

from commerce.campaigns import Campaign
from commerce.db import read_only
from commerce.services import campaign_overview as overview
from commerce.services import campaigns
from marketing.measurement import measure_stored_campaign
from marketing.planning import plan_and_store
from models.uplift.base import CouponUpliftModel
from serving.audit import audit
from serving.deps import CampaignId, Marketer, SessionDep, StateDep
from serving.routers.common import PageLimit, PageOffset, attachment
from serving.schemas.base import PLAIN_FLOAT, PLAIN_INSTANT, Instant, PageOut
from serving.schemas.marketing import (
    CampaignCreate,
    CampaignOut,
    CampaignReport,
    CampaignStatus,
    Channel,
    PlanIn,
    PlanOut,
    PolicyValueOut,
)
from serving.state import ServingState

router = APIRouter(prefix="/campaigns", tags=["marketing"])


def _out(c: Campaign) -> CampaignOut:
    return CampaignOut.model_validate(c, from_attributes=True)


def _finite(value):
    """JSON has no NaN or infinity: undefined figures (e.g. ROI of a zero-cost plan) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _finite(value.item())
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@router.get("", response_model=PageOut[CampaignOut])
def list_campaigns(
    session: SessionDep,
    _: Marketer,
    status: CampaignStatus | None = None,
    channel: Channel | None = None,
    active_at: Annotated[
        Instant | None, Query(description="Only campaigns running at this time."), PLAIN_INSTANT
    ] = None,
    name: Annotated[str | None, Query(max_length=200, description="Part of the name, any case.")] = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> PageOut[CampaignOut]:
    """Newest first, each with what its coupons have given away so far (`spent`, as the detail)."""
    page = overview.list_campaigns(
        session, status=status, channel=channel, active_at=active_at, name=name, limit=limit, offset=offset
    )
    return PageOut(items=[_out(c) for c in page.items], total=page.total, limit=limit, offset=offset)


@router.post("", response_model=CampaignOut, status_code=status.HTTP_201_CREATED)
def create_campaign(body: CampaignCreate, session: SessionDep, principal: Marketer) -> CampaignOut:
    """A draft campaign; give its coupons this campaign id, then plan its audience. Audited
    (`campaign.created`, with its terms), as planning, scheduling, launching and completing it are."""
    campaign = campaigns.create_campaign(session, campaigns.CampaignInput(**body.model_dump()))
    audit(session, principal, "campaign.created", "campaign", campaign.campaign_id, **body.model_dump())
    return _out(campaign)


@router.get("/{campaign_id}", response_model=CampaignOut)
def get_campaign(campaign_id: CampaignId, session: SessionDep, _: Marketer) -> CampaignOut:
    return _out(campaigns.get_campaign(session, campaign_id))


@router.post("/{campaign_id}/plan", response_model=PlanOut)
def plan_campaign(campaign_id: str, body: PlanIn, state: StateDep, principal: Marketer) -> PlanOut:
    """Choose who gets which of the campaign's coupons (at most one each) to maximise expected incremental
    profit within the budget, with a random holdout; stores the result as the draft's audience.

    Without `candidates` the database's shoppers (optionally one `region` / `segment`) are scored by the
    uplift model this replica serves, as `crosscart campaign plan` does (marketing.planning.plan_and_store);
    with `candidates`, your own effect predictions are planned against the campaign's coupon terms.
    `policy_value` sets the plan's forecast profit beside its estimate from past randomised campaigns.
    Audited (`campaign.planned`, in the transaction storing the audience): with `candidates` a marketer
    key chooses who gets the coupons, its own shopper account included."""
    with read_only(state.session_factory) as s:  # 404 before 503; no read lock left open while planning
        campaign_id = campaigns.get_campaign(s, campaign_id).campaign_id
    model, candidates = None, None
    if body.candidates is None:
        model = _served_effect_model(state)
    else:
        candidates = pd.DataFrame([c.model_dump() for c in body.candidates])
        if candidates["p_redeem"].isna().all():
            candidates = candidates.drop(columns="p_redeem")
    try:
        result = plan_and_store(
            state.session_factory,
            campaign_id,
            model=model,
            candidates=candidates,
            region=body.region,
            segment=body.segment,
            margin_rate=body.margin_rate,
            method=body.method,
            random_state=body.seed,
            on_stored=lambda s, detail: audit(
                s, principal, "campaign.planned", "campaign", campaign_id, **detail
            ),
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    summary = dict(result.summary)
    value = summary.pop("policy_value")
    return PlanOut(
        campaign_id=campaign_id,
        audience_size=len(result.assignments),
        summary={k: _finite(v) if not hasattr(v, "as_tuple") else str(v) for k, v in summary.items()},
        curve=[{k: _finite(v) for k, v in row.items()} for row in result.curve.to_dict("records")],
        policy_value=PolicyValueOut(**{k: _finite(v) for k, v in value.items()}),
    )


def _served_effect_model(state: ServingState) -> CouponUpliftModel:
    """The uplift model this replica serves; 503 when none is loaded: the registry is polled in the
    background, never here."""
    snapshot = state.uplift.current
    if snapshot.recommender is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"no uplift model to plan with ({snapshot.fallback_reason}); run `crosscart train uplift` "
            "or plan with candidates",
        )
    return snapshot.recommender


#: Each lifecycle move of a campaign and its audit action.
CAMPAIGN_MOVES_AUDITED = {
    "schedule": "campaign.scheduled",
    "launch": "campaign.launched",
    "complete": "campaign.completed",
}


@router.post("/{campaign_id}/{action}", response_model=CampaignOut)
def move_campaign(
    campaign_id: CampaignId,
    action: Literal["schedule", "launch", "complete"],
    session: SessionDep,
    principal: Marketer,
) -> CampaignOut:
    """schedule (draft -> scheduled), launch (scheduled -> running: grants the coupons over the
    campaign's channel), complete (running -> completed: closes the measurement window). Each is
    audited (`CAMPAIGN_MOVES_AUDITED`)."""
    move = {
        "schedule": campaigns.schedule_campaign,
        "launch": campaigns.start_campaign,
        "complete": campaigns.complete_campaign,
    }[action]
    campaign = move(session, campaign_id)
    detail = {"budget": campaign.budget} if action == "launch" else {}
    audit(session, principal, CAMPAIGN_MOVES_AUDITED[action], "campaign", campaign_id, **detail)
    return _out(campaign)


@router.get(
    "/{campaign_id}/audience.csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "shopper_id, arm, coupon_id, channel, grant_id"}
    },
)
def export_audience(campaign_id: CampaignId, session: SessionDep, _: Marketer) -> Response:
    """The audience as CSV, one row per shopper (arm = coupon id or `control`)."""
    out = io.StringIO()
    campaigns.export_audience_csv(session, campaign_id, out)
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": attachment(f"{campaign_id}-audience.csv")},
    )


@router.get(
    "/{campaign_id}/report",
    response_model=CampaignReport,
    responses={409: {"description": "the campaign is not completed yet"}},
)
def report(
    campaign_id: CampaignId,
    session: SessionDep,
    _: Marketer,
    margin_rate: Annotated[float, Query(gt=0, le=1), PLAIN_FLOAT] = 0.3,
) -> CampaignReport:
    """Treated versus holdout of a completed campaign: incremental conversion rate, revenue and ROI with
    95% confidence intervals."""
    try:
        result = measure_stored_campaign(session, campaign_id, margin_rate)
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return CampaignReport(**{k: _finite(v) for k, v in result.to_dict().items()})
