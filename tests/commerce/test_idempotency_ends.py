"""An Idempotency-Key claim is ended (its answer stored, or released) by its row id, and retried in the
background while the database is away (`serving.idempotency.UnsettledKeys`). SQLite gives a new row the id
of the deleted last one (no AUTOINCREMENT): an end that waited past `KEY_TTL`, its claim purged meanwhile,
matched on the id alone, freed another caller's claim (that request could then run twice) or stored this
request's sealed answer under it. The ends now match the claim's caller and key too."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from commerce.idempotency import IdempotentRequest
from commerce.services import idempotency
from commerce.sqltypes import utcnow


def test_a_late_end_of_a_purged_claim_leaves_the_claim_now_in_its_row_alone(factory):
    now = utcnow()
    late = idempotency.claim(factory, "key:late", "k1", "f1", now - idempotency.KEY_TTL - timedelta(hours=1))
    assert idempotency.purge_expired(factory, now) == 1
    other = idempotency.claim(factory, "key:other", "k2", "f2", now)
    with factory.begin() as s:
        if s.get_bind().dialect.name == "sqlite":
            assert other.id == late.id  # the purged row's id, given again
        else:  # PostgreSQL's sequence never gives an id twice: the row takes it as SQLite would
            s.execute(update(IdempotentRequest).where(IdempotentRequest.id == other.id).values(id=late.id))

    idempotency.complete(
        factory, late.id, "key:late", "k1", late.at, 201, "application/json", b"{}", b"secret"
    )
    idempotency.release(factory, late.id, "key:late", "k1", late.at)

    with factory() as s:
        row = s.scalar(select(IdempotentRequest))
    assert (row.caller, row.key, row.status_code, row.body) == ("key:other", "k2", None, None)
    idempotency.release(factory, late.id, "key:other", "k2", other.at)  # its own end still ends it
    with factory() as s:
        assert s.scalar(select(IdempotentRequest)) is None


def test_a_late_end_leaves_the_same_callers_new_claim_of_the_same_key_alone(factory):
    """The caller and key match too when the same caller uses the same key again after `KEY_TTL`: a late
    release freed the new request's claim (a retry of it could run twice), a late answer was replayed
    for it (review, session 20). The claim's time tells the two apart."""
    now = utcnow()
    late = idempotency.claim(factory, "key:a", "k1", "f1", now - idempotency.KEY_TTL - timedelta(hours=1))
    assert idempotency.purge_expired(factory, now) == 1
    again = idempotency.claim(factory, "key:a", "k1", "f1", now)
    with factory.begin() as s:
        if s.get_bind().dialect.name == "sqlite":
            assert again.id == late.id
        else:
            s.execute(update(IdempotentRequest).where(IdempotentRequest.id == again.id).values(id=late.id))

    idempotency.complete(factory, late.id, "key:a", "k1", late.at, 201, "application/json", b"{}", b"secret")
    idempotency.release(factory, late.id, "key:a", "k1", late.at)

    with factory() as s:
        row = s.scalar(select(IdempotentRequest))
    assert (row.caller, row.key, row.status_code, row.body) == ("key:a", "k1", None, None)
    idempotency.complete(factory, late.id, "key:a", "k1", again.at, 201, "application/json", b"{}", b"secret")
    with factory() as s:
        assert s.scalar(select(IdempotentRequest.status_code)) == 201  # its own end still ends it
