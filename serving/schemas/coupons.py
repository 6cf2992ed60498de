"""Coupon management shapes. Money is Decimal (CNY); a percent_off `value` is a fraction (0.15 = 15%)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from commerce.coupons import COUPON_ID_PATTERN
from serving.schemas.base import Instant, RequestModel

Kind = Literal["amount_off", "percent_off"]
Scope = Literal["platform", "category", "merchant", "product"]


class CouponTerms(RequestModel):
    """Terms shared by creation and edits."""

    name: str = Field(default="", max_length=200)
    kind: Kind
    value: Decimal = Field(
        gt=0, max_digits=12, decimal_places=4, description="CNY, or a fraction for percent_off."
    )
    cap: Decimal | None = Field(
        default=None, gt=0, max_digits=12, decimal_places=2, description="Largest discount."
    )
    min_spend: Decimal = Field(default=Decimal("0"), ge=0, max_digits=12, decimal_places=2)
    scope_type: Scope = "platform"
    scope_id: str | None = Field(default=None, min_length=1, max_length=64)
    per_shopper_limit: int = Field(default=1, ge=1, le=1_000_000)
    usage_limit: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Total uses; none = unlimited."
    )
    budget: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2)
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    requires_grant: bool = Field(default=False, description="Only shoppers granted it (e.g. by a campaign).")
    campaign_id: str | None = Field(default=None, min_length=1, max_length=64)


class CouponCreate(CouponTerms):
    coupon_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=COUPON_ID_PATTERN,
        description="Starts with a letter, digit or _ (never a formula in a CSV export). Default: generated.",
    )


class CouponEdit(RequestModel):
    """Fields to change; only a coupon nobody holds or has used can be edited (409 otherwise)."""

    name: str | None = Field(default=None, max_length=200)
    kind: Kind | None = None
    value: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=4)
    cap: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2)
    min_spend: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
    scope_type: Scope | None = None
    scope_id: str | None = Field(default=None, min_length=1, max_length=64)
    per_shopper_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    usage_limit: int | None = Field(default=None, ge=1, le=2**31 - 1)
    budget: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2)
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    requires_grant: bool | None = None
    campaign_id: str | None = Field(default=None, min_length=1, max_length=64)


class CouponOut(BaseModel):
    coupon_id: str
    name: str
    issuer: str
    merchant_id: str | None
    campaign_id: str | None
    kind: Kind
    value: Decimal
    cap: Decimal | None
    min_spend: Decimal
    scope_type: Scope
    scope_id: str | None
    per_shopper_limit: int
    usage_limit: int | None
    budget: Decimal | None
    starts_at: datetime | None
    ends_at: datetime | None
    requires_grant: bool
    used: int
    spent: Decimal
    created_at: datetime


class CouponList(BaseModel):
    items: list[CouponOut]
    total: int
    limit: int
    offset: int
