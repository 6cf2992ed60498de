"""SQLite's write lock held past the busy timeout (another writer's long transaction) is "busy, retry
shortly", like a PostgreSQL row lock past `lock_timeout`: not an outage (no outage log, /ready stays up)."""

from __future__ import annotations

import logging

from sqlalchemy import text

from commerce.db import make_engine, make_session_factory
from tests.resilience.conftest import fault_settings, invariants, make_keys, seeded_factory
from tests.serving.conftest import auth

ORDER = {"lines": [{"product_id": "p01", "quantity": 1}]}


def test_a_write_lock_held_past_the_busy_timeout_is_a_busy_503(tmp_path, open_client, caplog):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    factory = seeded_factory(url, buyers=1)
    keys = make_keys(factory, buyers=1)
    engine = make_engine(url, statement_timeout=0.3)  # the busy timeout
    client = open_client(fault_settings(tmp_path), make_session_factory(engine))
    assert client.get("/v1/rankings", headers=auth(keys["b0"])).status_code == 200  # the key is cached
    holder = factory.kw["bind"].connect()
    holder.begin()  # BEGIN IMMEDIATE: the write lock, held
    holder.execute(text("UPDATE stock SET quantity = quantity WHERE product_id = 'p01'"))
    try:
        with caplog.at_level(logging.ERROR, logger="serving"):
            r = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(keys["b0"]))
            ready = client.get("/ready").json()
            # the Idempotency-Key's claim waits for the same lock; a key not cached yet is looked up
            # without it (commerce.db.read_only), then its order waits
            claimed = client.post(
                "/v1/shoppers/b0/orders", json=ORDER, headers={**auth(keys["b0"]), "Idempotency-Key": "k1"}
            )
            uncached = client.post(
                "/v1/shoppers/s1/orders", json=ORDER, headers={**auth(keys["s1"]), "Idempotency-Key": "k2"}
            )
    finally:
        holder.rollback()
        holder.close()
    for refused in (r, claimed, uncached):
        assert refused.status_code == 503, refused.text  # the last two were a 500
        assert refused.headers["retry-after"] == "1" and refused.json()["code"] == "unavailable"
        assert "locked" not in refused.text  # no internals
    assert ready["database"] == "up"
    assert not [rec for rec in caplog.records if "database unavailable" in rec.getMessage()]
    assert client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(keys["b0"])).status_code == 201
    assert invariants(factory)["orders"] == 1
    engine.dispose()
    factory.kw["bind"].dispose()
