"""Merchant pages for keyword promotion: list campaigns, create one (keywords with match type and bid, a
daily budget, products approved for sale), pause / resume / end it, change its budget and its keywords'
bids, and read its report.

Every action calls the API's router functions in `serving.routers.search` (the role and ownership checks,
then `commerce.services.ads`), so the console and the API share one rule set.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import select

from commerce.catalog import Product
from commerce.services import ads
from serving.console.auth import Forbidden, MerchantOnly
from serving.console.merchant import MerchantPage, merchant_name, merchant_of, merchant_picker, merchant_query
from serving.console.web import FormRoute, Refusal, attempt, choices, past_the_end, redirect, render
from serving.deps import KeywordCampaignId, SessionDep
from serving.routers import search as search_api
from serving.routers.common import MAX_N, IntId, PageOffset
from serving.schemas.base import plain_day
from serving.schemas.search import KeywordCampaignIn, KeywordCampaignPatch, KeywordIn, KeywordPatch
from serving.security import Principal

router = APIRouter(prefix="/keyword-campaigns", route_class=FormRoute)

BASE = "/console/keyword-campaigns"
MATCH_TYPES = choices(
    "match_types",
    (
        ("broad", "Broad: every word anywhere in the search"),
        ("phrase", "Phrase: the words together, in order"),
        ("exact", "Exact: the search is these words"),
    ),
)
KEYWORD_ROWS = 5  # keyword rows on the create form; more can be added on the campaign page
PICKER_LIMIT = 200  # promotable products offered as checkboxes; others by id
REPORT_DAYS = 30


async def _campaign_or_error(request: Request, session, principal: Principal, campaign_id: str):
    """The campaign through the API's read (ownership checked there); a page for 403 / 404 otherwise."""
    try:
        return await run_in_threadpool(search_api.get_keyword_campaign, campaign_id, session, principal), None
    except HTTPException as exc:
        if exc.status_code == 403:
            raise Forbidden(str(exc.detail)) from exc
        page = await render(
            request, "error.html", status_code=exc.status_code, title="Not found", message=str(exc.detail)
        )
        return None, page


def _keywords_of(form) -> list[KeywordIn]:
    """Filled keyword rows of the create form (an empty keyword means an unused row)."""
    out = []
    for i in range(KEYWORD_ROWS):
        text = (form.get(f"keyword_{i}") or "").strip()
        if text:
            out.append(
                KeywordIn(
                    keyword=text, match_type=form.get(f"match_{i}") or "", bid=form.get(f"bid_{i}") or ""
                )
            )
    return out


def _product_ids_of(form) -> list[str]:
    picked = [p for p in form.getlist("product_ids") if p]
    typed = [p.strip() for p in (form.get("other_product_ids") or "").replace("\n", ",").split(",")]
    return picked + [p for p in typed if p]


def _report_window(start: str | None, end: str | None) -> tuple[date, date]:
    """The report's days (both inclusive, UTC); default: the last 30 days up to today. ValueError for a
    day not written YYYY-MM-DD, or one at the calendar's ends: the window ends at midnight after `last`,
    which 9999-12-31 does not have, and 30 days before 0001-01-01 do not exist either (both were 500s)."""
    last = plain_day(end) if end else datetime.now(UTC).date()
    if last == date.max:
        raise ValueError("no day after the last day of the calendar")
    try:
        first = plain_day(start) if start else last - timedelta(days=REPORT_DAYS - 1)
    except OverflowError as exc:
        raise ValueError("the window starts before the first day of the calendar") from exc
    return first, last


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@router.get("")
async def campaign_list(request: Request, scope: MerchantPage, offset: PageOffset = 0):
    if scope.merchant_id is None:
        return await merchant_picker(request, "Keyword ads", scope.db)
    page, error = await attempt(
        request,
        None,
        lambda: search_api.list_keyword_campaigns(
            scope.merchant_id, scope.db, scope.principal, MAX_N, offset
        ),
    )
    if moved := past_the_end(request, page):
        return moved

    def spent_today():  # today as billing counts it, not as this replica's clock does
        at = ads.billing_clock(scope.db)
        items = page.items if page else []
        return at, ads.spent_by(scope.db, [c.campaign_id for c in items], at)

    at, spent = await run_in_threadpool(spent_today)
    return await render(
        request, "keyword_campaigns.html", title="Keyword ads", merchant_id=scope.merchant_id,
        merchant_name=scope.merchant_name, page=page, spent=spent, billing_day=ads.day_key(at),
        suffix=scope.query, error=error,
    )  # fmt: skip


async def _new_form(
    request: Request, session, principal: Principal, merchant_id: str, form: Any, error: Refusal | None = None
) -> Response:
    products = await run_in_threadpool(ads.promotable_products, session, merchant_id, limit=PICKER_LIMIT + 1)
    name = await run_in_threadpool(merchant_name, session, merchant_id)
    return await render(
        request, "keyword_campaign_new.html", status_code=error.status_code if error else 200,
        title="New keyword campaign",
        merchant_id=merchant_id, merchant_name=name, products=products[:PICKER_LIMIT],
        more_products=len(products) > PICKER_LIMIT,
        form=form, picked=set(form.getlist("product_ids")) if hasattr(form, "getlist") else set(),
        rows=range(KEYWORD_ROWS), suffix=merchant_query(principal, merchant_id),
        error=error,
    )  # fmt: skip


@router.get("/new")
async def new_campaign(request: Request, scope: MerchantPage):
    if scope.merchant_id is None:
        return redirect(BASE)
    return await _new_form(request, scope.db, scope.principal, scope.merchant_id, {})


@router.post("/new")
async def create_campaign(
    request: Request,
    session: SessionDep,
    principal: MerchantOnly,
    background: BackgroundTasks,
    search: search_api.SearchDep,
):
    form = await request.form()
    merchant_id = await run_in_threadpool(merchant_of, session, principal, form.get("merchant_id"))
    if merchant_id is None:
        return redirect(BASE)

    def create():
        body = KeywordCampaignIn(
            name=form.get("name") or "",
            daily_budget=form.get("daily_budget") or "",
            product_ids=_product_ids_of(form),
            keywords=_keywords_of(form),
        )
        return search_api.create_keyword_campaign(merchant_id, body, session, search, principal, background)

    campaign, error = await attempt(request, session, create)
    if error:
        return await _new_form(request, session, principal, merchant_id, form, error)
    return redirect(BASE, campaign.campaign_id)


@router.get("/{campaign_id}")
async def campaign_page(
    request: Request,
    campaign_id: KeywordCampaignId,
    session: SessionDep,
    principal: MerchantOnly,
    start: str | None = None,
    end: str | None = None,
):
    return await _campaign_view(request, session, principal, campaign_id, start=start, end=end)


def _names(session, campaign) -> tuple[str, dict[str, str]]:
    """The campaign's merchant name and its promoted products' titles: the page listed bare ids."""
    rows = session.execute(
        select(Product.product_id, Product.title).where(Product.product_id.in_(campaign.product_ids))
    )
    return merchant_name(session, campaign.merchant_id), {pid: title for pid, title in rows}


async def _campaign_view(
    request: Request,
    session,
    principal: Principal,
    campaign_id: str,
    *,
    start: str | None = None,
    end: str | None = None,
    error: Refusal | None = None,
    typed: Any = None,
    status_code: int = 200,
) -> Response:
    """The campaign, its keywords and the report over the chosen days (the API's report, same figures);
    after a refused change, the form that sent it holds what was `typed`."""
    campaign, page = await _campaign_or_error(request, session, principal, campaign_id)
    if page is not None:
        return page
    report_error = None
    try:
        first, last = _report_window(start, end)
    except ValueError:
        first, last = _report_window(None, None)
        report_error = "Dates must look like 2026-06-01 (years 1 to 9999); showing the last 30 days."
    at = await run_in_threadpool(ads.billing_clock, session)  # today as billing counts it, not this replica
    spent_today = await run_in_threadpool(ads.spent_on, session, campaign_id, at)
    name, titles = await run_in_threadpool(_names, session, campaign)
    report, refused = await attempt(
        request,
        None,
        lambda: search_api.keyword_campaign_report(
            campaign_id, session, principal, _midnight(first), _midnight(last + timedelta(days=1))
        ),
    )
    return await render(
        request, "keyword_campaign.html", status_code=status_code, title=f"Keyword campaign {campaign.name}",
        campaign=campaign, spent_today=spent_today, billing_day=ads.day_key(at), merchant_name=name,
        titles=titles, report=report, report_error=report_error or refused, first=first.isoformat(),
        last=last.isoformat(),
        list_path=BASE + merchant_query(principal, campaign.merchant_id),
        error=error, typed=typed or {},
    )  # fmt: skip


async def _act(request: Request, session, principal: Principal, campaign_id: str, form, action) -> Response:
    """Run a change through the API (ownership first); on refusal show the campaign page with the reason,
    the status the API would answer and the `form` as it was sent."""
    _, page = await _campaign_or_error(request, session, principal, campaign_id)
    if page is not None:
        return page
    _, refused = await attempt(request, session, action)
    if refused is not None:
        if refused.status_code == 403:
            raise Forbidden(refused.message)
        return await _campaign_view(
            request, session, principal, campaign_id, error=refused, typed=form,
            status_code=refused.status_code,
        )  # fmt: skip
    return redirect(BASE, campaign_id)


@router.post("/{campaign_id}")
async def update_campaign(
    request: Request,
    campaign_id: KeywordCampaignId,
    session: SessionDep,
    principal: MerchantOnly,
    background: BackgroundTasks,
    search: search_api.SearchDep,
):
    """The budget form sends `daily_budget`; the pause / resume / end buttons send `status`."""
    form = await request.form()

    def update():
        body = KeywordCampaignPatch(
            daily_budget=form.get("daily_budget") or None, status=form.get("status") or None
        )
        search_api.update_keyword_campaign(campaign_id, body, session, search, principal, background)

    return await _act(request, session, principal, campaign_id, form, update)


@router.post("/{campaign_id}/keywords")
async def add_keyword(
    request: Request,
    campaign_id: KeywordCampaignId,
    session: SessionDep,
    principal: MerchantOnly,
    background: BackgroundTasks,
    search: search_api.SearchDep,
):
    form = await request.form()

    def add():
        body = KeywordIn(
            keyword=form.get("keyword") or "",
            match_type=form.get("match_type") or "",
            bid=form.get("bid") or "",
        )
        search_api.add_keyword(campaign_id, body, session, search, principal, background)

    return await _act(request, session, principal, campaign_id, form, add)


@router.post("/{campaign_id}/keywords/{keyword_id}")
async def update_keyword(
    request: Request,
    campaign_id: KeywordCampaignId,
    keyword_id: IntId,
    session: SessionDep,
    principal: MerchantOnly,
    background: BackgroundTasks,
    search: search_api.SearchDep,
):
    """The bid form sends `bid`; the pause / resume button sends `status`."""
    form = await request.form()

    def update():
        body = KeywordPatch(bid=form.get("bid") or None, status=form.get("status") or None)
        search_api.update_keyword(campaign_id, keyword_id, body, session, search, principal, background)

    return await _act(request, session, principal, campaign_id, form, update)
