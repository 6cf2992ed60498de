"""SQLite's disk full (`database or disk is full`, simulated with `max_page_count`): writes are refused
with 503 and change nothing, and the outage is logged once. Reads still succeed meanwhile, and every
new key's lookup ended the outage: each refused write logged "database unavailable" and the next
lookup "database back" (a pair per refused checkout: 24 of 40 here). A read no longer ends an outage for
writes, nor does a GET request's own commit (it wrote nothing) or the readiness probe's `SELECT 1` (each
ended it: a pair of lines per refused write, `/ready` 200 between them); a write that succeeds does, or
the probe once it sees room to write again."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from tests.resilience.conftest import fault_settings, invariants, make_keys, seeded_factory
from tests.serving.conftest import auth

BUYERS = 40


def full_disk(engine) -> object:
    """From the next connection on, the database file may not grow past its current pages."""
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

    def full(dbapi_conn, _record):
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    event.listen(engine, "connect", full)
    engine.dispose()
    return full


def _marketplace(database_url, tmp_path, open_client):
    """A seeded SQLite marketplace with a key per buyer, served; skips on PostgreSQL."""
    if not database_url.startswith("sqlite"):
        pytest.skip("a full disk is simulated with SQLite's max_page_count")
    factory = seeded_factory(database_url, buyers=BUYERS, stock=1000)
    keys = make_keys(factory, buyers=BUYERS)
    return factory, keys, open_client(fault_settings(tmp_path), factory), factory.kw["bind"]


def test_a_full_disk_refuses_writes_and_is_logged_once_while_new_keys_are_read(
    database_url, tmp_path, open_client, caplog
):
    factory, keys, client, engine = _marketplace(database_url, tmp_path, open_client)
    full = full_disk(engine)
    statuses = []
    for i in range(BUYERS):  # each buyer's key is new to the cache: a read that succeeds
        order = {"lines": [{"product_id": "p01", "quantity": 1}]}
        r = client.post(f"/v1/shoppers/b{i}/orders", json=order, headers=auth(keys[f"b{i}"]))
        statuses.append(r.status_code)
        assert r.status_code in (201, 503), r.text
    refused = statuses.count(503)
    assert refused >= 10 and statuses[-1] == 503  # the free pages ran out
    assert invariants(factory)["orders"] == statuses.count(201)  # a refusal changed nothing
    messages = [r.getMessage() for r in caplog.records]
    assert sum("database unavailable" in m for m in messages) == 1  # was one per refused checkout
    assert not any("database back" in m for m in messages)

    event.remove(engine, "connect", full)
    engine.dispose()  # room again
    assert client.get("/ready").json()["database"] == "up"
    assert any("database back" in r.getMessage() for r in caplog.records)
    engine.dispose()


def test_neither_a_get_nor_the_readiness_probe_ends_a_full_disk_outage(
    database_url, tmp_path, open_client, caplog
):
    factory, keys, client, engine = _marketplace(database_url, tmp_path, open_client)
    health = client.app.state.serving.db_health
    order = {"lines": [{"product_id": "p01", "quantity": 1}]}
    buyers = iter(range(BUYERS))

    def post():  # the next buyer's checkout (at most 5 unpaid orders each)
        i = next(buyers)
        return client.post(f"/v1/shoppers/b{i}/orders", json=order, headers=auth(keys[f"b{i}"]))

    full = full_disk(engine)
    while (r := post()).status_code == 201:  # until the free pages run out
        pass
    assert r.status_code == 503, r.text
    readies = []
    for _ in range(5):
        assert client.get("/v1/shoppers/b0/orders", headers=auth(keys["b0"])).status_code == 200
        health._checked_at = -1e9  # the next /ready probes at once
        readies.append(client.get("/ready").status_code)
        assert post().status_code == 503
    messages = [r.getMessage() for r in caplog.records]
    # was 5 "back" and 6 "unavailable": each GET's commit and each probe ended the outage, /ready said 200
    assert sum("database back" in m for m in messages) == 0
    assert sum("database unavailable" in m for m in messages) == 1
    assert readies == [503] * 5

    event.remove(engine, "connect", full)
    engine.dispose()  # room again: the probe sees it
    health._checked_at = -1e9
    assert client.get("/ready").json()["database"] == "up"
    assert sum("database back" in r.getMessage() for r in caplog.records) == 1
    assert post().status_code == 201
    engine.dispose()
