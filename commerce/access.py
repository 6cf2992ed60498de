"""API keys: who may call the API, in which role, on whose behalf.

Keys are 256-bit random tokens shown once at creation; only their SHA-256 is stored, so a leaked database
does not leak usable keys (a slow hash buys nothing against a high-entropy secret). A key is bound to a
shopper (role `shopper`) or a merchant (role `merchant`), which is what object-level checks compare against.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from commerce.db import Base
from commerce.sqltypes import UTCDateTime

ROLES = ("storefront", "shopper", "merchant", "marketer", "data_scientist", "admin")
KEY_PREFIX = "cc_"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    hint: Mapped[str] = mapped_column(String(12))  # first characters, to recognise a key in listings
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    shopper_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    merchant_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id}, hint={self.hint!r}, role={self.role!r})"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_key(
    session: Session,
    role: str,
    *,
    name: str = "",
    shopper_id: str | None = None,
    merchant_id: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its plaintext, which is never recoverable afterwards.

    A shopper key needs `shopper_id`, a merchant key `merchant_id`; other roles take neither, so a key's
    reach is always explicit.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if (role == "shopper") != (shopper_id is not None):
        raise ValueError("a shopper_id is required for role 'shopper' and refused for every other role")
    if (role == "merchant") != (merchant_id is not None):
        raise ValueError("a merchant_id is required for role 'merchant' and refused for every other role")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        key_hash=hash_key(plaintext),
        hint=plaintext[:10],
        name=name or role,
        role=role,
        shopper_id=shopper_id,
        merchant_id=merchant_id,
        created_at=datetime.now(UTC),
    )
    session.add(key)
    session.flush()
    return key, plaintext


def authenticate(session: Session, plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext`, or None (unknown or revoked)."""
    if not plaintext.startswith(KEY_PREFIX):
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if key is None or key.revoked_at is not None:
        return None
    return key


def revoke_api_key(session: Session, key_id: int) -> ApiKey | None:
    """Revoke a key (kept for audit); None when no such key exists."""
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        session.flush()
    return key


def list_api_keys(session: Session, *, role: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if role is not None:
        query = query.where(ApiKey.role == role)
    return list(session.scalars(query))
