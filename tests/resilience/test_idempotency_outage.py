"""An Idempotency-Key whose end the database could not record (session 20): the request failed, or was
answered, while the database went away, so freeing the key or storing its answer failed too. The key
must still be settled once the database is back: a retry runs again (nothing was kept) or gets the
stored answer, never `409 request_in_progress` until the key expires.

The database goes away by cutting a TCP proxy between the API and PostgreSQL (`bench.faultkit`)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

import serving.deps
import serving.idempotency
from commerce.catalog import Stock
from commerce.db import make_session_factory
from tests.resilience.conftest import (
    fault_settings,
    invariants,
    make_keys,
    proxied_engine,
    seeded_factory,
)
from tests.serving.conftest import auth

PROXY_PORT = 18931  # this helper's port
ORDER = {"lines": [{"product_id": "p01", "quantity": 1}]}


@pytest.fixture
def proxied(database_url, tmp_path, open_client, monkeypatch):
    """(client, keys, direct factory, proxy): the API reaches PostgreSQL only through the proxy."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the outage is a cut TCP connection to PostgreSQL")
    monkeypatch.setattr(serving.idempotency, "WAIT_SECONDS", 0.2)  # a retry of a running key: 409 soon
    factory = seeded_factory(database_url, buyers=1)
    keys = make_keys(factory, buyers=1)
    proxy, engine = proxied_engine(database_url, PROXY_PORT, statement_timeout=5)
    client = open_client(fault_settings(tmp_path), make_session_factory(engine))
    yield client, keys, factory, proxy
    engine.dispose()
    proxy.close()
    factory.kw["bind"].dispose()


def _retry_until_settled(client, headers, seconds: float = 5.0):
    """Retry as the answers ask (Retry-After) for up to `seconds`; the last answer."""
    deadline = time.monotonic() + seconds
    while True:
        answer = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
        if answer.status_code not in (409, 503) or time.monotonic() > deadline:
            return answer
        time.sleep(0.3)


def test_a_key_whose_request_failed_in_an_outage_runs_again_once_the_database_is_back(proxied):
    client, keys, factory, proxy = proxied
    headers = {**auth(keys["b0"]), "Idempotency-Key": "checkout-in-outage"}
    with factory() as holder:  # another writer holds p01's stock row: the checkout waits on it
        holder.execute(select(Stock).where(Stock.product_id == "p01").with_for_update())
        cut = threading.Timer(0.5, proxy.cut)  # ... and the database goes away meanwhile
        cut.start()
        first = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
        cut.join()
        holder.rollback()
    assert first.status_code == 503 and first.json()["code"] == "unavailable", first.text
    assert invariants(factory)["orders"] == 0  # nothing kept: the key must be free for the retry
    proxy.restore()

    retry = _retry_until_settled(client, headers)
    # was 409 request_in_progress at every retry, for the key's 24 h: the release had failed with the rest
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
    assert invariants(factory)["orders"] == 1


def test_a_key_whose_answer_could_not_be_stored_replays_it_once_the_database_is_back(proxied, monkeypatch):
    client, keys, factory, proxy = proxied
    finish = serving.deps._finish

    def committed_then_cut(session, commit):  # the database goes away right after the COMMIT
        finish(session, commit)
        if commit:
            proxy.cut()

    monkeypatch.setattr(serving.deps, "_finish", committed_then_cut)
    headers = {**auth(keys["b0"]), "Idempotency-Key": "checkout-answered-in-outage"}
    first = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    assert first.status_code == 201, first.text
    monkeypatch.setattr(serving.deps, "_finish", finish)
    proxy.restore()

    retry = _retry_until_settled(client, headers)
    # was 409 request_in_progress at every retry, for the key's 24 h: the client never learnt its order
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["order_id"] == first.json()["order_id"]
    assert invariants(factory)["orders"] == 1
