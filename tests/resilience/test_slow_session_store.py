"""Live sessions are written to their store after the events' transaction commits, not inside it.

A Redis answering 0.3 s late (under the store's 0.5 s timeout, so no fallback) held each event batch's
transaction open that long: on SQLite the write lock, so every other write of the API waited behind it
(plain event batches beside session ones on a 3-slot app: 151 -> 9 answered in 4 s, p50 14 -> 316 ms,
the slowest 2.5 s; after: 27, 93 ms, 0.34 s, the rest being the slots the session batches hold). And a
batch the database refused at COMMIT (a full disk) still updated the visit: session pages followed
events that were never kept."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy import exc, func, make_url, select
from sqlalchemy.orm import Session

from bench.faultkit import TcpProxy
from commerce.events import BehaviorEvent
from tests.resilience.conftest import fault_settings, faulty_sessions, make_keys, seeded_factory
from tests.serving.conftest import auth

REDIS_URL = "redis://127.0.0.1:6379/14"
PROXY_PORT = 18920
SESSION = "slow-store-visit-0001"


def _event(event_id: str, product: str = "p02", session_id: str | None = SESSION) -> dict:
    event = {"event_id": event_id, "ts": datetime.now(UTC).isoformat(), "shopper_id": "s2",
             "event_type": "view", "product_id": product}  # fmt: skip
    return event | ({"session_id": session_id} if session_id else {})


def _visit(client, keys) -> list[str]:
    page = client.get(f"/v1/sessions/{SESSION}/recommendations", headers=auth(keys["storefront"]))
    assert page.status_code == 200
    return page.json()["session"]["items"]


@pytest.fixture
def slow_redis():
    """A TcpProxy to the shared Redis (database 14) that holds each answer 0.3 s."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.5)
    try:
        client.flushdb()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    proxy = TcpProxy(PROXY_PORT, "127.0.0.1", 6379)
    proxy.delay = 0.3
    yield f"redis://127.0.0.1:{PROXY_PORT}/14"
    proxy.close()
    client.flushdb()
    client.close()


def test_a_slow_session_store_never_holds_the_events_transaction(tmp_path, open_client, slow_redis):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    client = open_client(fault_settings(tmp_path, redis_url=slow_redis), factory)
    store = client.app.state.serving.sessions.shared
    add, seen = store.add, []

    def add_watched(*args, **kwargs):
        """What another writer meets while the visit is written to Redis."""
        other = sqlite3.connect(make_url(str(factory.kw["bind"].url)).database, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")  # was: database is locked (the batch's transaction held it)
            other.execute("ROLLBACK")
            seen.append(
                other.execute(f"SELECT count(*) FROM events WHERE session_id = '{SESSION}'").fetchone()[0]
            )
        except sqlite3.OperationalError as exc:
            seen.append(str(exc))
        finally:
            other.close()
        return add(*args, **kwargs)

    store.add = add_watched
    posted = client.post("/v1/events", json={"events": [_event("e1")]}, headers=auth(keys["storefront"]))
    assert posted.status_code == 202 and posted.json()["session_events"] == 1
    assert seen == [1]  # the write lock free, the event already committed
    assert _visit(client, keys) == ["p02"]  # followed at once, as before
    factory.kw["bind"].dispose()


class FullAtCommitSession(Session):
    """The disk fills as the batch's COMMIT writes SQLite's WAL (where a real full disk meets a
    transaction whose pages fit in memory until then): refused, nothing kept."""

    def commit(self) -> None:
        if self.scalar(select(func.count()).where(BehaviorEvent.session_id == SESSION)):  # this batch's
            self.rollback()
            full = sqlite3.OperationalError("database or disk is full")
            full.sqlite_errorname = "SQLITE_FULL"
            raise exc.OperationalError("COMMIT", {}, full)
        super().commit()


def test_a_batch_the_database_refuses_at_commit_leaves_the_visit_as_it_was(tmp_path, open_client):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    client = open_client(fault_settings(tmp_path), faulty_sessions(factory, FullAtCommitSession))
    posted = client.post(
        "/v1/events", json={"events": [_event("e1", "p04")]}, headers=auth(keys["storefront"])
    )
    assert posted.status_code == 503
    assert _visit(client, keys) == []  # was ["p04"]: the page followed an event never kept
    factory.kw["bind"].dispose()
