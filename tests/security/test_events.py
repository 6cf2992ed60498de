"""Event integrity (issue 9, items 2 and 3): client ids cannot squat server ids, clients cannot forge
sales or coupon events, and quantities and timestamps are bounded. Rankings and stored events are
compared before and after each attack."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.events import BehaviorEvent
from commerce.orders import Order
from commerce.services.events import record_events
from tests.serving.conftest import NOW, auth

WINDOWS = ("1d", "7d", "30d", "all")


def _rankings(client) -> dict:
    client.app.state.serving.catalog.refresh()
    return {
        (by, w): client.get("/v1/rankings", params={"by": by, "window": w}).json()["items"]
        for by in ("sales", "popularity")
        for w in WINDOWS
    }


def _events(session_factory) -> list[tuple]:
    with session_factory() as s:
        return s.execute(select(BehaviorEvent.event_id, BehaviorEvent.event_type).order_by("event_id")).all()


def _event(**extra) -> dict:
    return {"event_id": "x-1", "ts": NOW.isoformat(), "shopper_id": "s1", "product_id": "p12", **extra}


def test_pre_posted_server_ids_cannot_drop_a_real_purchase(client, keys, session_factory):
    """The attack: post `purchase:{next order}:1` and `redeem:{next order}` first, then buy for real."""
    shopper, admin = auth(keys["shopper"]), auth(keys["admin"])
    with session_factory() as s:
        next_order = s.scalar(select(func.max(Order.order_id))) + 1
    squat = [
        _event(event_id=f"purchase:{next_order}:1", event_type="view", product_id="p05"),
        _event(event_id=f"redeem:{next_order}", event_type="search", product_id=None, query="x"),
        _event(event_id="grant:c-vip:s1", event_type="favorite", product_id="p05"),
    ]
    for key in (shopper, auth(keys["storefront"]), admin):
        assert client.post("/v1/events", json={"events": squat}, headers=key).status_code == 202
    cart = {"lines": [{"product_id": "p05", "quantity": 2}], "coupon_id": "c-10off"}
    order = client.post("/v1/shoppers/s1/orders", json=cart, headers=shopper).json()
    assert order["order_id"] == next_order
    paid = client.post(f"/v1/orders/{next_order}/payment", json={"payment_ref": "P-1"}, headers=admin)
    assert paid.status_code == 200
    with session_factory() as s:
        purchase = s.get(BehaviorEvent, f"purchase:{next_order}:1")
        redeem = s.get(BehaviorEvent, f"redeem:{next_order}")
    assert (purchase.event_type, purchase.product_id, purchase.quantity) == ("purchase", "p05", 2)
    assert redeem.event_type == "coupon_redeem" and redeem.coupon_id == "c-10off"
    # The squatted ids were stored in each sender's namespace, never under the server's ids.
    squatted = [e for e, _ in _events(session_factory) if e.endswith(f":purchase:{next_order}:1")]
    assert len(squatted) == 3 and all(e.startswith("client:") for e in squatted)


def test_client_retries_stay_idempotent_and_other_senders_cannot_collide(client, keys, session_factory):
    event = _event(event_type="view")
    first = client.post("/v1/events", json={"events": [event]}, headers=auth(keys["storefront"])).json()
    again = client.post("/v1/events", json={"events": [event]}, headers=auth(keys["storefront"])).json()
    assert (first["inserted"], again["inserted"], again["duplicates"]) == (1, 0, 1)
    # Another key's same id (even one spelled like a namespaced id) is its own event.
    other = client.post(
        "/v1/events",
        json={"events": [event, {**event, "event_id": "client:1:x-1"}]},
        headers=auth(keys["shopper"]),
    )
    assert other.json()["inserted"] == 2


def test_server_code_cannot_write_into_the_client_namespace(session_factory):
    with pytest.raises(ValidationError), transaction(session_factory) as s:
        record_events(s, [{**_event(event_type="view"), "event_id": "client:1:x", "ts": NOW}])


def test_clients_cannot_forge_sales_or_coupon_events(client, keys, session_factory):
    before, stored = _rankings(client), _events(session_factory)
    for event_type in ("purchase", "coupon_redeem", "coupon_grant"):
        forged = _event(event_type=event_type, quantity=999, value=1e6, coupon_id="c-10off")
        for role in ("storefront", "shopper", "admin"):
            # alone, and hidden in a batch of valid events (the whole batch is refused)
            for batch in ([forged], [_event(event_id="ok", event_type="view"), forged]):
                r = client.post("/v1/events", json={"events": batch}, headers=auth(keys[role]))
                assert r.status_code == 422, (event_type, role, r.text)
    assert _events(session_factory) == stored and _rankings(client) == before


BAD_EVENTS = [
    {"quantity": 10_000},  # the old bound
    {"quantity": 1000},
    {"quantity": 0},
    {"ts": "9999-12-31T00:00:00+00:00"},
    # a day ahead of NOW (taken when the module was imported): still the future after an hour-long run
    {"ts": (NOW + timedelta(days=1)).isoformat()},
    {"event_type": "view", "ts": "2100-01-01T00:00:00+08:00"},
    {"event_type": "view", "value": 1e12},
]


def test_quantities_and_timestamps_are_bounded(client, keys, session_factory):
    before, stored = _rankings(client), _events(session_factory)
    for extra in BAD_EVENTS:
        event = _event(**{"event_type": "cart", **extra})
        r = client.post("/v1/events", json={"events": [event]}, headers=auth(keys["storefront"]))
        assert r.status_code == 422, (extra, r.text)
    assert _events(session_factory) == stored and _rankings(client) == before


def test_small_clock_skew_is_accepted(client, keys):
    event = _event(event_type="view", ts=(NOW + timedelta(minutes=1)).isoformat())
    r = client.post("/v1/events", json={"events": [event]}, headers=auth(keys["storefront"]))
    assert r.status_code == 202


def test_future_events_already_stored_count_in_no_ranking(client, session_factory):
    """Defence in depth for events stored before the fix: rankings count nothing stamped in the future."""
    before = _rankings(client)
    with transaction(session_factory) as s:
        s.add_all(
            BehaviorEvent(
                event_id=f"legacy-{i}",
                ts=NOW + timedelta(days=3650),
                shopper_id="s2",
                product_id="p04",  # sellable, so it would show in the rankings
                event_type=t,
                quantity=10_000,
            )
            for i, t in enumerate(["purchase", "view", "cart"] * 20)
        )
    assert _rankings(client) == before
