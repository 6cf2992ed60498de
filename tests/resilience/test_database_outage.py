"""Issue 10 items 2 and 3: a lost database is a 503 with Retry-After, logged once per outage; /ready turns
false while /health stays up; reads keep answering from memory, and keys seen valid keep working.

The database "goes away" by cutting a TCP proxy between the API and the shared PostgreSQL server, which
itself keeps running for everyone else.
"""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import exc
from sqlalchemy.orm import Session

from commerce.access import ApiKey
from commerce.db import make_session_factory, transaction
from commerce.services.access import hash_key
from tests.resilience.conftest import (
    fault_settings,
    faulty_sessions,
    invariants,
    make_keys,
    proxied_engine,
    seeded_factory,
)
from tests.serving.conftest import auth

PROXY_PORT = 18101  # issue 10's port range
ORDER = {"lines": [{"product_id": "p01", "quantity": 1}]}


@pytest.fixture
def outage(database_url, tmp_path, open_client):
    """(client, keys, direct factory, proxy): the API reaches PostgreSQL only through the proxy."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the outage is simulated on PostgreSQL's TCP connection")
    factory = seeded_factory(database_url, buyers=4)
    keys = make_keys(factory, buyers=4)
    proxy, engine = proxied_engine(database_url, PROXY_PORT, statement_timeout=5)
    client = open_client(fault_settings(tmp_path), make_session_factory(engine))
    client.app.state.serving.principals.ttl = 0.3  # entries go stale quickly: the outage outlives them
    yield client, keys, factory, proxy
    engine.dispose()
    proxy.close()
    factory.kw["bind"].dispose()


def _reads(client, key: str) -> list[int]:
    return [
        client.get("/v1/shoppers/s1/recommendations", headers=auth(key)).status_code,
        client.get("/v1/products/p05/similar", headers=auth(key)).status_code,
        client.get("/v1/rankings", headers=auth(key)).status_code,
        client.get("/v1/products", params={"q": "Product"}, headers=auth(key)).status_code,
    ]


def test_outage_is_503_once_logged_reads_from_memory_and_recovery(outage, caplog):
    client, keys, factory, proxy = outage
    assert _reads(client, keys["storefront"]) == [200] * 4
    assert client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(keys["b0"])).status_code == 201
    assert client.get("/ready").json()["database"] == "up"

    proxy.cut()
    time.sleep(0.4)  # every cached key is past its freshness: each must be re-checked, and cannot be
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="serving"):
        refused = [
            client.post("/v1/shoppers/b1/orders", json=ORDER, headers=auth(keys["b1"])) for _ in range(5)
        ]
        assert _reads(client, keys["storefront"]) == [200] * 4  # stale-while-error key, memory reads
        unseen = client.get("/v1/rankings", headers=auth("cc_never-seen-before"))
        admin_read = client.get("/v1/api-keys", headers=auth(keys["admin"]))
    for r in refused + [unseen, admin_read]:
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "unavailable" and int(r.headers["retry-after"]) > 0
    outage_logs = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(outage_logs) == 1  # once per outage, not per request
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert ready.json()["database"] == "unavailable"

    proxy.restore()
    time.sleep(1.1)  # the readiness probe runs at most once a second
    assert client.get("/ready").json()["database"] == "up"
    assert client.post("/v1/shoppers/b2/orders", json=ORDER, headers=auth(keys["b2"])).status_code == 201
    state = invariants(factory)
    assert state["orders"] == 2  # b0 and b2: none of the refused checkouts left anything behind
    assert state["reserved"] == state["pending_units"] == 2

    # Revocations propagate again now that the database answers.
    with transaction(factory) as s:
        key = s.query(ApiKey).filter_by(key_hash=hash_key(keys["storefront"])).one()
        key.revoked_at = key.created_at
    time.sleep(0.4)
    assert client.get("/v1/rankings", headers=auth(keys["storefront"])).status_code == 401


class AckLostSession(Session):
    """COMMIT reaches the database, its acknowledgement does not (the connection drops right then)."""

    def commit(self) -> None:
        super().commit()
        raise exc.OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))


def test_a_commit_whose_acknowledgement_is_lost_is_flagged_not_passed_off_as_a_refusal(tmp_path, open_client):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}", buyers=1)
    keys = make_keys(factory, buyers=1)
    ack_lost = faulty_sessions(factory, AckLostSession)
    client = open_client(fault_settings(tmp_path), ack_lost)
    r = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(keys["b0"]))
    assert r.status_code == 503 and r.json()["code"] == "outcome_unknown"
    assert int(r.headers["retry-after"]) > 0
    assert invariants(factory)["orders"] == 1  # it was kept: the client was told to look before retrying
