"""Merchants, their qualification documents and their review history (ORM)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from commerce.db import Base
from commerce.sqltypes import UTCDateTime, skeleton_of, str_enum, utcnow

MERCHANT_STATUSES = ("pending", "approved", "rejected", "suspended")


class Merchant(Base):
    """An overseas seller. Only `approved` merchants sell; `suspended` ones are hidden until reinstated."""

    __tablename__ = "merchants"
    # A licence is held by one merchant that is not rejected: a rejected application (anyone may apply,
    # naming any licence) must not keep the licence holder from applying (migration 0040).
    __table_args__ = (
        Index(
            "uq_merchants_live_licence",
            "country",
            "licence_no",
            unique=True,
            sqlite_where=text("status <> 'rejected'"),
            postgresql_where=text("status <> 'rejected'"),
        ),
    )

    merchant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    merchant_id_skeleton: Mapped[str] = skeleton_of("merchant_id")
    name: Mapped[str] = mapped_column(String(200))
    name_skeleton: Mapped[str] = skeleton_of("name")
    country: Mapped[str] = mapped_column(String(2))
    licence_no: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(str_enum("merchant_status", MERCHANT_STATUSES), default="pending")
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    brands: Mapped[list[BrandAuthorization]] = relationship(
        back_populates="merchant", cascade="all, delete-orphan", order_by="BrandAuthorization.brand"
    )

    def __repr__(self) -> str:
        return f"Merchant({self.merchant_id!r}, status={self.status!r})"


class BrandAuthorization(Base):
    """A brand the merchant has documents to sell (brand owner or authorized distributor)."""

    __tablename__ = "brand_authorizations"
    __table_args__ = (UniqueConstraint("merchant_id", "brand"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.merchant_id"), index=True)
    brand: Mapped[str] = mapped_column(String(120))
    brand_skeleton: Mapped[str] = skeleton_of("brand")
    document_ref: Mapped[str | None] = mapped_column(String(200), default=None)

    merchant: Mapped[Merchant] = relationship(back_populates="brands")


class MerchantStatusChange(Base):
    """Append-only review log, so past reasons survive later decisions."""

    __tablename__ = "merchant_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.merchant_id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
