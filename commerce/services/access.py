"""API keys: create, authenticate, revoke, list.

Keys are 256-bit random tokens shown once at creation; only their SHA-256 is stored, so a leaked database
does not leak usable keys (a slow hash buys nothing against a high-entropy secret).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from commerce.access import KEY_PREFIX, ROLES, ApiKey
from commerce.merchants import Merchant
from commerce.services.pagination import Page, paginate
from commerce.shoppers import Shopper


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
    # A key bound to nobody would pass object-level checks for whoever later takes that id.
    if shopper_id is not None and session.get(Shopper, shopper_id) is None:
        raise ValueError(f"no shopper {shopper_id!r}")
    if merchant_id is not None and session.get(Merchant, merchant_id) is None:
        raise ValueError(f"no merchant {merchant_id!r}")
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


def authenticate_many(session: Session, plaintexts: list[str]) -> dict[str, ApiKey]:
    """The live keys among `plaintexts`, by plaintext, in one query however many are asked about."""
    by_hash = {hash_key(p): p for p in plaintexts if p.startswith(KEY_PREFIX)}
    if not by_hash:
        return {}
    found = session.scalars(select(ApiKey).where(ApiKey.key_hash.in_(list(by_hash))))
    return {by_hash[key.key_hash]: key for key in found if key.revoked_at is None}


def revoke_api_key(session: Session, key_id: int) -> ApiKey | None:
    """Revoke a key (kept for audit); None when no such key exists."""
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        session.flush()
    return key


def end_console_sessions(session: Session, key_id: int) -> None:
    """Sign every console session of the key out: cookies carry the generation they were issued under,
    and a session whose generation is no longer the key's is refused (on every replica: it is a row)."""
    session.execute(
        update(ApiKey).where(ApiKey.id == key_id).values(console_generation=ApiKey.console_generation + 1)
    )


def list_api_keys(
    session: Session, *, role: str | None = None, limit: int = 50, offset: int = 0
) -> Page[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if role is not None:
        query = query.where(ApiKey.role == role)
    return paginate(session, query, limit=limit, offset=offset)
