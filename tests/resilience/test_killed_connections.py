"""Round 6: the API's PostgreSQL connections ended by the server (`pg_terminate_backend`, what a restart
or a failover does to every connection) between requests and in the middle of one.

Only this test's own connections are ended (found by their application name): the shared server keeps
running for everyone else. Found: no change needed; the tests keep it so.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import text

from commerce.db import make_engine, make_session_factory
from serving.resilience import AUTH_CONNECTIONS, BACKGROUND_CONNECTIONS
from tests.resilience.conftest import POOL_SLOTS, fault_settings, invariants, make_keys, seeded_factory
from tests.serving.conftest import auth

ORDER = {"lines": [{"product_id": "p01", "quantity": 1}]}


@pytest.fixture
def killable(database_url, tmp_path, open_client):
    """(client, keys, direct factory, kill(where)): the API's connections carry an application name of
    their own; `kill(where)` ends those matching the extra SQL condition, returning how many."""
    if not database_url.startswith("postgresql"):
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    factory = seeded_factory(database_url, buyers=3)
    keys = make_keys(factory, buyers=3)
    name = f"crosscart-killed-{uuid.uuid4().hex[:8]}"
    engine = make_engine(
        f"{database_url}&application_name={name}",
        statement_timeout=10,
        pool_size=POOL_SLOTS + AUTH_CONNECTIONS + BACKGROUND_CONNECTIONS,
        max_overflow=0,
        pool_timeout=5,
    )
    client = open_client(fault_settings(tmp_path), make_session_factory(engine))

    def kill(where: str = "") -> int:
        with factory.kw["bind"].connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    f" WHERE application_name = :name {where}"
                ),
                {"name": name},
            ).scalar()

    yield client, keys, factory, kill
    engine.dispose()
    factory.kw["bind"].dispose()


def _serves(client, keys, buyer: str) -> list[int]:
    return [
        client.get("/v1/products/p05", headers=auth(keys["storefront"])).status_code,
        client.get(f"/v1/shoppers/{buyer}/orders", headers=auth(keys[buyer])).status_code,
        client.post(f"/v1/shoppers/{buyer}/orders", json=ORDER, headers=auth(keys[buyer])).status_code,
    ]


def test_connections_killed_between_requests_are_replaced_without_a_refusal(killable):
    client, keys, factory, kill = killable
    assert _serves(client, keys, "b0") == [200, 200, 201]
    assert kill() >= 1  # every pooled connection: the request, key lookup and refresh ones
    assert _serves(client, keys, "b1") == [200, 200, 201]  # the pool's pre-ping replaced them
    assert client.get("/ready").json()["database"] == "up"
    assert invariants(factory)["orders"] == 2


def test_a_connection_killed_mid_request_is_a_503_that_changed_nothing(killable):
    client, keys, factory, kill = killable
    holder = factory.kw["bind"].connect()  # holds p01's stock row: the checkout waits on it, mid-transaction
    response: dict[str, object] = {}
    try:
        holder.execute(text("SELECT quantity FROM stock WHERE product_id = 'p01' FOR UPDATE"))
        checkout = threading.Thread(
            target=lambda: response.setdefault(
                "r", client.post("/v1/shoppers/b2/orders", json=ORDER, headers=auth(keys["b2"]))
            )
        )
        checkout.start()
        killed = 0
        for _ in range(200):  # until the checkout waits for the lock (it has written its order row by then)
            killed = kill("AND wait_event_type = 'Lock'")
            if killed:
                break
            time.sleep(0.05)
        checkout.join(timeout=30)
    finally:
        holder.rollback()
        holder.close()
    assert killed == 1
    r = response["r"]
    assert r.status_code == 503 and r.headers["retry-after"] == "5" and r.json()["code"] == "unavailable"
    assert "psycopg" not in r.text and "terminating" not in r.text  # no internals
    assert invariants(factory)["orders"] == 0 and invariants(factory)["reserved"] == 0  # rolled back
    assert _serves(client, keys, "b2") == [200, 200, 201]  # the next requests succeed
    ready = client.get("/ready").json()  # unavailable from the 503 until a probe or a request succeeds
    assert ready["ready"] is True and ready["database"] == "up"


def test_a_slow_index_build_does_not_outlast_the_idle_transaction_timeout(
    database_url, tmp_path, open_client
):
    """The search refresh wrote the index inside its read transaction and read again after: a build
    longer than PostgreSQL's idle-in-transaction timeout (the API's statement timeout; seen at start on
    a loaded host) ended the connection and the refresh failed with the vocabulary and ads not loaded."""
    if not database_url.startswith("postgresql"):
        pytest.skip("idle_in_transaction_session_timeout is PostgreSQL's")
    factory = seeded_factory(database_url, statement_timeout=1)
    service = open_client(fault_settings(tmp_path), factory).app.state.search
    upsert = service.index.upsert

    def slow_upsert(docs, expected=None):
        time.sleep(1.5)  # a large catalog's first build on a loaded host
        return upsert(docs, expected)

    service.index.upsert = slow_upsert
    service.index.remove(list(service.index.fingerprints()))  # emptied: every document written again
    parser = service.parser
    service.refresh()  # raised InternalError (IdleInTransactionSessionTimeout) at its next query
    assert service.parser is not parser and service.parser.vocabulary.latin_terms  # rebuilt
    factory.kw["bind"].dispose()
