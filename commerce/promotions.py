"""Discount seasons, limited-time sale prices and paid promotion slots (ORM)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from commerce.db import Base
from commerce.sqltypes import Money, UTCDateTime, utcnow


class DiscountSeason(Base):
    """A named period (e.g. Double 11) grouping promotions; `discount`: site-wide fraction off."""

    __tablename__ = "discount_seasons"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="window_order"),
        CheckConstraint("discount >= 0 AND discount < 1", name="discount_range"),
    )

    season_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    discount: Mapped[Decimal] = mapped_column(Numeric(6, 4), default=Decimal("0"))


class PriceWindow(Base):
    """A limited-time sale: `price` replaces the list price in [starts_at, ends_at)."""

    __tablename__ = "price_windows"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="window_order"),
        CheckConstraint("price > 0", name="price_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"), index=True)
    season_id: Mapped[str | None] = mapped_column(ForeignKey("discount_seasons.season_id"), default=None)
    price: Mapped[Decimal] = mapped_column(Money)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SponsoredPlacement(Base):
    """A promotion slot a merchant bought for a product: platform revenue from promotion."""

    __tablename__ = "sponsored_placements"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="window_order"),
        CheckConstraint("spend >= 0", name="spend_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.merchant_id"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"), index=True)
    slot: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    spend: Mapped[Decimal] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
