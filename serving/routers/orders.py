"""Orders: quote and checkout, payment, fulfilment, tracking, cancel and refund; a shopper's coupons.

A shopper key reaches only its own orders: someone else's order answers 404, exactly like a missing one,
so order ids cannot be probed. Payment confirmation, fulfilment and refunds come from back-office systems
(the payment provider's callback, the warehouse, customer service) holding admin keys.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status

from commerce.catalog import Product
from commerce.errors import LimitExceeded, OutOfStock
from commerce.orders import Order, OrderStatus
from commerce.services import checkout as checkout_service
from commerce.services import coupons as coupon_service
from commerce.services import orders as order_service
from commerce.services import refunds as refund_service
from commerce.services._util import stored_keys
from commerce.services.catalog import category_paths, sellable_products
from commerce.sqltypes import utcnow
from marketing.audience import current_features
from serving.audit import audit
from serving.coupons import rank_coupons
from serving.delivery import model_estimator
from serving.deps import Admin, SessionDep, ShopperId, ShopperSelf, StateDep, Storefront, ensure_shopper
from serving.routers.common import IntId, PageLimit, PageOffset
from serving.schemas.base import PageOut
from serving.schemas.orders import (
    CheckoutIn,
    CouponPage,
    OrderLineOut,
    OrderOut,
    PaymentIn,
    RankedCoupon,
    ReasonIn,
    RefundDecisionIn,
    RefundRequestOut,
    ShipIn,
    StatusIn,
    TraceStepOut,
    TrackingIn,
)
from serving.security import Principal

router = APIRouter(tags=["orders"])


def _order(order: Order, *, stored: bool = True) -> OrderOut:
    return OrderOut(
        order_id=order.order_id if stored else None,
        shopper_id=order.shopper_id,
        status=order.status,
        fulfillment=order.fulfillment,
        partner_id=order.partner_id,
        tax_regime=order.tax_regime,
        coupon_id=order.coupon_id,
        goods_total=order.goods_total,
        discount_total=order.discount_total,
        tax_total=order.tax_total,
        total=order.total,
        lines=[OrderLineOut.model_validate(line, from_attributes=True) for line in order.lines],
        created_at=order.created_at,
        paid_at=order.paid_at,
        delivery_earliest=order.delivery_earliest,
        delivery_latest=order.delivery_latest,
    )


def _own_order(session, principal: Principal, order_id: int) -> Order:
    scope = principal.shopper_id if principal.role == "shopper" else None
    return order_service.get_order(session, order_id, shopper_id=scope)


def _checkout(session, state, shopper_id: str, body: CheckoutIn) -> Order:
    """Checkout with the shopper's open unpaid orders bounded. When stock, a coupon or a limit refuses
    the order, unpaid orders past the payment window are expired (on demand, besides the API's periodic
    sweep) and, if any gave something back, the order is tried once more: hoarded stock is never the
    reason a buyer is turned away, and the common path pays nothing for expiry."""

    def place() -> Order:
        return checkout_service.checkout(
            session,
            shopper_id,
            [checkout_service.CartLine(line.product_id, line.quantity) for line in body.lines],
            coupon_id=body.coupon_id,
            partner_id=body.partner_id,
            max_open_pending=state.settings.max_open_pending_orders,
            estimator=model_estimator(session, state.delivery.current),
        )

    try:
        return place()
    except (OutOfStock, LimitExceeded):
        session.rollback()  # release this request's locks before the sweep's own transactions
        if not state.expire_pending_orders():
            raise
        return place()


@router.post("/shoppers/{shopper_id}/cart/quote", response_model=OrderOut)
def quote_cart(
    shopper_id: ShopperId, body: CheckoutIn, session: SessionDep, state: StateDep, principal: Storefront
) -> OrderOut:
    """Price a cart exactly as checkout would (tax per line, customs limits, coupon) without keeping
    anything: the checkout runs and is rolled back, so no stock is reserved and no coupon is used."""
    ensure_shopper(principal, shopper_id)
    quote = _order(_checkout(session, state, shopper_id, body), stored=False)
    session.rollback()
    return quote


@router.post("/shoppers/{shopper_id}/orders", response_model=OrderOut, status_code=status.HTTP_201_CREATED)
def checkout(
    shopper_id: ShopperId, body: CheckoutIn, session: SessionDep, state: StateDep, principal: ShopperSelf
) -> OrderOut:
    """Place an order (pending payment): stock is reserved and the coupon redeemed atomically. Unpaid
    orders expire after the payment window (default 30 min), and a shopper holds at most a few (422
    `too_many_pending_orders`)."""
    ensure_shopper(principal, shopper_id)
    return _order(_checkout(session, state, shopper_id, body))


@router.get("/shoppers/{shopper_id}/orders", response_model=PageOut[OrderOut])
def list_orders(
    shopper_id: ShopperId,
    session: SessionDep,
    principal: ShopperSelf,
    status: OrderStatus | None = None,
    limit: PageLimit = 20,
    offset: PageOffset = 0,
) -> PageOut[OrderOut]:
    ensure_shopper(principal, shopper_id)
    page = order_service.list_orders(
        session, shopper_id=shopper_id, status=status, limit=limit, offset=offset
    )
    return PageOut(items=[_order(o) for o in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: IntId, session: SessionDep, principal: ShopperSelf) -> OrderOut:
    return _order(_own_order(session, principal, order_id))


@router.get("/orders/{order_id}/tracking", response_model=list[TraceStepOut])
def track_order(order_id: IntId, session: SessionDep, principal: ShopperSelf) -> list[TraceStepOut]:
    """Every status change and carrier scan, end to end."""
    _own_order(session, principal, order_id)
    return [
        TraceStepOut(at=s.at, kind=s.kind, status=s.status, detail=s.detail)
        for s in order_service.trace_order(session, order_id)
    ]


@router.post("/orders/{order_id}/cancel", response_model=OrderOut)
def cancel_order(order_id: IntId, body: ReasonIn, session: SessionDep, principal: ShopperSelf) -> OrderOut:
    """Cancel an unpaid order; its stock and coupon use are given back. A paid order answers 409
    `refund_required`: ask for a refund instead (POST /v1/orders/{order_id}/refund-requests)."""
    scope = principal.shopper_id if principal.role == "shopper" else None
    return _order(refund_service.cancel_unpaid_order(session, order_id, body.reason, shopper_id=scope))


def _refund_request(r) -> RefundRequestOut:
    return RefundRequestOut.model_validate(r, from_attributes=True)


@router.post(
    "/orders/{order_id}/refund-requests",
    response_model=RefundRequestOut,
    status_code=status.HTTP_201_CREATED,
)
def request_refund(
    order_id: IntId, body: ReasonIn, session: SessionDep, principal: ShopperSelf
) -> RefundRequestOut:
    """Ask for a paid order to be refunded; customer service completes or rejects the request."""
    scope = principal.shopper_id if principal.role == "shopper" else None
    request = refund_service.request_refund(session, order_id, body.reason, shopper_id=scope)
    audit(session, principal, "refund.requested", "order", order_id, refund_request=request.id)
    return _refund_request(request)


@router.get("/refund-requests/{request_id}", response_model=RefundRequestOut)
def get_refund_request(request_id: IntId, session: SessionDep, principal: ShopperSelf) -> RefundRequestOut:
    scope = principal.shopper_id if principal.role == "shopper" else None
    return _refund_request(refund_service.get_refund_request(session, request_id, shopper_id=scope))


@router.post("/refund-requests/{request_id}/decision", response_model=RefundRequestOut)
def decide_refund(
    request_id: IntId, body: RefundDecisionIn, session: SessionDep, admin: Admin
) -> RefundRequestOut:
    """The back office completes a request (the order is refunded: stock, coupon and quota given back)
    or rejects it (with a note)."""
    if body.decision == "complete":
        request = refund_service.complete_refund(session, request_id, body.note)
    else:
        if not body.note:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a note is required to reject")
        request = refund_service.reject_refund(session, request_id, body.note)
    audit(session, admin, f"refund.{request.status}", "order", request.order_id, refund_request=request_id)
    return _refund_request(request)


@router.post("/orders/{order_id}/payment", response_model=OrderOut)
def confirm_payment(order_id: IntId, body: PaymentIn, session: SessionDep, admin: Admin) -> OrderOut:
    """The payment provider confirms payment (enforces the annual customs limit atomically). Audited, as
    every admin move of an order is: an admin key marking an order paid ships goods nobody paid for."""
    order = order_service.pay_order(session, order_id, body.payment_ref)
    audit(session, admin, "order.payment_confirmed", "order", order_id, payment_ref=body.payment_ref)
    return _order(order)


@router.post("/orders/{order_id}/shipment", response_model=OrderOut)
def ship_order(order_id: IntId, body: ShipIn, session: SessionDep, admin: Admin) -> OrderOut:
    order = order_service.ship_order(session, order_id, body.tracking_no, location=body.location)
    audit(
        session,
        admin,
        "order.shipped",
        "order",
        order_id,
        tracking_no=body.tracking_no,
        location=body.location,
    )
    return _order(order)


@router.post("/orders/{order_id}/tracking", response_model=list[TraceStepOut])
def add_tracking(order_id: IntId, body: TrackingIn, session: SessionDep, admin: Admin) -> list[TraceStepOut]:
    """Record a carrier scan; returns the whole trace."""
    order_service.add_tracking_event(session, order_id, body.status, location=body.location, note=body.note)
    audit(
        session, admin, "order.tracking_added", "order", order_id, status=body.status, location=body.location
    )
    return [
        TraceStepOut(at=s.at, kind=s.kind, status=s.status, detail=s.detail)
        for s in order_service.trace_order(session, order_id)
    ]


@router.post("/orders/{order_id}/status", response_model=OrderOut)
def move_order(order_id: IntId, body: StatusIn, session: SessionDep, admin: Admin) -> OrderOut:
    """Customs clearance, delivery and completion reported by the warehouse and carrier."""
    move = {
        "customs_cleared": order_service.clear_customs,
        "delivered": order_service.deliver_order,
        "completed": order_service.complete_order,
    }[body.status]
    order = move(session, order_id)
    audit(session, admin, "order.status_changed", "order", order_id, status=body.status)
    return _order(order)


@router.post("/orders/{order_id}/refund", response_model=OrderOut)
def refund_order(order_id: IntId, body: ReasonIn, session: SessionDep, admin: Admin) -> OrderOut:
    """Customer service refunds directly (e.g. a parcel lost in transit)."""
    order = order_service.refund_order(session, order_id, body.reason)
    audit(session, admin, "order.refunded", "order", order_id, reason=body.reason)
    return _order(order)


@router.get("/shoppers/{shopper_id}/coupons", response_model=CouponPage)
def shopper_coupons(
    shopper_id: ShopperId,
    session: SessionDep,
    state: StateDep,
    principal: Storefront,
    product_id: Annotated[
        list[str] | None,
        Query(max_length=100, description="The product on the page, or the cart's products."),
    ] = None,
    context: Literal["product", "cart", "any"] = "any",
) -> CouponPage:
    """Coupons this shopper can use now, that apply to the context goods, by expected incremental value."""
    ensure_shopper(principal, shopper_id)
    coupons = coupon_service.eligible_coupons(session, shopper_id)
    lines = []
    if product_id:
        paths = category_paths(session)
        lines = [
            coupon_service.PricedLine(p.product_id, p.merchant_id, paths[p.category_id], p.price)
            for p in sellable_products(session, stored_keys(session, Product, product_id).values())
        ]
    uplift = state.uplift.current
    columns = getattr(uplift.recommender, "feature_names_in_", None)
    features = None
    if columns is not None:  # the served model holds no shopper data: score the features as of now
        features = current_features(session, [shopper_id], utcnow(), "site", list(columns))
    ranked = rank_coupons(coupons, lines, shopper_id, uplift, features)
    return CouponPage(
        shopper_id=shopper_id,
        context=context,
        ranking="uplift" if uplift.recommender is not None else "discount",
        model_version=uplift.version,
        fallback_reason=uplift.fallback_reason,
        coupons=[
            RankedCoupon(
                coupon_id=s.coupon.coupon_id,
                name=s.coupon.name,
                kind=s.coupon.kind,
                value=s.coupon.value,
                cap=s.coupon.cap,
                min_spend=s.coupon.min_spend,
                scope_type=s.coupon.scope_type,
                scope_id=s.coupon.scope_id,
                ends_at=s.coupon.ends_at,
                discount=s.discount,
                uplift=s.uplift,
                expected_incremental_value=s.value,
            )
            for s in ranked
        ],
    )
