"""Idempotency keys (IETF draft "The Idempotency-Key HTTP Header Field"): the first request with a key
claims it, its response is stored, and a replay with the same key and the same request gets the stored
response instead of a second effect. The claim is an INSERT guarded by the (caller, key) unique
constraint, so of two racing requests exactly one runs. Keys expire after `KEY_TTL`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from commerce.idempotency import IdempotentRequest

KEY_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Claim:
    """`won`: this request runs; else `stored` is the earlier request (in progress while status is None)."""

    won: bool
    stored: IdempotentRequest | None = None
    mismatch: bool = False  # the key was used for a different request


def claim(factory: sessionmaker[Session], caller: str, key: str, fingerprint: str, at: datetime) -> Claim:
    with factory() as session:
        session.execute(
            delete(IdempotentRequest).where(
                IdempotentRequest.caller == caller,
                IdempotentRequest.key == key,
                IdempotentRequest.created_at < at - KEY_TTL,
            )
        )
        session.add(IdempotentRequest(caller=caller, key=key, fingerprint=fingerprint, created_at=at))
        try:
            session.commit()
            return Claim(won=True)
        except IntegrityError:
            session.rollback()
    stored = lookup(factory, caller, key)
    if stored is None:  # released between our insert and the read: the caller may simply retry
        return Claim(won=False)
    return Claim(won=False, stored=stored, mismatch=stored.fingerprint != fingerprint)


def lookup(factory: sessionmaker[Session], caller: str, key: str) -> IdempotentRequest | None:
    with factory() as session:
        return session.scalar(
            select(IdempotentRequest).where(IdempotentRequest.caller == caller, IdempotentRequest.key == key)
        )


def complete(
    factory: sessionmaker[Session], caller: str, key: str, status_code: int, content_type: str, body: bytes
) -> None:
    with factory.begin() as session:
        row = session.scalar(
            select(IdempotentRequest).where(IdempotentRequest.caller == caller, IdempotentRequest.key == key)
        )
        if row is not None:
            row.status_code, row.content_type, row.body = status_code, content_type, body


def release(factory: sessionmaker[Session], caller: str, key: str) -> None:
    """Forget a claim whose request failed on the server's side, so that a retry runs again."""
    with factory.begin() as session:
        session.execute(
            delete(IdempotentRequest).where(IdempotentRequest.caller == caller, IdempotentRequest.key == key)
        )


def purge_expired(factory: sessionmaker[Session], at: datetime) -> int:
    with factory.begin() as session:
        result = session.execute(delete(IdempotentRequest).where(IdempotentRequest.created_at < at - KEY_TTL))
        return result.rowcount or 0
