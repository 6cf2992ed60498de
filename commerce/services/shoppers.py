"""Shopper accounts and customs identity. API-facing views never include the ID number or its digest."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, insert, select, true, update
from sqlalchemy.orm import Session

from commerce.errors import Conflict, ValidationError
from commerce.identity import Keyring, normalize_id_number
from commerce.orders import AnnualSpend, Order
from commerce.services._util import chosen_id, get_or_404, required_text, stored_key
from commerce.services.pagination import Page, paginate
from commerce.shoppers import Shopper, ShopperIdentity
from commerce.sqltypes import utcnow
from commerce.tax import ANNUAL_LIMIT


def create_shopper(session: Session, shopper_id: str, region: str, segment: str | None = None) -> Shopper:
    shopper_id = chosen_id(
        session, shopper_id, Shopper.shopper_id, "shopper_id", true()
    )  # no API path: operators
    if session.get(Shopper, shopper_id) is not None:
        raise Conflict(f"shopper {shopper_id!r} already exists", code="duplicate_shopper")
    shopper = Shopper(shopper_id=shopper_id, region=required_text(region, "region", 64), segment=segment)
    session.add(shopper)
    session.flush()
    return shopper


def get_shopper(session: Session, shopper_id: str) -> Shopper:
    """The shopper a client names by its id, as stored or in any look-alike form (`stored_key`)."""
    return get_or_404(session, Shopper, stored_key(session, Shopper, shopper_id), "shopper")


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
    session: Session, shopper_id: str, real_name: str, id_number: str, *, keyring: Keyring
) -> IdentityView:
    """Validate the ID number (MOD 11-2); store only its HMAC under the current key and the last 4.
    Replaces an earlier identity. A person hashed under an older key moves to the current one first."""
    shopper = get_or_404(session, Shopper, shopper_id, "shopper")
    name = required_text(real_name, "real_name", 100)
    number = normalize_id_number(id_number)
    rekey_people(session, keyring, [number])
    identity = shopper.identity or ShopperIdentity(shopper_id=shopper.shopper_id)
    identity.real_name, identity.id_digest, identity.id_last4 = name, keyring.digest(number), number[-4:]
    identity.key_version, identity.verified_at = keyring.version, utcnow()
    session.add(identity)
    session.flush()
    return identity_view(identity)


def rekey_people(session: Session, keyring: Keyring, numbers: Iterable[str]) -> int:
    """Move every row of these people still under an older identity key to the current key: their
    identities, orders and annual spend (a year's amounts merged, capped at the limit), so one person
    never becomes two across a key rotation. Only a person's own number can do this: digests cannot be
    reversed. Returns how many old digests moved."""
    moves = {old: keyring.digest(n) for n in numbers for old in keyring.previous_digests(n).values()}
    if not moves:
        return 0
    present: set[str] = set()
    olds = sorted(moves)
    for start in range(0, len(olds), 500):
        chunk = olds[start : start + 500]
        for column in (ShopperIdentity.id_digest, AnnualSpend.identity_digest, Order.identity_digest):
            present.update(session.scalars(select(column).where(column.in_(chunk)).distinct()))
    session.flush()
    for old in sorted(present):  # one order of locks for every rotation
        new = moves[old]
        session.execute(
            update(ShopperIdentity)
            .where(ShopperIdentity.id_digest == old)
            .values(id_digest=new, key_version=keyring.version)
        )
        session.execute(update(Order).where(Order.identity_digest == old).values(identity_digest=new))
        spends = session.execute(
            select(AnnualSpend.year, AnnualSpend.amount)
            .where(AnnualSpend.identity_digest.in_((old, new)))
            .order_by(AnnualSpend.identity_digest, AnnualSpend.year)
            .with_for_update()
        ).all()
        by_year: dict[int, Decimal] = {}
        for year, amount in spends:
            by_year[year] = min(by_year.get(year, Decimal(0)) + amount, ANNUAL_LIMIT)
        session.execute(delete(AnnualSpend).where(AnnualSpend.identity_digest.in_((old, new))))
        if by_year:
            session.execute(
                insert(AnnualSpend),
                [{"identity_digest": new, "year": y, "amount": a} for y, a in sorted(by_year.items())],
            )
    session.expire_all()
    return len(present)


def identity_view(identity: ShopperIdentity) -> IdentityView:
    return IdentityView(identity.shopper_id, identity.masked_name, identity.id_last4, identity.verified_at)


def get_identity(session: Session, shopper_id: str) -> IdentityView:
    shopper = get_or_404(session, Shopper, shopper_id, "shopper")
    if shopper.identity is None:
        raise ValidationError(f"shopper {shopper_id!r} has no verified identity", code="identity_required")
    return identity_view(shopper.identity)
