"""Logistics partners, shipments and tracking events (ORM)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    or_,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from commerce.catalog import FULFILLMENT_MODES
from commerce.db import Base
from commerce.sqltypes import Money, UTCDateTime, skeleton_of, str_enum, utcnow

#: Destination zones: province groups that share a rate and a transit time from a given warehouse.
ZONES = {
    "east": ("Shanghai", "Jiangsu", "Zhejiang", "Anhui"),
    "south": ("Guangdong", "Fujian", "Guangxi", "Hainan"),
    "north": ("Beijing", "Tianjin", "Hebei", "Shandong", "Liaoning", "Jilin", "Heilongjiang", "Shanxi"),
    "central": ("Hubei", "Henan", "Hunan", "Jiangxi"),
    "west": ("Sichuan", "Chongqing", "Shaanxi", "Yunnan", "Guizhou", "Gansu", "Ningxia", "Qinghai"),
    "remote": ("Xinjiang", "Tibet", "Inner Mongolia"),
}
ZONE_OF_REGION = {region: zone for zone, regions in ZONES.items() for region in regions}
SERVICE_LEVELS = ("economy", "standard", "express")


#: Steps between zones on the domestic road network (symmetric): a lane one step long ships like East
#: China to central China, two steps like East to the west.
_ZONE_STEPS = {
    ("east", "south"): 1, ("east", "north"): 1, ("east", "central"): 1, ("east", "west"): 2,
    ("south", "north"): 2, ("south", "central"): 1, ("south", "west"): 1,
    ("north", "central"): 1, ("north", "west"): 2, ("central", "west"): 1,
}  # fmt: skip
_LANE_OF_STEPS = {0: "east", 1: "central", 2: "west"}


def zone_of(region: str) -> str:
    """The rate zone of a province-level region; unknown regions ship as `remote` (the dearest zone)."""
    return ZONE_OF_REGION.get(region, "remote")


def lane_zone(mode: str, origin_region: str | None, region: str) -> str:
    """The zone a parcel is rated and timed as: rate cards and the delivery model describe lanes from
    the East China bonded zones, so a bonded warehouse elsewhere ships as the East-China lane of the same
    length (its own zone ships as `east`, a neighbouring zone as `central`). Direct mail comes from
    abroad and a bonded warehouse without a known region is in East China: the destination's zone."""
    dest = zone_of(region)
    if mode != "bonded" or origin_region is None or dest == "remote":
        return dest
    origin = zone_of(origin_region)
    if origin in ("east", "remote"):
        return dest if origin == "east" else "remote"
    steps = 0 if origin == dest else _ZONE_STEPS.get((origin, dest)) or _ZONE_STEPS[(dest, origin)]
    return _LANE_OF_STEPS[steps]


class LogisticsPartner(Base):
    """A carrier for one fulfillment mode, with its delivery window in days."""

    __tablename__ = "logistics_partners"
    __table_args__ = (CheckConstraint("min_days >= 0 AND max_days >= min_days", name="days_range"),)

    partner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(str_enum("partner_mode", FULFILLMENT_MODES))
    min_days: Mapped[int] = mapped_column(Integer)
    max_days: Mapped[int] = mapped_column(Integer)


class Warehouse(Base):
    """Where stock is held: a bonded zone in China (bonded goods) or an overseas warehouse (direct mail),
    usually run by a logistics partner. Stock rows name their warehouse; a location a merchant names that
    is not registered yet becomes that merchant's own, for the product's mode (`usable_by`)."""

    __tablename__ = "warehouses"

    warehouse_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    warehouse_id_skeleton: Mapped[str] = skeleton_of("warehouse_id")
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(str_enum("warehouse_mode", FULFILLMENT_MODES))
    #: The partner operating it; None for a merchant's own location.
    partner_id: Mapped[str | None] = mapped_column(ForeignKey("logistics_partners.partner_id"), default=None)
    #: Province of a bonded zone (sets the lane to each destination); None: East China or abroad.
    region: Mapped[str | None] = mapped_column(String(64), default=None)
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    #: The merchant whose own location it is: only its goods are stocked there, and only it sees the
    #: location. None: a partner's or platform location any merchant may use (and legacy shared ones).
    owner_merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.merchant_id"), default=None)


def usable_by(merchant_id: str) -> ColumnElement[bool]:
    """The one rule for which locations a merchant may pick (stock, list, see): platform locations (no
    owner) and its own. Another merchant's own location is where that merchant keeps goods: its
    business, neither to be stocked nor named to anyone else."""
    owner = Warehouse.owner_merchant_id
    return or_(owner.is_(None), owner == merchant_id)


class RateCard(Base):
    """A partner's negotiated price to one destination zone: first weight, then each additional unit.

    cost = (first_price + additional units x additional_price) x (1 + surcharge_rate) x (1 - discount_rate),
    with the weight charged as the larger of actual and volumetric weight (`commerce.services.logistics`).
    """

    __tablename__ = "rate_cards"
    __table_args__ = (
        UniqueConstraint("partner_id", "zone"),
        CheckConstraint("first_weight_g > 0 AND additional_unit_g > 0", name="weights_positive"),
        CheckConstraint("first_price >= 0 AND additional_price >= 0", name="prices_nonnegative"),
        CheckConstraint(
            "surcharge_rate >= 0 AND discount_rate >= 0 AND discount_rate < 1", name="rates_range"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("logistics_partners.partner_id"), index=True)
    zone: Mapped[str] = mapped_column(str_enum("rate_zone", tuple(ZONES)))
    service_level: Mapped[str] = mapped_column(str_enum("service_level", SERVICE_LEVELS))
    first_weight_g: Mapped[int] = mapped_column(Integer)
    first_price: Mapped[Decimal] = mapped_column(Money)
    additional_unit_g: Mapped[int] = mapped_column(Integer)
    additional_price: Mapped[Decimal] = mapped_column(Money)
    surcharge_rate: Mapped[Decimal] = mapped_column(Numeric(6, 4), default=Decimal("0"))
    discount_rate: Mapped[Decimal] = mapped_column(Numeric(6, 4), default=Decimal("0"))


class ShippingRule(Base):
    """How a merchant ships: always one partner, or the cheapest partner that arrives within N days
    with 80% confidence (by the delivery-time model), falling back to the fastest."""

    __tablename__ = "shipping_rules"
    __table_args__ = (
        CheckConstraint(
            "(partner_id IS NOT NULL) OR (max_days IS NOT NULL AND max_days > 0)", name="rule_complete"
        ),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.merchant_id"), primary_key=True)
    partner_id: Mapped[str | None] = mapped_column(ForeignKey("logistics_partners.partner_id"), default=None)
    max_days: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


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
