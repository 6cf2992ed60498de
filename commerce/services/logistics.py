"""Logistics partners and delivery estimates per fulfillment mode."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.bulk import insert_ignore
from commerce.catalog import FULFILLMENT_MODES
from commerce.errors import NotFound, ValidationError
from commerce.logistics import LogisticsPartner
from commerce.services._util import required_text
from commerce.sqltypes import as_utc

#: Seed partners: bonded goods ship from a domestic bonded zone (1-3 days), direct mail from abroad (4-7).
DEFAULT_PARTNERS = (
    {
        "partner_id": "cainiao-bonded",
        "name": "Cainiao Bonded",
        "mode": "bonded",
        "min_days": 1,
        "max_days": 2,
    },
    {"partner_id": "sf-bonded", "name": "SF Express Bonded", "mode": "bonded", "min_days": 1, "max_days": 3},
    {
        "partner_id": "cainiao-global",
        "name": "Cainiao Global Direct",
        "mode": "direct_mail",
        "min_days": 4,
        "max_days": 7,
    },
    {
        "partner_id": "ems-intl",
        "name": "EMS International",
        "mode": "direct_mail",
        "min_days": 5,
        "max_days": 7,
    },
)


def seed_default_partners(session: Session) -> None:
    """Insert the default partners unless they exist (idempotent)."""
    insert_ignore(session, LogisticsPartner.__table__, [dict(p) for p in DEFAULT_PARTNERS], ["partner_id"])


def create_partner(
    session: Session, partner_id: str, name: str, mode: str, min_days: int, max_days: int
) -> LogisticsPartner:
    if mode not in FULFILLMENT_MODES:
        raise ValidationError(f"mode must be one of {FULFILLMENT_MODES}", code="invalid_fulfillment")
    if not 0 <= min_days <= max_days:
        raise ValidationError("need 0 <= min_days <= max_days", code="invalid_days")
    partner = LogisticsPartner(
        partner_id=required_text(partner_id, "partner_id", 64),
        name=required_text(name, "name", 200),
        mode=mode,
        min_days=min_days,
        max_days=max_days,
    )
    session.add(partner)
    session.flush()
    return partner


def list_partners(session: Session, mode: str | None = None) -> list[LogisticsPartner]:
    stmt = select(LogisticsPartner).order_by(LogisticsPartner.min_days, LogisticsPartner.partner_id)
    if mode is not None:
        stmt = stmt.where(LogisticsPartner.mode == mode)
    return list(session.scalars(stmt))


def choose_partner(session: Session, mode: str, partner_id: str | None = None) -> LogisticsPartner:
    """The requested partner (must serve `mode`), else the fastest one for `mode`."""
    if partner_id is not None:
        partner = session.get(LogisticsPartner, partner_id)
        if partner is None:
            raise NotFound(f"unknown logistics partner {partner_id!r}", code="partner_not_found")
        if partner.mode != mode:
            raise ValidationError(f"partner {partner_id!r} does not handle {mode} goods", code="partner_mode")
        return partner
    partners = list_partners(session, mode)
    if not partners:
        raise NotFound(f"no logistics partner handles {mode} goods", code="partner_not_found")
    return partners[0]


def estimate_delivery(partner: LogisticsPartner, at: datetime) -> tuple[datetime, datetime]:
    """Earliest and latest delivery time for an order placed at `at`."""
    at = as_utc(at)
    return at + timedelta(days=partner.min_days), at + timedelta(days=partner.max_days)
