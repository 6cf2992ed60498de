"""Coupons, who was granted them, and their redemptions (ORM).

Counters (`used`, `spent`, per-shopper `used`) are only changed by conditional UPDATEs in
`commerce.services.coupons`, which is what keeps limits and budgets exact under concurrency.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from commerce.db import Base
from commerce.sqltypes import CHOSEN_ID_PATTERN, Money, UTCDateTime, skeleton_of, str_enum, utcnow

COUPON_KINDS = ("amount_off", "percent_off")
SCOPE_TYPES = ("platform", "category", "merchant", "product")
ISSUERS = ("platform", "store")
#: A coupon id is a chosen id (`commerce.sqltypes.CHOSEN_ID_PATTERN`).
COUPON_ID_PATTERN = CHOSEN_ID_PATTERN


class Coupon(Base):
    """A discount rule. `value` is CNY for amount_off and a fraction (0.15 = 15%) for percent_off.

    Store coupons carry `merchant_id` and apply only to that merchant's goods. `campaign_id` links a coupon
    to a marketing campaign (table owned by commerce.campaigns; a foreign key, migration 0027);
    `requires_grant` limits it to shoppers with a CouponGrant, and a campaign's coupon always has it.
    """

    __tablename__ = "coupons"
    __table_args__ = (
        CheckConstraint("value > 0", name="value_positive"),
        CheckConstraint("kind <> 'percent_off' OR value <= 1", name="percent_fraction"),
        CheckConstraint("min_spend >= 0", name="min_spend_nonnegative"),
        CheckConstraint("per_shopper_limit >= 1", name="per_shopper_positive"),
        CheckConstraint("usage_limit IS NULL OR used <= usage_limit", name="usage_within_limit"),
        CheckConstraint("budget IS NULL OR spent <= budget", name="spent_within_budget"),
        CheckConstraint("used >= 0 AND spent >= 0", name="counters_nonnegative"),
        CheckConstraint("(issuer = 'store') = (merchant_id IS NOT NULL)", name="store_has_merchant"),
        # else anyone could use a campaign's coupon, its holdout too (migration 0030)
        CheckConstraint("campaign_id IS NULL OR requires_grant", name="campaign_grant_only"),
    )

    coupon_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    coupon_id_skeleton: Mapped[str] = skeleton_of("coupon_id")
    name: Mapped[str] = mapped_column(String(200), default="")
    issuer: Mapped[str] = mapped_column(str_enum("coupon_issuer", ISSUERS), default="platform")
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.merchant_id"), default=None)
    campaign_id: Mapped[str | None] = mapped_column(
        ForeignKey("campaigns.campaign_id"), index=True, default=None
    )
    season_id: Mapped[str | None] = mapped_column(ForeignKey("discount_seasons.season_id"), default=None)
    kind: Mapped[str] = mapped_column(str_enum("coupon_kind", COUPON_KINDS))
    value: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    cap: Mapped[Decimal | None] = mapped_column(Money, default=None)
    min_spend: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    scope_type: Mapped[str] = mapped_column(str_enum("coupon_scope", SCOPE_TYPES), default="platform")
    scope_id: Mapped[str | None] = mapped_column(String(64), default=None)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    usage_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    per_shopper_limit: Mapped[int] = mapped_column(Integer, default=1)
    budget: Mapped[Decimal | None] = mapped_column(Money, default=None)
    requires_grant: Mapped[bool] = mapped_column(Boolean, default=False)
    used: Mapped[int] = mapped_column(Integer, default=0)
    spent: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"Coupon({self.coupon_id!r}, {self.kind}={self.value}, used={self.used})"


class CouponGrant(Base):
    """A shopper was given a coupon (by a campaign or by hand); one grant per coupon and shopper."""

    __tablename__ = "coupon_grants"
    __table_args__ = (UniqueConstraint("coupon_id", "shopper_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    coupon_id: Mapped[str] = mapped_column(ForeignKey("coupons.coupon_id"), index=True)
    shopper_id: Mapped[str] = mapped_column(ForeignKey("shoppers.shopper_id"), index=True)
    campaign_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    channel: Mapped[str] = mapped_column(String(32), default="site")
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CouponShopperUsage(Base):
    """Per-shopper use counter, raised by a conditional UPDATE (`used < per_shopper_limit`)."""

    __tablename__ = "coupon_shopper_usage"
    __table_args__ = (CheckConstraint("used >= 0", name="used_nonnegative"),)

    coupon_id: Mapped[str] = mapped_column(ForeignKey("coupons.coupon_id"), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(ForeignKey("shoppers.shopper_id"), primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)


class CouponRedemption(Base):
    """One use of a coupon on an order; `released_at` is set when a cancellation returns the use."""

    __tablename__ = "coupon_redemptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    coupon_id: Mapped[str] = mapped_column(ForeignKey("coupons.coupon_id"), index=True)
    shopper_id: Mapped[str] = mapped_column(ForeignKey("shoppers.shopper_id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.order_id"), unique=True, default=None)
    amount: Mapped[Decimal] = mapped_column(Money)
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
