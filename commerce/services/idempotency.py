"""Idempotency keys (IETF draft "The Idempotency-Key HTTP Header Field"): the first request with a key
claims it, its response is stored, and a replay with the same key and the same request gets the stored
response instead of a second effect. The claim is an INSERT guarded by the (caller, key) unique
constraint, so of two racing requests exactly one runs. Keys expire after `KEY_TTL` for a different
request only: the same request under an expired key still gets the stored response, because the clock
that expired it may have jumped (an NTP step, a VM resumed: a checkout retried a second later ran twice
after a forward jump past 24 h), and a retry of the very same request is never meant to run twice.

Stored bodies are encrypted (AES-GCM, `seal`): a response may hold a secret (a new API key) that the
database otherwise keeps only as a hash, so a dump of the table must not yield it. The key is derived
(HKDF-SHA256) from the caller's raw credential, which the table does not hold (`caller` is a hash of it),
and the Idempotency-Key; the row's (caller, key) is the associated data. An anonymous caller has no
credential: its secret is its client id, which `caller` stores, so its bodies are only obfuscated. Bodies
written before encryption (no `SEALED` prefix) are returned as they are until they expire."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from commerce.idempotency import IdempotentRequest
from commerce.services._util import server_bounded

KEY_TTL = timedelta(hours=24)
SEALED = b"\x00idem1:"  # format and version of an encrypted body; a JSON body never starts with NUL
_NONCE = 12


class Unreadable(Exception):
    """A stored body that this credential cannot decrypt (another caller's, or altered)."""


def _cipher(secret: bytes, key: str) -> AESGCM:
    material = len(secret).to_bytes(4, "big") + secret + key.encode()
    return AESGCM(HKDF(SHA256(), 32, salt=None, info=b"crosscart idempotent response").derive(material))


def _aad(caller: str, key: str) -> bytes:
    return f"{caller}\0{key}".encode()


def seal(secret: bytes, caller: str, key: str, body: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return SEALED + nonce + _cipher(secret, key).encrypt(nonce, body, _aad(caller, key))


def unseal(secret: bytes, caller: str, key: str, stored: bytes) -> bytes:
    """The body `seal` stored; a body from before encryption as it is."""
    if not stored.startswith(SEALED):
        return stored
    nonce, data = stored[len(SEALED) : len(SEALED) + _NONCE], stored[len(SEALED) + _NONCE :]
    try:
        return _cipher(secret, key).decrypt(nonce, data, _aad(caller, key))
    except InvalidTag:
        raise Unreadable(f"idempotency key {key!r}: the stored response does not open") from None


@dataclass(frozen=True)
class Claim:
    """`won`: this request runs; else `stored` is the earlier request (in progress while status is None)."""

    won: bool
    stored: IdempotentRequest | None = None
    mismatch: bool = False  # the key was used for a different request
    id: int | None = None  # the row this request won: what `complete` and `release` end, and only it
    at: datetime | None = None  # when it was claimed (the row's created_at), the row's other half of identity


def claim(factory: sessionmaker[Session], caller: str, key: str, fingerprint: str, at: datetime) -> Claim:
    with factory() as session:
        expired = at - KEY_TTL
        if session.get_bind().dialect.name == "postgresql":  # as `server_bounded`, in the same statement
            expired = func.least(expired, func.now() - KEY_TTL)
        session.execute(
            delete(IdempotentRequest).where(
                IdempotentRequest.caller == caller,
                IdempotentRequest.key == key,
                IdempotentRequest.created_at < expired,
                IdempotentRequest.fingerprint != fingerprint,
            )
        )
        row = IdempotentRequest(caller=caller, key=key, fingerprint=fingerprint, created_at=at)
        session.add(row)
        try:
            session.commit()
            return Claim(won=True, id=row.id, at=at)
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
    factory: sessionmaker[Session],
    claim_id: int,
    caller: str,
    key: str,
    at: datetime,
    status_code: int,
    content_type: str,
    body: bytes,
    secret: bytes,
) -> None:
    """Store the response of claim `claim_id`, `body` sealed under `secret` (the caller's raw credential,
    see the module). Only while that row is still `caller`'s `key` (`_claim_row`)."""
    body = seal(secret, caller, key, body)
    with factory.begin() as session:
        session.execute(
            update(IdempotentRequest)
            .where(_claim_row(claim_id, caller, key, at))
            .values(status_code=status_code, content_type=content_type, body=body)
        )


def _claim_row(claim_id: int, caller: str, key: str, at: datetime) -> ColumnElement[bool]:
    """The row of claim `claim_id`, claimed at `at`, if it is still `caller`'s `key`: SQLite gives a new
    row the id of the deleted last one (no AUTOINCREMENT), so an end retried past `KEY_TTL` (its claim
    purged) matched another caller's claim by the id alone, or the same caller's new claim of the same
    key. A claim made after the purge is at least `KEY_TTL` younger; half of it spares clock skew
    between replicas and any rounding of the stored time."""
    return and_(
        IdempotentRequest.id == claim_id,
        IdempotentRequest.caller == caller,
        IdempotentRequest.key == key,
        IdempotentRequest.created_at < at + KEY_TTL / 2,
    )


def release(factory: sessionmaker[Session], claim_id: int, caller: str, key: str, at: datetime) -> None:
    """Forget claim `claim_id`, whose request failed on the server's side, so that a retry runs again.
    By its row, still unanswered: a release retried after the database came back (serving's
    `UnsettledKeys`) never frees a later claim of the same key."""
    with factory.begin() as session:
        session.execute(
            delete(IdempotentRequest).where(
                _claim_row(claim_id, caller, key, at), IdempotentRequest.status_code.is_(None)
            )
        )


def purge_expired(factory: sessionmaker[Session], at: datetime) -> int:
    """Delete keys older than `KEY_TTL` before `at` (never past the database server's clock,
    `server_bounded`): a purge host whose clock jumped forward deleted the keys other replicas had just
    claimed, and their retries ran again."""
    with factory.begin() as session:
        at = server_bounded(session, at)
        result = session.execute(delete(IdempotentRequest).where(IdempotentRequest.created_at < at - KEY_TTL))
        return result.rowcount or 0
