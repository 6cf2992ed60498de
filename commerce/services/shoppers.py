"""Shopper accounts and customs identity. API-facing views never include the ID number or its digest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.errors import Conflict, ValidationError
from commerce.identity import id_digest, normalize_id_number
from commerce.services._util import get_or_404, required_text
from commerce.services.pagination import Page, paginate
from commerce.shoppers import Shopper, ShopperIdentity
from commerce.sqltypes import utcnow


def create_shopper(session: Session, shopper_id: str, region: str, segment: str | None = None) -> Shopper:
    shopper_id = required_text(shopper_id, "shopper_id", 64)
    if session.get(Shopper, shopper_id) is not None:
        raise Conflict(f"shopper {shopper_id!r} already exists", code="duplicate_shopper")
    shopper = Shopper(shopper_id=shopper_id, region=required_text(region, "region", 64), segment=segment)
    session.add(shopper)
    session.flush()
    return shopper


def get_shopper(session: Session, shopper_id: str) -> Shopper:
    return get_or_404(session, Shopper, shopper_id, "shopper")


def list_shoppers(
    session: Session, *, region: str | None = None, limit: int = 50, offset: int = 0
) -> Page[Shopper]:
    stmt = select(Shopper).order_by(Shopper.shopper_id)
    if region is not None:
        stmt = stmt.where(Shopper.region == region)
    return paginate(session, stmt, limit=limit, offset=offset)


@dataclass(frozen=True)
class IdentityView:
    """What the API may show about a customs identity."""

    shopper_id: str
    masked_name: str
    id_last4: str
    verified_at: datetime


def register_identity(
    session: Session, shopper_id: str, real_name: str, id_number: str, *, identity_key: str
) -> IdentityView:
    """Validate the ID number (MOD 11-2); store only its HMAC and last 4. Replaces an earlier identity."""
    shopper = get_or_404(session, Shopper, shopper_id, "shopper")
    name = required_text(real_name, "real_name", 100)
    number = normalize_id_number(id_number)
    digest = id_digest(number, identity_key)
    identity = shopper.identity or ShopperIdentity(shopper_id=shopper.shopper_id)
    identity.real_name, identity.id_digest, identity.id_last4 = name, digest, number[-4:]
    identity.verified_at = utcnow()
    session.add(identity)
    session.flush()
    return identity_view(identity)


def identity_view(identity: ShopperIdentity) -> IdentityView:
    return IdentityView(identity.shopper_id, identity.masked_name, identity.id_last4, identity.verified_at)


def get_identity(session: Session, shopper_id: str) -> IdentityView:
    shopper = get_or_404(session, Shopper, shopper_id, "shopper")
    if shopper.identity is None:
        raise ValidationError(f"shopper {shopper_id!r} has no verified identity", code="identity_required")
    return identity_view(shopper.identity)
