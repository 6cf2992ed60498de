"""PostgreSQL ending a checkout's transaction for contention: a deadlock with another writer (40P01) or
a statement past the server's `statement_timeout` (57014) while it waits for a row. Both were taken for
an outage: 503 with `Retry-After: 5`, "database unavailable" logged and the database reported down for
one waiting statement. The transaction was rolled back, so nothing was kept and a retry is safe: like a
row lock past `lock_timeout`, they are now "busy" (503, `Retry-After: 1`, the database up)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import create_engine, exc, text

from tests.resilience.conftest import fault_settings, invariants, make_keys, seeded_factory
from tests.serving.conftest import auth

ORDER = {"lines": [{"product_id": "p01", "quantity": 1}, {"product_id": "p03", "quantity": 1}]}
LOCK = "SELECT id FROM stock WHERE product_id = :p FOR UPDATE"


def wait_for_lock_waiter(engine, pending, blocker_pid: int, timeout: float = 20.0) -> None:
    """Until a backend waits for a lock `blocker_pid` holds (the checkout `pending`): any backend waiting
    on any lock could be another test's, on the other xdist worker, and the cycle was then never made."""
    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE :blocker = ANY(pg_blocking_pids(pid))")
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while conn.execute(waiting, {"blocker": blocker_pid}).scalar() == 0:
            conn.rollback()  # pg_stat_activity is read once per transaction
            assert not pending.done(), pending.result().text
            assert time.monotonic() < deadline, "the checkout never waited for the lock"
            time.sleep(0.02)


def assert_busy_not_down(client, response, caplog) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"  # was 5: the database called unavailable
    assert not any("database unavailable" in r.getMessage() for r in caplog.records)
    client.app.state.serving.db_health._checked_at = -1e9
    assert client.get("/ready").json()["database"] == "up"


@pytest.fixture
def pg_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("deadlocks and statement timeouts are PostgreSQL's (SQLite serializes writers)")
    return database_url


def test_a_deadlock_with_another_writer_is_busy_and_the_retry_succeeds(
    pg_only, tmp_path, open_client, caplog
):
    factory = seeded_factory(pg_only, buyers=1)
    keys = make_keys(factory, buyers=1)
    client = open_client(fault_settings(tmp_path), factory)
    engine = factory.kw["bind"]
    order = lambda: client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(keys["b0"]))  # noqa: E731
    with create_engine(pg_only).connect() as other, ThreadPoolExecutor(1) as pool:
        with other.begin():
            other.exec_driver_sql(
                "SET LOCAL deadlock_timeout = '30s'"
            )  # the checkout's backend finds the cycle
            other.execute(text(LOCK), {"p": "p03"})
            pending = pool.submit(order)  # locks p01, then waits for p03
            wait_for_lock_waiter(engine, pending, other.exec_driver_sql("SELECT pg_backend_pid()").scalar())
            other.execute(text(LOCK), {"p": "p01"})  # a cycle: PostgreSQL ends the checkout's transaction
        response = pending.result(timeout=30)
    assert_busy_not_down(client, response, caplog)
    assert invariants(factory)["orders"] == 0  # rolled back: the retry is safe
    assert order().status_code == 201
    engine.dispose()


def test_a_statement_past_the_statement_timeout_is_busy(pg_only, tmp_path, open_client, caplog):
    # 3 s: it is the idle-in-transaction timeout too (1 s ended connections once on a loaded host)
    factory = seeded_factory(pg_only, buyers=1, statement_timeout=3)
    keys = make_keys(factory, buyers=1)
    client = open_client(fault_settings(tmp_path), factory)
    engine = factory.kw["bind"]
    with create_engine(pg_only).connect() as other:
        with other.begin():
            other.execute(text(LOCK), {"p": "p01"})  # held past the API's statement_timeout
            response = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(keys["b0"]))
    assert_busy_not_down(client, response, caplog)
    assert invariants(factory)["orders"] == 0
    engine.dispose()


def test_a_key_recheck_ended_by_the_statement_timeout_serves_the_cached_key(
    database_url, tmp_path, open_client, caplog
):
    """A cached key's re-check that PostgreSQL cancels (57014, a slow lookup) keeps serving the key from
    memory, as an outage did, without calling the database down (as calling it busy first refused it)."""
    factory = seeded_factory(database_url)
    keys = make_keys(factory)
    client = open_client(fault_settings(tmp_path), factory)
    state = client.app.state.serving
    read = lambda: client.get("/v1/rankings", headers=auth(keys["storefront"]))  # noqa: E731
    assert read().status_code == 200  # the key is cached
    state.principals.ttl = 0  # every use re-checks it

    async def cancelled(key, deadline):
        canceled = psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        raise exc.OperationalError("SELECT ... FROM api_keys", {}, canceled)

    state.key_lookups.lookup = cancelled
    assert read().status_code == 200  # was 503 busy once contention was told apart from outages
    assert not any("database unavailable" in r.getMessage() for r in caplog.records)
    assert state.db_health.up
    factory.kw["bind"].dispose()


def test_a_statement_an_operator_cancels_is_logged_and_retried_later_not_busy(
    pg_only, tmp_path, open_client, caplog
):
    """`pg_cancel_backend` ends a statement with the same SQLSTATE as `statement_timeout` (57014), so it
    was answered "busy, retry in 1 s" and left no line. It was stopped on purpose: it is logged and
    answered `Retry-After: 5`, the database still up and nothing kept."""
    factory = seeded_factory(pg_only, buyers=1)
    keys = make_keys(factory, buyers=1)
    client = open_client(fault_settings(tmp_path), factory)
    engine = factory.kw["bind"]
    order = lambda: client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(keys["b0"]))  # noqa: E731
    blocked = "SELECT pid FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"
    with create_engine(pg_only).connect() as other, ThreadPoolExecutor(1) as pool:
        with other.begin():
            holder = other.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            other.execute(text(LOCK), {"p": "p01"})
            pending = pool.submit(order)  # waits for p01
            deadline = time.monotonic() + 20
            with engine.connect() as admin:
                while not (pids := admin.execute(text(blocked), {"holder": holder}).scalars().all()):
                    admin.rollback()
                    assert not pending.done() and time.monotonic() < deadline, "never waited for the lock"
                    time.sleep(0.02)
                assert admin.execute(text("SELECT pg_cancel_backend(:p)"), {"p": pids[0]}).scalar()
            response = pending.result(timeout=30)
    assert response.status_code == 503 and response.headers["retry-after"] == "5", response.text
    assert "cancelled this request's statement" in response.json()["detail"]
    assert any("cancelled by a cancel request" in r.getMessage() for r in caplog.records)
    assert not any("database unavailable" in r.getMessage() for r in caplog.records)
    client.app.state.serving.db_health._checked_at = -1e9
    assert client.get("/ready").json()["database"] == "up"
    assert invariants(factory)["orders"] == 0
    assert order().status_code == 201
    engine.dispose()


def test_a_cancelled_idempotency_claim_is_answered_as_a_cancel_not_busy(
    pg_only, tmp_path, open_client, caplog
):
    """The Idempotency-Key claim (its INSERT waits while another request's claim of the key is not yet
    committed) answered a cancel as contention, "busy, retry in 1 s" without a line, while the same
    cancel inside the request is logged and `Retry-After: 5` (`serving.errors`): one answer for both."""
    from serving.idempotency import _caller

    factory = seeded_factory(pg_only, buyers=1)
    keys = make_keys(factory, buyers=1)
    client = open_client(fault_settings(tmp_path), factory)
    engine = factory.kw["bind"]
    headers = {**auth(keys["b0"]), "Idempotency-Key": "k-cancelled"}
    caller = _caller({"headers": [(b"authorization", headers["Authorization"].encode())]})[0]
    order = lambda: client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)  # noqa: E731
    blocked = "SELECT pid FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"
    with create_engine(pg_only).connect() as other, ThreadPoolExecutor(1) as pool:
        with other.begin():
            holder = other.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            other.execute(
                text("INSERT INTO idempotent_requests (caller, key, fingerprint, created_at)"
                     " VALUES (:c, 'k-cancelled', 'other', now())"),
                {"c": caller},
            )  # fmt: skip
            pending = pool.submit(order)  # its claim waits for this uncommitted one
            deadline = time.monotonic() + 20
            with engine.connect() as admin:
                while not (pids := admin.execute(text(blocked), {"holder": holder}).scalars().all()):
                    admin.rollback()
                    assert not pending.done() and time.monotonic() < deadline, "never waited for the key"
                    time.sleep(0.02)
                assert admin.execute(text("SELECT pg_cancel_backend(:p)"), {"p": pids[0]}).scalar()
            response = pending.result(timeout=30)
            other.rollback()
    assert response.status_code == 503 and response.headers["retry-after"] == "5", response.text
    assert "cancelled this request's statement" in response.json()["detail"]
    assert any("cancelled by a cancel request" in r.getMessage() for r in caplog.records)
    assert invariants(factory)["orders"] == 0
    assert order().status_code == 201  # the key is free: the cancelled claim kept nothing
    engine.dispose()
