"""Merchant onboarding and review: pending -> approved | rejected; approved <-> suspended."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import false, select, update
from sqlalchemy.orm import Session, selectinload

from commerce.errors import Conflict, InvalidState, ValidationError
from commerce.merchants import MERCHANT_STATUSES, BrandAuthorization, Merchant, MerchantStatusChange
from commerce.services._util import (
    chosen_id,
    country_code,
    get_or_404,
    licence_number,
    new_id,
    not_confusable,
    required_text,
    stored_key,
    unlike_stored,
    unmixed,
)
from commerce.services.pagination import Page, paginate
from commerce.sqltypes import utcnow

#: Review actions: the status each one requires and the status it sets.
ACTIONS = {
    "approve": ("pending", "approved"),
    "reject": ("pending", "rejected"),
    "suspend": ("approved", "suspended"),
    "reinstate": ("suspended", "approved"),
}


#: Whose merchant rows an application's look-alike refusal may name: none. Anyone may apply, without a
#: key, and a merchant's record (its name, id, brand authorizations) is its own and the admins' only; a
#: skeleton is looser than a name, so naming the stored one told a prober how another company spells it.
UNSEEN = false()


@dataclass(frozen=True)
class MerchantApplication:
    """What an overseas seller submits: company, business licence and brand authorizations."""

    name: str
    country: str
    licence_no: str
    brands: list[str] = field(default_factory=list)
    merchant_id: str | None = None


def _brand(session: Session, value: str) -> str:
    """A brand a merchant is authorized for: `Sоlden` (a Cyrillic `о`) was an authorization of its own,
    and its products looked like Solden's to shoppers and on the review page; so was `АСМЕ`, all
    Cyrillic, beside `ACME` (`unlike_stored`; the same brand held by another merchant is no look-alike).
    The look-alike is named to no one (`UNSEEN`)."""
    brand = unmixed(required_text(value, "brand", 120), "brand")
    return unlike_stored(session, brand, BrandAuthorization.brand, "brand", UNSEEN)


def apply(session: Session, application: MerchantApplication) -> Merchant:
    """Register a merchant as `pending`. Needs at least one brand authorization."""
    name = unmixed(required_text(application.name, "name", 200), "name")
    # a whole-word look-alike (`АСМЕ` in Cyrillic beside `ACME`) is refused; the same name is not
    unlike_stored(session, name, Merchant.name, "name", UNSEEN)
    licence = licence_number(application.licence_no)
    country = country_code(application.country)
    brands = sorted({_brand(session, b) for b in application.brands})
    for i, brand in enumerate(brands):  # `ACME` and `АСМЕ` in one application
        not_confusable(brand, brands[:i], "brand")
    if not brands:
        raise ValidationError("at least one brand authorization is required", code="missing_brands")
    held = select(Merchant).where(
        Merchant.country == country, Merchant.licence_no == licence, Merchant.status != "rejected"
    )  # a rejected application holds no licence (uq_merchants_live_licence)
    if session.scalar(held):
        raise Conflict(f"licence {licence!r} ({country}) is already registered", code="duplicate_licence")
    merchant_id = chosen_id(
        session, application.merchant_id or new_id("m"), Merchant.merchant_id, "merchant_id", UNSEEN
    )
    if session.get(Merchant, merchant_id) is not None:
        raise Conflict(f"merchant {merchant_id!r} already exists", code="duplicate_merchant")
    merchant = Merchant(
        merchant_id=merchant_id, name=name, country=country, licence_no=licence, status="pending"
    )
    merchant.brands = [BrandAuthorization(brand=b) for b in brands]
    session.add(merchant)
    session.add(MerchantStatusChange(merchant_id=merchant_id, from_status=None, to_status="pending"))
    session.flush()
    return merchant


def _review(session: Session, merchant_id: str, action: str, reason: str | None) -> Merchant:
    merchant = get_or_404(session, Merchant, merchant_id, "merchant")
    current, (required, to) = merchant.status, ACTIONS[action]
    if current != required:
        raise InvalidState(f"cannot {action} merchant {merchant_id!r}: it is {current}, not {required}")
    # Conditional update: two reviewers acting at once cannot both win.
    done = session.execute(
        update(Merchant.__table__)
        .where(Merchant.merchant_id == merchant_id, Merchant.status == current)
        .values(status=to, status_reason=reason, reviewed_at=utcnow())
    ).rowcount
    if done != 1:
        raise InvalidState(f"merchant {merchant_id!r} changed status concurrently; retry")
    session.add(
        MerchantStatusChange(merchant_id=merchant_id, from_status=current, to_status=to, reason=reason)
    )
    session.flush()
    session.refresh(merchant)
    return merchant


def approve(session: Session, merchant_id: str) -> Merchant:
    return _review(session, merchant_id, "approve", None)


def reject(session: Session, merchant_id: str, reason: str) -> Merchant:
    return _review(session, merchant_id, "reject", required_text(reason, "reason", 2000))


def suspend(session: Session, merchant_id: str, reason: str) -> Merchant:
    """Hide the merchant's products from checkout and recommendations until reinstated."""
    return _review(session, merchant_id, "suspend", required_text(reason, "reason", 2000))


def reinstate(session: Session, merchant_id: str, reason: str | None = None) -> Merchant:
    return _review(session, merchant_id, "reinstate", reason)


def add_brand(session: Session, merchant_id: str, brand: str, document_ref: str | None = None) -> Merchant:
    merchant = get_or_404(session, Merchant, merchant_id, "merchant")
    brand = _brand(session, brand)
    if any(b.brand == brand for b in merchant.brands):
        raise Conflict(f"merchant {merchant_id!r} already holds brand {brand!r}", code="duplicate_brand")
    merchant.brands.append(BrandAuthorization(brand=brand, document_ref=document_ref))
    session.flush()
    return merchant


def get_merchant(session: Session, merchant_id: str) -> Merchant:
    """The merchant a client names by its id, as stored or in any look-alike form (`stored_key`)."""
    return get_or_404(session, Merchant, stored_key(session, Merchant, merchant_id), "merchant")


def list_merchants(
    session: Session, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> Page[Merchant]:
    stmt = select(Merchant).options(selectinload(Merchant.brands)).order_by(Merchant.merchant_id)
    if status is not None:
        if status not in MERCHANT_STATUSES:
            raise ValidationError(f"unknown merchant status {status!r}", code="invalid_status")
        stmt = stmt.where(Merchant.status == status)
    return paginate(session, stmt, limit=limit, offset=offset)


def recently_reviewed(session: Session, limit: int = 20) -> list[Merchant]:
    """The merchants decided last (approved, rejected or suspended), the latest first: the review page's
    "Recently decided" read the first 100 merchants by id, so a decision on a later id never showed."""
    stmt = (
        select(Merchant)
        .where(Merchant.status != "pending", Merchant.reviewed_at.is_not(None))
        .order_by(Merchant.reviewed_at.desc(), Merchant.merchant_id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def history(session: Session, merchant_id: str) -> list[MerchantStatusChange]:
    get_or_404(session, Merchant, merchant_id, "merchant")
    return list(
        session.scalars(
            select(MerchantStatusChange)
            .where(MerchantStatusChange.merchant_id == merchant_id)
            .order_by(MerchantStatusChange.id)
        )
    )
