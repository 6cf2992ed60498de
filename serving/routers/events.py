"""Behaviour events: append-only, idempotent by (API key, event id), batches of up to 1,000."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from anyio import from_thread
from fastapi import APIRouter, status

from commerce.services.events import record_events, stored_shoppers
from serving.deps import (
    SessionDep,
    StateDep,
    Storefront,
    after_commit,
    ensure_events_within,
    ensure_shopper,
)
from serving.schemas.events import EventBatch, EventsAccepted
from serving.sessions import clicks_by_session, live_session_limit

router = APIRouter(tags=["events"])


@router.post("/events", response_model=EventsAccepted, status_code=status.HTTP_202_ACCEPTED)
def post_events(
    batch: EventBatch, session: SessionDep, principal: Storefront, state: StateDep
) -> EventsAccepted:
    """Record a batch atomically (all or nothing). A shopper key may only send its own events. Ids live
    in the calling key's namespace: a retry is a no-op, and no id can shadow a server-logged event.
    Product events with a `session_id` (a 16-64 character token) also update that live session, for
    this key (a shopper key keeps its newest SHOPPER_LIVE_SESSIONS). An event stamped more than
    `max_event_age_days` ago is refused (422 `ts_too_old`); a throttled key over its event quota
    (`event_rate_limit_per_minute`) gets 429, nothing recorded and no id looked up; with not one event
    left, before its body is read (serving.idempotency)."""
    ensure_events_within(from_thread.run(state.limiter.check_events, principal, len(batch.events)))
    events = [e.model_dump() for e in batch.events]
    # each distinct id read once, by the database, and checked as it is stored: `ｓ1` is s1's, and
    # record_events stores what was checked (no second reading)
    shoppers = stored_shoppers(session, (e["shopper_id"] for e in events))
    for shopper_id in shoppers.values():
        ensure_shopper(principal, shopper_id)
    max_age = timedelta(days=state.settings.max_event_age_days)
    inserted = record_events(session, events, client=principal.key_id, max_age=max_age, shoppers=shoppers)
    limit = live_session_limit(principal.role)
    # Redis is written once the events are committed: inside the transaction a Redis answering 0.3 s late
    # held SQLite's write lock that long per batch (every other write waited: 151 -> 9 in 4 s), and a
    # refused commit left the visit updated with events that were not kept.
    later = partial(after_commit, session)
    tracked = state.sessions.record(principal.key_id, clicks_by_session(batch.events), limit, later)
    return EventsAccepted(
        session_events=tracked,
        received=len(batch.events),
        inserted=inserted,
        duplicates=len(batch.events) - inserted,
        received_at=datetime.now(UTC),
    )
