"""The wall clock moved (an NTP step, a VM resumed, a replica's clock set wrong): a retried write must not
run twice, and a replica whose clock runs ahead must not end what the others keep nor start what outlives
its lifetime. Each clock is moved by passing or patching the time the code reads (`utcnow`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

import serving.idempotency
from commerce.db import transaction
from commerce.orders import Order
from commerce.services import idempotency
from commerce.services.access import console_session_key, create_api_key, start_console_session
from commerce.services.checkout import CartLine, checkout
from commerce.services.pending import PendingPolicy, expire_pending_orders
from commerce.sqltypes import utcnow
from tests.resilience.conftest import fault_settings, invariants, make_keys, seeded_factory
from tests.serving.conftest import auth

ORDER = {"lines": [{"product_id": "p01", "quantity": 1}]}
DAY_AHEAD = timedelta(hours=25)  # past the Idempotency-Key's 24 h


@pytest.fixture
def market(database_url):
    factory = seeded_factory(database_url, buyers=1)
    return factory, factory.kw["bind"].dialect.name == "postgresql"


def test_a_checkout_retried_after_the_clock_jumped_a_day_ahead_is_replayed(
    tmp_path, open_client, monkeypatch
):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}", buyers=1)
    keys = make_keys(factory, buyers=1)
    client = open_client(fault_settings(tmp_path), factory)
    headers = {**auth(keys["b0"]), "Idempotency-Key": "checkout-1"}
    first = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    assert first.status_code == 201
    monkeypatch.setattr(serving.idempotency, "utcnow", lambda: utcnow() + DAY_AHEAD)
    retry = client.post("/v1/shoppers/b0/orders", json=ORDER, headers=headers)
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert invariants(factory)["orders"] == 1  # was 2: the key had "expired" and the checkout ran again
    other = client.post("/v1/shoppers/b0/orders", json={"lines": [{"product_id": "p02", "quantity": 1}]},
                        headers=headers)  # fmt: skip
    assert other.status_code == 201 and "idempotent-replayed" not in other.headers  # expired for others


def test_a_replica_a_day_ahead_keeps_the_others_keys_and_sessions_and_starts_none_that_outlive_their_hours(
    market,
):
    factory, postgres = market
    now, ahead, hours_8 = utcnow(), utcnow() + DAY_AHEAD, timedelta(hours=8)
    with transaction(factory) as s:
        key, _ = create_api_key(s, "marketer")
        here, _ = start_console_session(s, key.id, hours_8, now)
    idempotency.claim(factory, "key:abc", "k", "f", now)
    with transaction(factory) as s:
        there, _ = start_console_session(s, key.id, hours_8, ahead)  # signed in on the replica ahead
    purged = idempotency.purge_expired(factory, ahead)  # the daily purge, run on the replica ahead
    with factory() as s:
        # dated a day ahead, it would have lived 33 h once the clock was put right: refused instead
        assert console_session_key(s, there, now) is None
        assert console_session_key(s, there, ahead) is not None  # the replica ahead still knows it
        if postgres:  # the database server's clock bounds clean-ups (were both deleted)
            assert console_session_key(s, here, now) is not None
            assert purged == 0 and idempotency.lookup(factory, "key:abc", "k") is not None
        else:  # SQLite: one host, one clock; nothing to compare with
            assert console_session_key(s, here, now) is None and purged == 1


def test_a_replica_a_day_ahead_frees_no_key_another_replica_just_claimed(market):
    """A key reused for another request, on a replica a day ahead: its claim deleted the other replica's
    claim of a minute ago as expired and ran; a retry of the first request then ran it again. On
    PostgreSQL the claim's clean-up never deletes past the database server's clock either."""
    factory, postgres = market
    now = utcnow()
    assert idempotency.claim(factory, "key:abc", "k", "first", now).won
    reused = idempotency.claim(factory, "key:abc", "k", "second", now + DAY_AHEAD)
    if postgres:
        assert not reused.won and reused.mismatch  # 422 for the reuse; the first stays replayable
    else:  # SQLite: one host, one clock
        assert reused.won


def test_a_replica_an_hour_ahead_expires_no_order_still_within_its_payment_window(market):
    """The unpaid-order sweep (every replica runs it, and a checkout refused for stock runs it again) on
    a replica whose clock jumped an hour ahead: it cancelled every order placed in the last 30 minutes
    as past its payment window, gave back their stock and coupon use, and the shoppers paying them were
    refused. On PostgreSQL the sweep's clock is bounded by the database server's, as the other
    clean-ups by age are."""
    factory, postgres = market
    with transaction(factory) as s:
        placed = checkout(s, "b0", [CartLine("p01", 1)], coupon_id="c-capped").order_id
    swept = expire_pending_orders(factory, PendingPolicy().ttl, now=utcnow() + timedelta(hours=1))
    with factory() as s:
        status = s.get(Order, placed).status
    if postgres:
        assert swept == [] and status == "pending_payment"  # was ([placed], "cancelled")
    else:  # SQLite: one host, one clock
        assert swept == [placed] and status == "cancelled"
