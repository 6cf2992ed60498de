"""A failover that leaves the API on a server taking no writes (a hot standby, or
`default_transaction_read_only` on): PostgreSQL refuses each write with SQLSTATE 25006, which was a 500
on every write while `/ready` answered "up". It is now refused like an outage (503, Retry-After 5,
nothing changed, logged once), `/ready` says `read-only`, and writes succeed again once the server
takes them."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import event, exc
from sqlalchemy.orm import Session

from commerce.orders import Order
from tests.resilience.conftest import fault_settings, faulty_sessions, invariants, make_keys, seeded_factory
from tests.serving.conftest import auth

ORDER = {"lines": [{"product_id": "p01", "quantity": 1}]}


def test_writes_on_a_read_only_server_are_503_and_ready_says_so_until_it_takes_writes(
    database_url, tmp_path, open_client, caplog
):
    if not database_url.startswith("postgresql"):
        pytest.skip("a read-only server after a failover is PostgreSQL's (SQLite has no standby)")
    factory = seeded_factory(database_url, buyers=1)
    keys = make_keys(factory, buyers=1)
    client = open_client(fault_settings(tmp_path), factory)
    order = lambda **h: client.post("/v1/shoppers/b0/orders", json=ORDER, headers={**auth(keys["b0"]), **h})  # noqa: E731
    assert order().status_code == 201

    engine = factory.kw["bind"]

    def standby(dbapi_conn, _record):  # every new connection lands on a server taking no writes
        autocommit, dbapi_conn.autocommit = dbapi_conn.autocommit, True
        dbapi_conn.execute("SET default_transaction_read_only = on")
        dbapi_conn.autocommit = autocommit

    event.listen(engine, "connect", standby)
    engine.dispose()  # the failover: the old primary's connections are gone
    for headers in ({}, {"Idempotency-Key": "ro-1"}):
        refused = order(**headers)  # was a 500 (InternalError: cannot execute ... in a read-only transaction)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "5" and refused.json()["code"] == "unavailable"
        assert "takes no writes" in refused.json()["detail"]
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["database"] == "read-only"  # was 200 "up"
    recs = client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["storefront"]))
    assert recs.status_code == 200  # reads go on from memory
    assert invariants(factory)["orders"] == 1
    outage_lines = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(outage_lines) == 1  # once per outage, not per request

    event.remove(engine, "connect", standby)
    engine.dispose()  # promoted: the server takes writes again
    client.app.state.serving.db_health._checked_at = -1e9  # the next /ready probes at once
    assert client.get("/ready").json()["database"] == "up"
    assert order(**{"Idempotency-Key": "ro-1"}).status_code == 201  # the refused key was freed
    assert invariants(factory)["orders"] == 2
    engine.dispose()


def read_only_at_commit() -> type[Session]:
    """Sessions whose first checkout COMMIT the server refuses as read-only (as when its rows are flushed
    by the COMMIT): it answered, so nothing was kept."""
    refusals = [1]

    class ReadOnlyAtCommit(Session):
        def commit(self) -> None:
            if refusals and any(isinstance(row, Order) for row in self.identity_map.values()):
                refusals.pop()
                self.rollback()
                refused = psycopg.errors.ReadOnlySqlTransaction(
                    "cannot execute INSERT in a read-only transaction"
                )
                raise exc.InternalError("INSERT INTO orders ...", {}, refused)
            super().commit()

    return ReadOnlyAtCommit


def test_a_write_refused_as_read_only_at_commit_is_not_an_unknown_outcome(
    database_url, tmp_path, open_client
):
    factory = seeded_factory(database_url, buyers=1)
    keys = make_keys(factory, buyers=1)
    client = open_client(fault_settings(tmp_path), faulty_sessions(factory, read_only_at_commit()))
    headers = {**auth(keys["b0"]), "Idempotency-Key": "ro-2"}
    first = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    # was 503 outcome_unknown, its key kept for 24 h: the client could never retry with it
    assert first.status_code == 503 and first.json()["code"] == "unavailable", first.text
    retry = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert invariants(factory)["orders"] == 1
    factory.kw["bind"].dispose()
