"""Marketer pages for coupons: list, create, edit while unused, retire, through `serving.routers.coupons`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from commerce.campaigns import Campaign
from serving.console.auth import Marketing
from serving.console.campaigns import _utc, coupon_value, scope_of
from serving.console.web import FormRoute, attempt, choices, past_the_end, redirect, refusal_page, render
from serving.deps import SessionDep
from serving.routers import coupons as coupon_api
from serving.routers.common import PageOffset
from serving.schemas.coupons import CouponCreate, CouponEdit

router = APIRouter(prefix="/coupons", route_class=FormRoute)

KINDS = choices("kinds", (("amount_off", "Amount off (CNY)"), ("percent_off", "Percent off (%)")))


@router.get("")
async def coupon_list(request: Request, session: SessionDep, principal: Marketing, offset: PageOffset = 0):
    page, error = await attempt(
        request, None, lambda: coupon_api.list_coupons(session, principal, None, 50, offset)
    )
    if moved := past_the_end(request, page):
        return moved
    ids = {c.campaign_id for c in page.items if c.campaign_id} if page else set()
    names = await run_in_threadpool(_campaign_names, session, ids)
    return await render(request, "coupons.html", title="Coupons", page=page, error=error, campaigns=names)


def _campaign_names(session, ids: set[str]) -> dict[str, str]:
    """The names of the listed coupons' campaigns: the list showed a bare campaign id, not a link."""
    if not ids:
        return {}
    rows = session.execute(select(Campaign.campaign_id, Campaign.name).where(Campaign.campaign_id.in_(ids)))
    return {campaign_id: name for campaign_id, name in rows}


def _terms(form) -> dict:
    """Form fields -> API schema fields; empty optional fields mean "none"."""
    kind = form.get("kind") or "amount_off"
    scope_type, scope_id = scope_of(form.get("scope") or "platform")
    out = {
        "name": form.get("name") or "",
        "kind": kind,
        "value": coupon_value(kind, form.get("value") or "0"),
        "cap": form.get("cap") or None,
        "min_spend": form.get("min_spend") or "0",
        "scope_type": scope_type,
        "scope_id": scope_id,
        "per_shopper_limit": form.get("per_shopper_limit") or 1,
        "usage_limit": form.get("usage_limit") or None,
        "budget": form.get("budget") or None,
        "starts_at": _utc(form["starts_at"]) if form.get("starts_at") else None,
        "ends_at": _utc(form["ends_at"]) if form.get("ends_at") else None,
        "requires_grant": form.get("requires_grant") == "on",
        "campaign_id": form.get("campaign_id") or None,
    }
    return out


def _form_of(coupon) -> dict:
    """A stored coupon as form values (percent shown in percent, times as datetime-local)."""
    value = coupon.value * 100 if coupon.kind == "percent_off" else coupon.value
    scope = coupon.scope_type if coupon.scope_id is None else f"{coupon.scope_type}:{coupon.scope_id}"

    def local(ts):
        return ts.strftime("%Y-%m-%dT%H:%M") if ts else ""

    return {
        "name": coupon.name, "kind": coupon.kind, "value": f"{value.normalize():f}",
        "cap": coupon.cap or "", "min_spend": coupon.min_spend, "scope": scope,
        "per_shopper_limit": coupon.per_shopper_limit, "usage_limit": coupon.usage_limit or "",
        "budget": coupon.budget or "", "starts_at": local(coupon.starts_at), "ends_at": local(coupon.ends_at),
        "requires_grant": coupon.requires_grant, "campaign_id": coupon.campaign_id or "",
    }  # fmt: skip


@router.get("/new")
async def new_coupon(request: Request, _: Marketing):
    return await render(request, "coupon_form.html", title="New coupon", form={}, coupon=None)


@router.post("/new")
async def create_coupon(request: Request, session: SessionDep, principal: Marketing):
    form = await request.form()
    coupon, error = await attempt(
        request,
        session,
        lambda: coupon_api.create_coupon(
            CouponCreate(**_terms(form), coupon_id=form.get("coupon_id") or None), session, principal
        ),
    )
    if error:
        return await render(
            request, "coupon_form.html", status_code=error.status_code, title="New coupon", form=form,
            coupon=None, error=error,
        )  # fmt: skip
    return redirect("/console/coupons", coupon.coupon_id)


@router.get("/{coupon_id}")
async def coupon_page(request: Request, coupon_id: str, session: SessionDep, principal: Marketing):
    coupon, error = await attempt(request, None, lambda: coupon_api.get_coupon(coupon_id, session, principal))
    if error:
        return await refusal_page(request, "Not found", error)
    return await render(
        request, "coupon_form.html", title=f"Coupon {coupon_id}", form=_form_of(coupon), coupon=coupon,
    )  # fmt: skip


@router.post("/{coupon_id}")
async def edit_coupon(request: Request, coupon_id: str, session: SessionDep, principal: Marketing):
    """Only while nobody holds or has used it: the API answers 409 otherwise, shown on the page."""
    form = await request.form()

    def edit():
        return coupon_api.edit_coupon(coupon_id, CouponEdit(**_terms(form)), session, principal)

    _, error = await attempt(request, session, edit)
    if error:
        coupon, _ = await attempt(request, None, lambda: coupon_api.get_coupon(coupon_id, session, principal))
        return await render(
            request, "coupon_form.html", status_code=error.status_code, title=f"Coupon {coupon_id}",
            form=form, coupon=coupon, error=error,
        )  # fmt: skip
    return redirect("/console/coupons", coupon_id)


@router.post("/{coupon_id}/retire")
async def retire_coupon(request: Request, coupon_id: str, session: SessionDep, principal: Marketing):
    _, error = await attempt(
        request, session, lambda: coupon_api.retire_coupon(coupon_id, session, principal)
    )
    if error:
        return await refusal_page(request, "Cannot retire", error)
    return redirect("/console/coupons", coupon_id)
