"""Coupon management (marketer, admin): create, list, show, edit while unused, retire.

Thin over `commerce.services.coupons`, the same calls `crosscart coupon` and the console make. Each change
is audited: a coupon is money a marketer key gives away (one needing no grant, to anyone who checks out).
"""

from __future__ import annotations

from fastapi import APIRouter, status

from commerce.services import coupons as service
from serving.audit import audit
from serving.deps import CampaignFilter, Marketer, SessionDep
from serving.routers.common import PageLimit, PageOffset
from serving.schemas.coupons import CouponCreate, CouponEdit, CouponList, CouponOut

router = APIRouter(prefix="/coupons", tags=["marketing"])


def _out(coupon) -> CouponOut:
    return CouponOut.model_validate(coupon, from_attributes=True)


@router.post("", response_model=CouponOut, status_code=status.HTTP_201_CREATED)
def create_coupon(body: CouponCreate, session: SessionDep, principal: Marketer) -> CouponOut:
    """A platform coupon; give it a campaign's id to make it one of that campaign's arms."""
    coupon = _out(service.create_coupon(session, service.CouponInput(**body.model_dump())))
    terms = body.model_dump(mode="json", exclude={"coupon_id"})
    audit(session, principal, "coupon.created", "coupon", coupon.coupon_id, **terms)
    return coupon


@router.get("", response_model=CouponList)
def list_coupons(
    session: SessionDep,
    _: Marketer,
    campaign_id: CampaignFilter,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> CouponList:
    page = service.list_coupons(session, campaign_id=campaign_id, limit=limit, offset=offset)
    return CouponList(items=[_out(c) for c in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/{coupon_id}", response_model=CouponOut)
def get_coupon(coupon_id: str, session: SessionDep, _: Marketer) -> CouponOut:
    return _out(service.get_coupon(session, coupon_id))


@router.patch("/{coupon_id}", response_model=CouponOut)
def edit_coupon(coupon_id: str, body: CouponEdit, session: SessionDep, principal: Marketer) -> CouponOut:
    """Change terms while nobody holds or has used the coupon (409 `coupon_in_use` afterwards)."""
    coupon = _out(service.update_coupon(session, coupon_id, **body.model_dump(exclude_unset=True)))
    changes = body.model_dump(mode="json", exclude_unset=True)
    audit(session, principal, "coupon.changed", "coupon", coupon.coupon_id, **changes)
    return coupon


@router.post("/{coupon_id}/retire", response_model=CouponOut)
def retire_coupon(coupon_id: str, session: SessionDep, principal: Marketer) -> CouponOut:
    """End the coupon's window now; redemptions already made stay valid."""
    coupon = _out(service.end_coupon(session, coupon_id))
    audit(session, principal, "coupon.retired", "coupon", coupon.coupon_id)
    return coupon
