"""Marketer pages: campaign list, create (with its coupon), plan with the budget curve, launch, progress,
complete, measurement report, audience CSV.

Planning, transitions, export and the report call the API router functions of `serving.routers.marketing`
(one import: the place to re-point when campaign planning moves), coupons those of
`serving.routers.coupons`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

from cachetools import TTLCache
from fastapi import APIRouter, Form, Request

from commerce.campaigns import CAMPAIGN_STATUSES
from commerce.db import transaction
from commerce.services import campaign_overview as overview
from commerce.services import coupons as coupon_service
from commerce.sqltypes import NUMBER
from serving.console.auth import Marketing
from serving.console.charts import interval_chart, line_chart, thin
from serving.console.web import (
    NOTHING_SAVED,
    FormRoute,
    attempt,
    choices,
    past_the_end,
    redirect,
    refusal_page,
    refused_form,
    render,
)
from serving.deps import CampaignId, SessionDep, StateDep
from serving.routers import coupons as coupon_api
from serving.routers import marketing as marketing_api
from serving.routers.common import MAX_N, PageOffset
from serving.schemas.coupons import CouponCreate
from serving.schemas.marketing import CampaignCreate, PlanIn

router = APIRouter(prefix="/campaigns", route_class=FormRoute)

CHANNELS = choices("channels", ("site", "email", "social", "search_ads"))


def _utc(value: str) -> datetime:
    """A `datetime-local` field, read as UTC (the console shows every time in UTC)."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def coupon_value(kind: str, value: str) -> Decimal:
    """The form asks percent-off coupons in percent (15 = 15%); the API stores the fraction. The value
    is written as the API takes numbers (`commerce.sqltypes.NUMBER`): Decimal alone read `١٥` as 15."""
    value = value.strip()
    if not NUMBER.fullmatch(value):
        raise ValueError(f"value {value[:40]!r} is not a number in ASCII digits")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"value {value!r} is not a number") from exc
    return amount / 100 if kind == "percent_off" else amount


def scope_of(text: str) -> tuple[str, str | None]:
    kind, _, ident = (text or "platform").strip().partition(":")
    return kind, (ident or None)


@router.get("")
async def campaign_list(
    request: Request, session: SessionDep, _: Marketing, status: str | None = None, offset: PageOffset = 0
):
    def run():
        return overview.list_campaigns(session, status=status or None, limit=MAX_N, offset=offset)

    page, error = await attempt(request, None, run)
    if moved := past_the_end(request, page):
        return moved
    return await render(
        request,
        "campaigns.html",
        title="Campaigns",
        page=page,
        error=error,
        status=status,
        statuses=CAMPAIGN_STATUSES,
    )


@router.get("/new")
async def new_campaign(request: Request, _: Marketing):
    return await render(request, "campaign_new.html", title="New campaign", form={})


@router.post("/new")
async def create_campaign(
    request: Request,
    session: SessionDep,
    principal: Marketing,
    name: Annotated[str, Form()],
    channel: Annotated[str, Form()],
    budget: Annotated[str, Form()],
    control_share: Annotated[str, Form()],
    starts_at: Annotated[str, Form()],
    ends_at: Annotated[str, Form()],
    kind: Annotated[str, Form()],
    value: Annotated[str, Form()],
    cap: Annotated[str, Form()] = "",
    min_spend: Annotated[str, Form()] = "0",
    scope: Annotated[str, Form()] = "platform",
    per_shopper_limit: Annotated[str, Form()] = "1",
    usage_limit: Annotated[str, Form()] = "",
):
    """The draft campaign and its coupon (granted only to the planned audience) in one transaction."""

    def create():
        starts, ends = _utc(starts_at), _utc(ends_at)
        body = CampaignCreate(
            name=name,
            channel=channel,
            budget=budget,
            starts_at=starts,
            ends_at=ends,
            control_share=control_share,
        )
        campaign = marketing_api.create_campaign(body, session, principal)
        scope_type, scope_id = scope_of(scope)
        coupon = CouponCreate(
            name=f"{name} coupon",
            kind=kind,
            value=coupon_value(kind, value),
            cap=cap or None,
            min_spend=min_spend or "0",
            scope_type=scope_type,
            scope_id=scope_id,
            per_shopper_limit=per_shopper_limit or 1,
            usage_limit=usage_limit or None,
            starts_at=starts,
            ends_at=ends,
            requires_grant=True,
            campaign_id=campaign.campaign_id,
        )
        coupon_api.create_coupon(coupon, session, principal)
        return campaign

    campaign, error = await attempt(request, session, create)
    if error:
        form = await request.form()
        return await render(
            request, "campaign_new.html", status_code=error.status_code, title="New campaign", form=form,
            error=error,
        )  # fmt: skip
    return redirect("/console/campaigns", campaign.campaign_id)


def _detail(session, campaign_id: str, principal) -> dict:
    campaign = marketing_api.get_campaign(campaign_id, session, principal)
    coupons = coupon_service.list_coupons(session, campaign_id=campaign_id, limit=100).items
    context = {
        "campaign": campaign,
        "coupons": coupons,
        "progress": overview.progress(session, campaign_id),
        "segments": overview.top_segments(session, campaign_id),
    }
    if campaign.status == "draft":  # the plan's form offers them
        context["regions"], context["segment_choices"] = overview.audience_choices(session)
    return context


REPORT_CACHE_SECONDS = 600.0
REPORT_CACHE_ENTRIES = 256


class ReportCache:
    """Completed campaigns' measurement reports, kept for 10 minutes per app: measuring reads every
    member's purchases in the window (seconds on the demo data), and a completed campaign's window is
    closed. At most `REPORT_CACHE_ENTRIES`, least recently used out first (a process-wide dict grew by
    every campaign ever reported and served one app's report to another app on another database)."""

    def __init__(self, entries: int = REPORT_CACHE_ENTRIES, seconds: float = REPORT_CACHE_SECONDS):
        self._cache: TTLCache[str, object] = TTLCache(entries, seconds)
        self._lock = threading.Lock()  # requests read and write from the thread pool

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def report(self, session, campaign_id: str, principal):
        with self._lock:
            hit = self._cache.get(campaign_id)
        if hit is not None:
            return hit
        report = marketing_api.report(campaign_id, session, principal, 0.3)
        with self._lock:
            self._cache[campaign_id] = report
        return report


@router.get("/{campaign_id}")
async def campaign_page(request: Request, campaign_id: CampaignId, session: SessionDep, principal: Marketing):
    context, error = await attempt(request, None, lambda: _detail(session, campaign_id, principal))
    if error:
        return await refusal_page(request, "Not found", error)
    return await render(request, "campaign.html", title=context["campaign"].name, **context)


def plan_view(plan) -> dict:
    """The planner's curve as charts: expected profit and audience size against budget (cumulative cost),
    with the chosen plan marked at its expected cost (the treated part's), not at the budget: a plan stops
    short of a budget larger than its profitable audience costs, and the marker stood beyond the plan,
    stretching the axis to the budget; the forecast beside the past randomised campaigns' estimate."""
    curve = [row for row in plan.curve if row.get("cumulative_cost") is not None]
    cost = [float(r["cumulative_cost"]) for r in curve]
    profit = [float(r["cumulative_profit"]) for r in curve]
    size = [float(r["audience_size"]) for r in curve]
    cost, profit, size = thin(cost, profit, size)
    chosen = float(plan.summary["expected_cost"])
    label = f"chosen plan {chosen:,.0f}"
    return {
        "plan": plan,
        "summary": plan.summary,
        "policy_value": plan.policy_value,
        "profit_chart": line_chart(
            "curve-profit", "Expected incremental profit against budget", cost,
            [("expected incremental profit (CNY)", profit)], x_label="budget (expected coupon cost, CNY)",
            y_label="expected incremental profit", marker=chosen, marker_label=label,
        ),
        "size_chart": line_chart(
            "curve-size", "Audience size against budget", cost, [("shoppers given a coupon", size)],
            x_label="budget (expected coupon cost, CNY)", y_label="audience size", marker=chosen,
            marker_label=label,
        ),
    }  # fmt: skip


@router.post("/{campaign_id}/plan")
async def plan(
    request: Request,
    campaign_id: CampaignId,
    session: SessionDep,
    state: StateDep,
    principal: Marketing,
    budget: Annotated[str, Form()],
    region: Annotated[str, Form()] = "",
    segment: Annotated[str, Form()] = "",
    margin_rate: Annotated[str, Form()] = "0.3",
):
    """Set the draft's budget (its own transaction, so the planner's sees it), then plan as the API does."""
    budget_set = []

    def run():
        with transaction(state.session_factory) as own:
            overview.set_draft_budget(own, campaign_id, budget)
        budget_set.append(budget)
        body = PlanIn(region=region or None, segment=segment or None, margin_rate=margin_rate)
        return marketing_api.plan_campaign(campaign_id, body, state, principal)

    result, error = await attempt(request, session, run)
    if error is not None and budget_set:  # the budget's transaction was kept, as for any refused plan
        saved = error.message.replace(NOTHING_SAVED, "The budget was saved, the plan was not")
        error = refused_form(request, replace(error, message=saved))
    context, detail_error = await attempt(request, None, lambda: _detail(session, campaign_id, principal))
    if detail_error:
        return await refusal_page(request, "Not found", detail_error)
    if result is not None:
        context.update(plan_view(result))
    fragment = bool(request.headers.get("HX-Request"))  # htmx swaps the plan and the budget figure
    template = "_plan.html" if fragment else "campaign.html"
    # the API's status (`Refusal`): htmx swaps a refusal's fragment whatever its status (base.html's 422,
    # console.js the others), and the form, outside it, keeps the input
    status_code = 200 if error is None else error.status_code
    typed = {"budget": budget, "region": region, "segment": segment, "margin_rate": margin_rate}
    return await render(
        request, template, status_code=status_code, title=context["campaign"].name,
        plan_error=error, plan_form=typed if error else None, fragment=fragment, **context,
    )  # fmt: skip


@router.post("/{campaign_id}/{action}")
async def move(
    request: Request, campaign_id: CampaignId, action: str, session: SessionDep, principal: Marketing
):
    """schedule, launch (grants the coupons) or complete, through the API's transition endpoint."""
    if action not in ("schedule", "launch", "complete"):
        return await render(
            request, "error.html", status_code=404, title="Not found", message="no such action"
        )
    _, error = await attempt(
        request, session, lambda: marketing_api.move_campaign(campaign_id, action, session, principal)
    )
    if error:
        context, _ = await attempt(request, None, lambda: _detail(session, campaign_id, principal))
        if context is None:  # no such campaign: the refusal alone (the page of no campaign was a 500)
            return await refusal_page(request, "Campaign not changed", error)
        return await render(
            request,
            "campaign.html",
            status_code=error.status_code,
            title="Campaign",
            action_error=error,
            **(context or {}),
        )
    return redirect("/console/campaigns", campaign_id)


@router.get("/{campaign_id}/report")
async def report_fragment(
    request: Request, campaign_id: CampaignId, session: SessionDep, principal: Marketing
):
    """The measurement report, loaded after the page (htmx) or opened on its own without script."""

    def measure():
        campaign = marketing_api.get_campaign(campaign_id, session, principal)
        report = request.app.state.console_reports.report(session, campaign_id, principal)
        return campaign, report

    found, error = await attempt(request, None, measure)
    context = {"report_error": error}
    if found is not None:
        context.update(campaign=found[0], report=found[1], report_chart=report_chart(found[1]))
    template = "_report.html" if request.headers.get("HX-Request") else "report.html"
    return await render(request, template, title="Measurement report", **context)


@router.get("/{campaign_id}/audience.csv")
def audience_csv(campaign_id: CampaignId, session: SessionDep, principal: Marketing):
    return marketing_api.export_audience(campaign_id, session, principal)


def _finite(v):
    return v if v is not None and math.isfinite(v) else None


def _pp(rate):
    """A difference of rates in percentage points, as the report's table reads it."""
    return None if _finite(rate) is None else rate * 100


def report_chart(report):
    ci = report.incremental_conversion_rate_ci
    rev_ci = report.incremental_revenue_ci
    roi_ci = report.roi_ci
    return interval_chart(
        "report-chart",
        "Incremental effects with 95% confidence intervals",
        [
            (
                "incremental conversion rate (pp)",
                *(_pp(v) for v in (report.incremental_conversion_rate, *ci)),
            ),
            ("incremental revenue (CNY)", _finite(report.incremental_revenue), *rev_ci),
            ("ROI", _finite(report.roi), *roi_ci),
        ],
    )
