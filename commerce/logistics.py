"""Logistics partners, shipments and tracking events (ORM)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from commerce.catalog import FULFILLMENT_MODES
from commerce.db import Base
from commerce.sqltypes import UTCDateTime, str_enum, utcnow


class LogisticsPartner(Base):
    """A carrier for one fulfillment mode, with its delivery window in days."""

    __tablename__ = "logistics_partners"
    __table_args__ = (CheckConstraint("min_days >= 0 AND max_days >= min_days", name="days_range"),)

    partner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(str_enum("partner_mode", FULFILLMENT_MODES))
    min_days: Mapped[int] = mapped_column(Integer)
    max_days: Mapped[int] = mapped_column(Integer)


class Shipment(Base):
    __tablename__ = "shipments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.order_id"), unique=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("logistics_partners.partner_id"))
    tracking_no: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    events: Mapped[list[TrackingEvent]] = relationship(order_by="TrackingEvent.id")


class TrackingEvent(Base):
    """A step of a parcel's journey; with the order status history it traces every order end to end."""

    __tablename__ = "tracking_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"), index=True)
    status: Mapped[str] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(String(200), default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
