"""API keys: create, authenticate, revoke, list; and the console sessions signed in with them.

Keys are 256-bit random tokens shown once at creation; only their SHA-256 is stored, so a leaked database
does not leak usable keys (a slow hash buys nothing against a high-entropy secret). Console session ids
are stored the same way.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from commerce.access import KEY_PREFIX, ROLES, ApiKey, ConsoleSession
from commerce.merchants import Merchant
from commerce.services._util import CLOCK_SKEW, server_bounded, stored_key
from commerce.services.pagination import Page, paginate
from commerce.shoppers import Shopper


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _bound_id(session: Session, model: type, value: str, what: str) -> str:
    """The id of the existing `model` row a key is bound to (`stored_key`). A key bound to nobody would
    pass object-level checks for whoever later takes that id."""
    key = stored_key(session, model, value)
    if session.get(model, key) is None:
        raise ValueError(f"no {what} {value!r}")
    return key


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
    reach is always explicit. Each is read as every other id (`stored_key`) and the key bound to the id of
    the row: `ｓ1` or `s1 ` was a 422 "no shopper" though s1 exists.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if (role == "shopper") != (shopper_id is not None):
        raise ValueError("a shopper_id is required for role 'shopper' and refused for every other role")
    if (role == "merchant") != (merchant_id is not None):
        raise ValueError("a merchant_id is required for role 'merchant' and refused for every other role")
    if shopper_id is not None:
        shopper_id = _bound_id(session, Shopper, shopper_id, "shopper")
    if merchant_id is not None:
        merchant_id = _bound_id(session, Merchant, merchant_id, "merchant")
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
    """Revoke a key (kept for audit) and delete its console sessions; None when no such key exists."""
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        end_console_sessions(session, key_id)
        session.flush()
    return key


#: The console sessions one key keeps (its browsers): a sign-in beyond them ends the key's oldest. Any key
#: may sign in (a shopper's, the storefront's), and each sign-in without the cookie kept its session for
#: its whole lifetime: one address signing in at the anonymous rate left 28,800 live rows in 8 hours.
CONSOLE_SESSIONS_PER_KEY = 10


def start_console_session(
    session: Session, key_id: int, lifetime: timedelta, now: datetime
) -> tuple[str, list[str]]:
    """A new console session of the key, valid for `lifetime`: its id (for the cookie, never stored) and
    the hashes of the key's sessions it ended. Every expired session is deleted first, so rows never
    outlive their cookies by more than the time to the next sign-in, and the key's sessions beyond its
    newest `CONSOLE_SESSIONS_PER_KEY` end (refused by the database on every replica at once; the caller
    has the serving layer forget them, which may hold them through an outage)."""
    cutoff = server_bounded(session, now)
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= cutoff))
    session_id = secrets.token_urlsafe(32)
    id_hash = hash_key(session_id)
    others = (ConsoleSession.key_id == key_id, ConsoleSession.id_hash != id_hash)
    newest = (
        select(ConsoleSession.id_hash)
        .where(*others)
        .order_by(ConsoleSession.created_at.desc(), ConsoleSession.id_hash)
        .limit(CONSOLE_SESSIONS_PER_KEY - 1)
    )
    session.add(ConsoleSession(id_hash=id_hash, key_id=key_id, created_at=now, expires_at=now + lifetime))
    session.flush()
    ended = session.scalars(
        delete(ConsoleSession)
        .where(*others, ConsoleSession.id_hash.not_in(newest))
        .returning(ConsoleSession.id_hash)
    )
    return session_id, list(ended)


def console_session_key(session: Session, session_id: str, now: datetime) -> ApiKey | None:
    """The live key an unexpired, not signed-out console session belongs to; None otherwise. A session
    dated more than `CLOCK_SKEW` ahead of `now` was started on a clock that ran ahead: its expiry is as
    far ahead, so it is refused rather than left to outlive its lifetime by the jump."""
    return session.scalar(
        select(ApiKey)
        .join(ConsoleSession, ConsoleSession.key_id == ApiKey.id)
        .where(
            ConsoleSession.id_hash == hash_key(session_id),
            ConsoleSession.expires_at > now,
            ConsoleSession.created_at <= now + CLOCK_SKEW,
            ApiKey.revoked_at.is_(None),
        )
    )


def end_console_session(session: Session, session_id: str) -> None:
    """Sign one browser out: its session row goes, so a copy of its cookie is refused on every replica;
    the key's other sessions stay."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == hash_key(session_id)))


def end_console_sessions(session: Session, key_id: int) -> int:
    """Sign every console session of the key out (an admin's "sign out everywhere"); how many ended."""
    return session.execute(delete(ConsoleSession).where(ConsoleSession.key_id == key_id)).rowcount


def list_api_keys(
    session: Session, *, role: str | None = None, limit: int = 50, offset: int = 0
) -> Page[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if role is not None:
        query = query.where(ApiKey.role == role)
    return paginate(session, query, limit=limit, offset=offset)
