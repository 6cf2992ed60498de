"""Order, checkout and coupon shapes. The buyer's declared identity never appears here."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from commerce.catalog import Fulfillment
from commerce.orders import OrderStatus
from commerce.services.checkout import MAX_UNITS_PER_PRODUCT
from serving.schemas.base import RequestModel


class CartLineIn(RequestModel):
    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=MAX_UNITS_PER_PRODUCT)


class CheckoutIn(RequestModel):
    lines: list[CartLineIn] = Field(min_length=1, max_length=100)
    coupon_id: str | None = Field(default=None, min_length=1, max_length=64)
    partner_id: str | None = Field(default=None, min_length=1, max_length=64)


class OrderLineOut(BaseModel):
    line_no: int
    product_id: str
    merchant_id: str
    quantity: int
    list_price: Decimal
    unit_price: Decimal
    gross: Decimal
    discount: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal


class OrderOut(BaseModel):
    order_id: int | None = Field(description="None for a quote, which is never stored.")
    shopper_id: str
    status: OrderStatus
    fulfillment: Fulfillment
    partner_id: str
    tax_regime: str
    coupon_id: str | None
    goods_total: Decimal
    discount_total: Decimal
    tax_total: Decimal
    total: Decimal
    lines: list[OrderLineOut]
    created_at: datetime
    paid_at: datetime | None
    delivery_earliest: datetime
    delivery_latest: datetime


class PaymentIn(RequestModel):
    payment_ref: str = Field(min_length=1, max_length=100, description="The payment provider's reference.")


class ReasonIn(RequestModel):
    reason: str = Field(min_length=1, max_length=2000)


class RefundDecisionIn(RequestModel):
    decision: Literal["complete", "reject"]
    note: str | None = Field(default=None, max_length=2000, description="Required to reject.")


class RefundRequestOut(BaseModel):
    id: int
    order_id: int
    shopper_id: str
    status: Literal["requested", "completed", "rejected"]
    reason: str
    requested_at: datetime
    resolved_at: datetime | None
    resolution_note: str | None


class ShipIn(RequestModel):
    tracking_no: str = Field(min_length=1, max_length=64)
    location: str | None = Field(default=None, max_length=200)


class StatusIn(RequestModel):
    status: Literal["customs_cleared", "delivered", "completed"]


class TrackingIn(RequestModel):
    status: str = Field(min_length=1, max_length=64)
    location: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class TraceStepOut(BaseModel):
    at: datetime
    kind: Literal["status", "tracking"]
    status: str
    detail: str | None


class RankedCoupon(BaseModel):
    coupon_id: str
    name: str
    kind: Literal["amount_off", "percent_off"]
    value: Decimal
    cap: Decimal | None
    min_spend: Decimal
    scope_type: str
    scope_id: str | None
    ends_at: datetime | None
    discount: Decimal | None = Field(description="CNY off the context goods (None without context goods).")
    uplift: float | None = Field(description="Predicted rise in purchase probability from this coupon.")
    expected_incremental_value: float | None = Field(
        description="uplift x (context goods value - discount), CNY; the ranking key when a model is loaded."
    )


class CouponPage(BaseModel):
    shopper_id: str
    context: Literal["product", "cart", "any"]
    ranking: Literal["uplift", "discount"] = Field(
        description="`uplift` with the uplift model; `discount` (largest saving first) without it."
    )
    model_version: str | None
    fallback_reason: str | None
    coupons: list[RankedCoupon]
