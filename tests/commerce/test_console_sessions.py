"""Console sessions on SQLite and PostgreSQL: signing out ends one browser's session, an admin ends all of
a key's, revocation ends them too, and expired rows are deleted as sessions start."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from commerce.access import ConsoleSession
from commerce.db import transaction
from commerce.services.access import (
    authenticate,
    console_session_key,
    create_api_key,
    end_console_session,
    end_console_sessions,
    hash_key,
    revoke_api_key,
    start_console_session,
)
from tests.commerce.conftest import NOW

HOURS_8 = timedelta(hours=8)


def _rows(factory) -> int:
    with transaction(factory) as s:
        return s.scalar(select(func.count()).select_from(ConsoleSession))


def _live(factory, session_id: str, now=NOW) -> bool:
    with transaction(factory) as s:
        return console_session_key(s, session_id, now) is not None


def test_signing_out_ends_only_that_browsers_session(factory):
    with transaction(factory) as s:
        key, plaintext = create_api_key(s, "marketer")
        other_key, _ = create_api_key(s, "admin")
        laptop, _ = start_console_session(s, key.id, HOURS_8, NOW)
        phone, _ = start_console_session(s, key.id, HOURS_8, NOW)
        admin, _ = start_console_session(s, other_key.id, HOURS_8, NOW)
    assert laptop != phone and _live(factory, laptop) and _live(factory, phone)
    with transaction(factory) as s:
        end_console_session(s, laptop)
    assert not _live(factory, laptop)  # a copy of the laptop's cookie names a row that is gone
    assert _live(factory, phone) and _live(factory, admin)  # the key's other browser stays signed in
    with transaction(factory) as s:
        assert end_console_sessions(s, key.id) == 1  # "sign out everywhere": the phone too
        assert authenticate(s, plaintext) is not None  # the key itself keeps working
    assert not _live(factory, phone) and _live(factory, admin)


def test_a_revoked_key_has_no_session_left(factory):
    with transaction(factory) as s:
        key, _ = create_api_key(s, "marketer")
        session_id, _ = start_console_session(s, key.id, HOURS_8, NOW)
        revoke_api_key(s, key.id)
    assert not _live(factory, session_id) and _rows(factory) == 0


def test_expired_sessions_are_refused_and_deleted_as_sessions_start(factory):
    """Rows do not pile up: every sign-in deletes the sessions that have expired, of any key."""
    with transaction(factory) as s:
        key, _ = create_api_key(s, "marketer")
        old = [start_console_session(s, key.id, HOURS_8, NOW + timedelta(minutes=i))[0] for i in range(5)]
    later = NOW + HOURS_8 + timedelta(minutes=2)
    assert not _live(factory, old[0], later) and _live(factory, old[4], later)
    with transaction(factory) as s:
        fresh, _ = start_console_session(s, key.id, HOURS_8, later)
    assert _rows(factory) == 3  # the two sessions not yet expired and the new one
    assert _live(factory, fresh, later) and _live(factory, old[3], later)


def test_a_sign_in_past_the_keys_cap_names_the_sessions_it_ended(factory):
    """The key's oldest sessions past `CONSOLE_SESSIONS_PER_KEY` end, and their hashes come back (for the
    serving layer to forget: it may hold them in memory through an outage); nothing else is named."""
    with transaction(factory) as s:
        key, _ = create_api_key(s, "marketer")
        started = [start_console_session(s, key.id, HOURS_8, NOW + timedelta(minutes=i)) for i in range(12)]
    assert [ended for _, ended in started[:10]] == [[]] * 10
    assert [ended for _, ended in started[10:]] == [[hash_key(started[0][0])], [hash_key(started[1][0])]]
    assert not _live(factory, started[1][0]) and _live(factory, started[2][0]) and _rows(factory) == 10
