"""Search (organic and sponsored results), sponsored clicks, and merchants' keyword campaigns.

Roles as elsewhere: anyone may search; personalising by `shopper_id` needs a storefront, shopper (its own
id only) or admin key; clicks come from the storefront; merchants manage only their own campaigns.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic_core import to_json

from commerce.ads import AdKeyword, KeywordCampaign
from commerce.catalog import Category
from commerce.search.index import Filters
from commerce.services import ads
from commerce.services._util import get_or_404, stored_key
from commerce.services.catalog import category_subtree
from commerce.sqltypes import shifted
from serving.audit import audit
from serving.deps import (
    KeywordCampaignId,
    MerchantFilter,
    MerchantId,
    MerchantOrAdmin,
    PrincipalDep,
    SessionDep,
    StateDep,
    Storefront,
    ensure_merchant,
    ensure_shopper,
    read_in_slot,
    request_client,
    stored_shopper,
)
from serving.routers.common import IntId, PageLimit, PageOffset
from serving.schemas.base import PLAIN_INSTANT, PLAIN_INT, Instant, PageOut
from serving.schemas.search import (
    ClickIn,
    ClickOut,
    KeywordCampaignIn,
    KeywordCampaignOut,
    KeywordCampaignPatch,
    KeywordCampaignReport,
    KeywordIn,
    KeywordOut,
    KeywordPatch,
    SearchOut,
)
from serving.search import SearchService
from serving.security import ANONYMOUS, Principal

router = APIRouter(tags=["search"])
SPONSORED_LABEL = "Sponsored"


async def get_search(request: Request) -> SearchService:
    service = getattr(request.app.state, "search", None)
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "search is not configured")
    return service


SearchDep = Annotated[SearchService, Depends(get_search)]


def _card(doc) -> dict:
    return {
        "product_id": doc.product_id,
        "title": doc.title,
        "merchant_id": doc.merchant_id,
        "category_id": doc.category_id,
        "origin_country": doc.origin,
        "price": doc.price,
        "fulfillment": doc.fulfillment,
    }


async def _subtree(request: Request, state, category: str) -> frozenset[str]:
    """Categories under `category` holding products, from the catalog snapshot (no database transaction
    on the search path); a category the snapshot does not know comes from the database (404 if none), in
    a request slot (`read_in_slot`: any anonymous `?category=` of a made-up id read it beside them).
    Either reads the id as a URL's is (`ｂｅａｕｔｙ` is `beauty`). Awaited on the event loop: a sync
    endpoint holding a worker thread while `read_in_slot` waited for another hung once every thread was
    such a request (16 made-up categories at once with 4 threads)."""
    catalog = state.catalog.current
    known = catalog.stored_category(category) if catalog is not None else None
    if known is None or known not in catalog.category_parent:  # the id as sent: `stored_key` reads it
        subtree = lambda session: category_subtree(session, stored_key(session, Category, category))  # noqa: E731
        return frozenset(await read_in_slot(request, state, subtree))
    return frozenset(catalog.category_ids[catalog.category_mask(known)].tolist()) | {known}


@router.get("/search", response_model=SearchOut)
async def search(
    request: Request,
    search: SearchDep,
    state: StateDep,
    principal: PrincipalDep,
    merchant_id: MerchantFilter,
    q: Annotated[str, Query(min_length=1, max_length=100, description="Words in Chinese or English.")],
    shopper_id: Annotated[str | None, Query(max_length=64)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    origin: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    fulfillment: Literal["bonded", "direct_mail"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100), PLAIN_INT] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000), PLAIN_INT] = 0,
) -> Response:
    """Organic results ranked for the query (and the shopper, with the learned ranker), plus at most N
    sponsored results, flagged, for fixed positions of the first page. The database reads a look-alike
    shopper id or an unknown category needs are awaited here, the search itself runs on a worker thread
    (`_results`): no request holds one thread while waiting for another."""
    if shopper_id is not None:
        if principal.role not in ("storefront", "shopper", "admin"):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED if principal.role == ANONYMOUS else status.HTTP_403_FORBIDDEN,
                "personalised search needs a storefront, shopper or admin key",
            )
        shopper_id = await stored_shopper(request, state, shopper_id)
        ensure_shopper(principal, shopper_id)
    categories = await _subtree(request, state, category) if category is not None else None
    filters = Filters(
        origin=origin.upper() if origin else None,
        category_ids=categories,
        merchant_id=merchant_id,
        fulfillment=fulfillment,
    )
    client = request_client(request)  # a trusted proxy's X-Forwarded-For counts; IPv6: the /64
    return await run_in_threadpool(_results, search, q, shopper_id, client, filters, limit, offset)


def _results(
    search: SearchService,
    q: str,
    shopper_id: str | None,
    client: str,
    filters: Filters,
    limit: int,
    offset: int,
) -> Response:
    result = search.search(
        q, shopper_id=shopper_id, client=client, filters=filters, limit=limit, offset=offset
    )
    p = result.parsed
    # SearchOut's JSON built directly: validating 20-odd cards twice (construction, then response_model)
    # cost more than the search itself. tests/search/test_api.py checks it against SearchOut.
    body = {
        "query": q,
        "understood": {
            "terms": list(p.terms),
            "origin": p.origin,
            "brand": p.brand,
            "category_id": p.category_id,
            "corrections": p.corrections,
        },
        "items": [
            {**_card(hit.document), "rank": offset + i + 1, "score": score, "sponsored": False}
            for i, (hit, score) in enumerate(result.items)
        ],
        "sponsored": [
            {
                **_card(s.hit.document),
                "slot": s.win.slot,
                "position": s.position,
                "label": SPONSORED_LABEL,
                "sponsored": True,
                "impression_token": s.token,
            }
            for s in result.sponsored
        ],
        "total": result.total,
        "limit": limit,
        "offset": offset,
        "model_version": result.model_version,
    }
    return Response(to_json(body), media_type="application/json")


@router.post("/search/clicks", response_model=ClickOut)
def search_click(body: ClickIn, search: SearchDep, principal: Storefront) -> ClickOut:
    """A shopper clicked a sponsored result: charged once per impression token, within the budget, and once
    a day per shopper and ad (per searching client address for an anonymous search's token). Forged or
    expired tokens are refused (422); a replayed one is acknowledged and not charged. A shopper key clicks
    only results shown to it."""
    claim = search.verify(body.token)
    if claim.shopper_id is not None:
        ensure_shopper(principal, claim.shopper_id)
    elif principal.role == "shopper":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a shopper key clicks only its own search results")
    result = search.click(claim)
    return ClickOut(
        product_id=result.product_id,
        campaign_id=result.campaign_id,
        charged=result.charged,
        replay=result.replay,
    )


# --- keyword campaigns (merchants) ----------------------------------------------------------------------


def _campaigns_out(session, campaigns: list[KeywordCampaign]) -> list[KeywordCampaignOut]:
    contents = ads.campaign_contents(session, [c.campaign_id for c in campaigns])
    return [
        KeywordCampaignOut(
            campaign_id=c.campaign_id,
            merchant_id=c.merchant_id,
            name=c.name,
            daily_budget=c.daily_budget,
            status=c.status,
            created_at=c.created_at,
            product_ids=contents[c.campaign_id][0],
            keywords=[KeywordOut.model_validate(k, from_attributes=True) for k in contents[c.campaign_id][1]],
        )
        for c in campaigns
    ]


def _campaign_out(session, c: KeywordCampaign) -> KeywordCampaignOut:
    return _campaigns_out(session, [c])[0]


def _changes(**fields) -> dict:
    """The fields a PATCH sets (an omitted one is None and left as it was), for its audit entry."""
    return {name: value for name, value in fields.items() if value is not None}


def _owned(session, principal: Principal, campaign_id: str) -> KeywordCampaign:
    campaign = get_or_404(session, KeywordCampaign, campaign_id, "keyword campaign")
    ensure_merchant(principal, campaign.merchant_id)
    return campaign


@router.post(
    "/merchants/{merchant_id}/keyword-campaigns",
    response_model=KeywordCampaignOut,
    status_code=status.HTTP_201_CREATED,
)
def create_keyword_campaign(
    merchant_id: MerchantId,
    body: KeywordCampaignIn,
    session: SessionDep,
    search: SearchDep,
    principal: MerchantOrAdmin,
    background: BackgroundTasks,
) -> KeywordCampaignOut:
    """Keywords (exact, phrase or broad match) with a bid per click and a daily budget, promoting the
    merchant's own sellable products. Audited (`keyword_campaign.created`, with its budget, products and
    keywords), as every later change of a campaign or keyword is: each spends the merchant's money."""
    ensure_merchant(principal, merchant_id)
    campaign = ads.create_campaign(
        session,
        merchant_id,
        name=body.name,
        daily_budget=body.daily_budget,
        product_ids=body.product_ids,
        keywords=[ads.KeywordInput(k.keyword, k.match_type, k.bid) for k in body.keywords],
    )
    out = _campaign_out(session, campaign)
    audit(
        session, principal, "keyword_campaign.created", "keyword_campaign", campaign.campaign_id,
        merchant_id=campaign.merchant_id, name=campaign.name, daily_budget=campaign.daily_budget,
        product_ids=out.product_ids,
        keywords=[{"keyword_id": k.keyword_id, "keyword": k.keyword, "match_type": k.match_type, "bid": k.bid}
                  for k in out.keywords],
    )  # fmt: skip
    background.add_task(search.refresh_ads)
    return out


@router.get("/merchants/{merchant_id}/keyword-campaigns", response_model=PageOut[KeywordCampaignOut])
def list_keyword_campaigns(
    merchant_id: MerchantId,
    session: SessionDep,
    principal: MerchantOrAdmin,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> PageOut[KeywordCampaignOut]:
    """Oldest first."""
    ensure_merchant(principal, merchant_id)
    page = ads.list_campaigns(session, merchant_id, limit=limit, offset=offset)
    items = _campaigns_out(session, page.items)
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/keyword-campaigns/{campaign_id}", response_model=KeywordCampaignOut)
def get_keyword_campaign(
    campaign_id: KeywordCampaignId, session: SessionDep, principal: MerchantOrAdmin
) -> KeywordCampaignOut:
    return _campaign_out(session, _owned(session, principal, campaign_id))


@router.patch("/keyword-campaigns/{campaign_id}", response_model=KeywordCampaignOut)
def update_keyword_campaign(
    campaign_id: KeywordCampaignId,
    body: KeywordCampaignPatch,
    session: SessionDep,
    search: SearchDep,
    principal: MerchantOrAdmin,
    background: BackgroundTasks,
) -> KeywordCampaignOut:
    """Change the daily budget, or pause, resume or end the campaign."""
    _owned(session, principal, campaign_id)
    campaign = ads.update_campaign(session, campaign_id, daily_budget=body.daily_budget, status=body.status)
    audit(
        session, principal, "keyword_campaign.changed", "keyword_campaign", campaign.campaign_id,
        **_changes(daily_budget=body.daily_budget, status=body.status),
    )  # fmt: skip
    background.add_task(search.refresh_ads)
    return _campaign_out(session, campaign)


@router.post(
    "/keyword-campaigns/{campaign_id}/keywords",
    response_model=KeywordOut,
    status_code=status.HTTP_201_CREATED,
)
def add_keyword(
    campaign_id: KeywordCampaignId,
    body: KeywordIn,
    session: SessionDep,
    search: SearchDep,
    principal: MerchantOrAdmin,
    background: BackgroundTasks,
) -> KeywordOut:
    _owned(session, principal, campaign_id)
    row = ads.add_keyword(session, campaign_id, ads.KeywordInput(body.keyword, body.match_type, body.bid))
    audit(
        session, principal, "keyword.added", "keyword", row.keyword_id,
        campaign_id=row.campaign_id, keyword=row.keyword, match_type=row.match_type, bid=row.bid,
    )  # fmt: skip
    background.add_task(search.refresh_ads)
    return KeywordOut.model_validate(row, from_attributes=True)


@router.patch("/keyword-campaigns/{campaign_id}/keywords/{keyword_id}", response_model=KeywordOut)
def update_keyword(
    campaign_id: KeywordCampaignId,
    keyword_id: IntId,
    body: KeywordPatch,
    session: SessionDep,
    search: SearchDep,
    principal: MerchantOrAdmin,
    background: BackgroundTasks,
) -> KeywordOut:
    """Change a keyword's bid or pause / resume it."""
    _owned(session, principal, campaign_id)
    row = get_or_404(session, AdKeyword, keyword_id, "keyword")
    if row.campaign_id != campaign_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no keyword {keyword_id} in campaign {campaign_id!r}")
    row = ads.update_keyword(session, keyword_id, bid=body.bid, status=body.status)
    audit(
        session, principal, "keyword.changed", "keyword", keyword_id,
        campaign_id=row.campaign_id, **_changes(bid=body.bid, status=body.status),
    )  # fmt: skip
    background.add_task(search.refresh_ads)
    return KeywordOut.model_validate(row, from_attributes=True)


@router.get("/keyword-campaigns/{campaign_id}/report", response_model=KeywordCampaignReport)
def keyword_campaign_report(
    campaign_id: KeywordCampaignId,
    session: SessionDep,
    principal: MerchantOrAdmin,
    start: Annotated[Instant | None, PLAIN_INSTANT] = None,
    end: Annotated[Instant | None, PLAIN_INSTANT] = None,
) -> KeywordCampaignReport:
    """Impressions, clicks, CTR, spend, attributed orders (clicking shopper bought the product within
    7 days) and ROAS over [start, end) (default: the last 30 days)."""
    _owned(session, principal, campaign_id)
    end = end or datetime.now(UTC)
    start = start or shifted(end, -timedelta(days=30))
    if start >= end:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "start must be before end")
    rep = ads.campaign_report(session, campaign_id, start, end)
    return KeywordCampaignReport(start=start, end=end, **rep.__dict__)
