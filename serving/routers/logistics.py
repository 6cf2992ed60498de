"""Logistics: partners, stock locations' owners (admins), delivery quotes (price and predicted window per
partner), merchants' shipping rules and replenishment hints. Thin over commerce.services.logistics,
serving.delivery and serving.replenishment."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from commerce.catalog import Fulfillment
from commerce.services import logistics
from commerce.services.checkout import MAX_UNITS_PER_PRODUCT
from commerce.sqltypes import utcnow
from serving.audit import audit
from serving.delivery import delivery_quote
from serving.deps import (
    Admin,
    MerchantId,
    MerchantOrAdmin,
    ProductId,
    SessionDep,
    StateDep,
    Storefront,
    ensure_merchant,
    visible_product,
)
from serving.replenishment import merchant_replenishment
from serving.routers.common import PageLimit, PageOffset
from serving.schemas.base import PLAIN_FLOAT, PLAIN_INT, PageOut
from serving.schemas.logistics import (
    DeliveryOptionOut,
    DeliveryQuoteOut,
    LocationOut,
    LocationOwnerIn,
    PartnerOut,
    ReplenishmentOut,
    ShippingRuleIn,
    ShippingRuleOut,
)

router = APIRouter(tags=["logistics"])

Region = Annotated[
    str, Query(min_length=1, max_length=64, description="Province-level region, e.g. Zhejiang")
]


@router.get("/logistics/partners", response_model=list[PartnerOut])
def list_partners(session: SessionDep, _: Storefront) -> list[PartnerOut]:
    return [
        PartnerOut(
            partner_id=p.partner_id, name=p.name, mode=p.mode, min_days=p.min_days, max_days=p.max_days
        )
        for p in logistics.list_partners(session)
    ]


def _location(w) -> LocationOut:
    return LocationOut(
        location=w.warehouse_id, name=w.name, mode=w.mode, partner_id=w.partner_id, region=w.region,
        country=w.country, owner_merchant_id=w.owner_merchant_id,
    )  # fmt: skip


@router.get("/logistics/locations", response_model=PageOut[LocationOut])
def list_locations(
    session: SessionDep,
    principal: MerchantOrAdmin,
    owner: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this merchant's own locations")
    ] = None,
    unowned: Annotated[bool, Query(description="Only platform locations and unclaimed ones")] = False,
    mode: Fulfillment | None = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> PageOut[LocationOut]:
    """Stock locations by id: a merchant's key lists those it may stock (platform locations and its own),
    an admin's all of them, e.g. `?unowned=true` to find the ones registered before owners existed."""
    page = logistics.locations_page(
        session, merchant_id=principal.merchant_id, owner=owner, unowned=unowned, mode=mode,
        limit=limit, offset=offset,
    )  # fmt: skip
    return PageOut(items=[_location(w) for w in page.items], total=page.total, limit=limit, offset=offset)


@router.put(
    "/logistics/locations/{location}/owner",
    response_model=LocationOut,
    responses={409: {"description": "other merchants' goods are stocked there"}},
)
def set_location_owner(
    location: Annotated[str, Path(min_length=1, max_length=64)],
    body: LocationOwnerIn,
    session: SessionDep,
    admin: Admin,
) -> LocationOut:
    """Make a stock location one merchant's own (only it may stock or see it) or, with null, a platform
    location any merchant may use: how a location registered before owners existed is claimed. Audited
    with the old and new owner."""
    w, old = logistics.set_location_owner(session, location, body.merchant_id)
    audit(session, admin, "location.owner_changed", "location", location, old=old, new=w.owner_merchant_id)
    return _location(w)


@router.get("/products/{product_id}/delivery", response_model=DeliveryQuoteOut)
def product_delivery(
    product_id: ProductId,
    region: Region,
    session: SessionDep,
    state: StateDep,
    principal: Storefront,
    quantity: Annotated[int, Query(ge=1, le=MAX_UNITS_PER_PRODUCT), PLAIN_INT] = 1,
) -> DeliveryQuoteOut:
    """What each partner charges to ship the product to `region` and when it would arrive (80% window),
    and the partner the merchant's shipping rule picks: the window the storefront promises. A product
    that is not public is 404 as its page is."""
    visible_product(session, principal, product_id)
    quote = delivery_quote(session, state.delivery.current, product_id, region, quantity, utcnow())
    chosen = next(o for o in quote.options if o.partner_id == quote.chosen)
    return DeliveryQuoteOut(
        product_id=quote.product_id,
        region=region,
        zone=quote.zone,
        chargeable_weight_g=quote.chargeable_weight_g,
        rule=quote.rule,
        chosen=quote.chosen,
        in_stock=quote.in_stock,
        promised_window=(chosen.earliest, chosen.latest),
        model=quote.model,
        options=[DeliveryOptionOut(**vars(o)) for o in quote.options],
    )


def _rule(rule) -> ShippingRuleOut:
    return ShippingRuleOut(
        merchant_id=rule.merchant_id,
        partner_id=rule.partner_id,
        max_days=rule.max_days,
        updated_at=rule.updated_at,
    )


@router.put("/merchants/{merchant_id}/shipping-rule", response_model=ShippingRuleOut)
def set_shipping_rule(
    merchant_id: MerchantId, body: ShippingRuleIn, session: SessionDep, principal: MerchantOrAdmin
) -> ShippingRuleOut:
    """Ship with one partner, or with the cheapest partner that arrives within `max_days` at 80%.
    Audited (`shipping_rule.set`, with the rule it replaced): it decides every order's carrier and promise."""
    ensure_merchant(principal, merchant_id)
    rule, old = logistics.set_shipping_rule(
        session, merchant_id, partner_id=body.partner_id, max_days=body.max_days
    )
    audit(
        session, principal, "shipping_rule.set", "merchant", rule.merchant_id,
        partner_id=rule.partner_id, max_days=rule.max_days, old=old,
    )  # fmt: skip
    return _rule(rule)


@router.get("/merchants/{merchant_id}/shipping-rule", response_model=ShippingRuleOut | None)
def get_shipping_rule(
    merchant_id: MerchantId, session: SessionDep, principal: MerchantOrAdmin
) -> ShippingRuleOut | None:
    """The merchant's rule; null when none is set (orders then ship with the fastest partner)."""
    ensure_merchant(principal, merchant_id)
    rule = logistics.get_shipping_rule(session, merchant_id)
    return None if rule is None else _rule(rule)


@router.get("/merchants/{merchant_id}/replenishment", response_model=list[ReplenishmentOut])
def replenishment(
    merchant_id: MerchantId,
    session: SessionDep,
    principal: MerchantOrAdmin,
    weeks: Annotated[int, Query(ge=2, le=26, description="Weeks forecast"), PLAIN_INT] = 4,
    lead_time_weeks: Annotated[int, Query(ge=1, le=12), PLAIN_INT] = 2,
    service_level: Annotated[float, Query(ge=0.5, le=0.999), PLAIN_FLOAT] = 0.95,
) -> list[ReplenishmentOut]:
    """Per bonded product and warehouse: weekly demand forecast, safety stock, reorder point and the
    quantity to order now (0 when stock covers the lead time), largest orders first."""
    ensure_merchant(principal, merchant_id)
    if lead_time_weeks + 1 > weeks:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "weeks must cover the lead time plus one review week"
        )
    rows = merchant_replenishment(
        session, merchant_id, utcnow(), horizon=weeks, lead_time=lead_time_weeks, service_level=service_level
    )
    return [ReplenishmentOut(**row) for row in rows]
