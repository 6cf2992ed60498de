"""A request whose COMMIT may have been kept (its acknowledgement lost, or the request cancelled after
committing, e.g. by the shutdown grace) keeps its Idempotency-Key: a retry with that key must not run it
a second time."""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc
from sqlalchemy.orm import Session

from commerce.orders import Order
from tests.resilience.conftest import fault_settings, faulty_sessions, invariants, make_keys, seeded_factory
from tests.serving.conftest import auth

ORDER = {"lines": [{"product_id": "p01", "quantity": 1}]}


class AckLostSession(Session):
    """A checkout's COMMIT reaches the database, its acknowledgement does not (the connection drops right
    then); the Idempotency-Key's own writes go through."""

    def commit(self) -> None:
        checkout = any(isinstance(row, Order) for row in self.identity_map.values())
        super().commit()
        if checkout:
            raise exc.OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))


def test_a_retry_of_a_checkout_whose_commit_was_not_acknowledged_is_not_run_again(tmp_path, open_client):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}", buyers=1)
    keys = make_keys(factory, buyers=1)
    ack_lost = faulty_sessions(factory, AckLostSession)
    client = open_client(fault_settings(tmp_path), ack_lost)
    headers = {**auth(keys["b0"]), "Idempotency-Key": "checkout-1"}
    first = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    assert first.status_code == 503 and first.json()["code"] == "outcome_unknown"
    retry = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    assert retry.status_code == 503 and retry.json()["code"] == "outcome_unknown"
    assert retry.headers["idempotent-replayed"] == "true"  # the first answer, not a second checkout
    assert invariants(factory)["orders"] == 1  # was 2


def test_a_request_that_fails_after_its_commit_answers_its_key_outcome_unknown(
    tmp_path, open_client, monkeypatch
):
    import serving.deps
    import serving.idempotency

    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}", buyers=1)
    keys = make_keys(factory, buyers=1)
    client = open_client(fault_settings(tmp_path), factory)
    finish = serving.deps._finish

    def committed_then_cancelled(session, commit):  # e.g. the shutdown grace cancelling it right then
        finish(session, commit)
        if commit:
            raise RuntimeError("cancelled after COMMIT")

    monkeypatch.setattr(serving.deps, "_finish", committed_then_cancelled)
    monkeypatch.setattr(serving.idempotency, "WAIT_SECONDS", 0.2)
    headers = {**auth(keys["b0"]), "Idempotency-Key": "checkout-2"}
    try:
        client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    except RuntimeError:
        pass  # no answer reached the client
    monkeypatch.setattr(serving.deps, "_finish", finish)
    retry = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    # told to read the outcome back (was 409 request_in_progress with Retry-After 1, for the key's 24 h)
    assert retry.status_code == 503 and retry.json()["code"] == "outcome_unknown"
    assert retry.headers["idempotent-replayed"] == "true"
    assert invariants(factory)["orders"] == 1  # not placed again


class BusyAtCommitSession(Session):
    """The database refuses a checkout's COMMIT once (SQLite's write lock held past the busy timeout, as
    a PostgreSQL row lock past lock_timeout): it answered, so nothing was kept."""

    refusals = [1]

    def commit(self) -> None:
        if self.refusals[0] and any(isinstance(row, Order) for row in self.identity_map.values()):
            self.refusals[0] -= 1
            self.rollback()
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorname = "SQLITE_BUSY"
            raise exc.OperationalError("COMMIT", {}, busy)
        super().commit()


def test_a_commit_the_database_refused_frees_its_key_for_the_retry_it_asks_for(tmp_path, open_client):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}", buyers=1)
    keys = make_keys(factory, buyers=1)
    busy = faulty_sessions(factory, BusyAtCommitSession)
    client = open_client(fault_settings(tmp_path), busy)
    headers = {**auth(keys["b0"]), "Idempotency-Key": "checkout-3"}
    first = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    assert first.status_code == 503 and first.headers["retry-after"] == "1"  # busy: retry shortly
    retry = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    assert retry.status_code == 201, retry.text  # was the stored 503, replayed for the key's 24 h
    assert "idempotent-replayed" not in retry.headers
    assert invariants(factory)["orders"] == 1
