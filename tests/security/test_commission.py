"""Category commission changes (issue 9, "Also"): admin-only through the API, validated, idempotent,
audited with who / when / old / new, and applied to orders placed afterwards only. Runs over HTTP on
SQLite and PostgreSQL (the app is built on the `market` fixture of tests/commerce)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from commerce.audit import AuditEntry
from commerce.catalog import Category
from commerce.db import transaction
from commerce.orders import OrderLine
from commerce.services.access import create_api_key
from commerce.services.checkout import CartLine, checkout
from commerce.services.orders import pay_order
from tests.serving.conftest import auth

URL = "/v1/categories/cosmetics/commission"


@pytest.fixture
def api(make_client, market):
    with transaction(market) as s:
        keys = {
            "admin": create_api_key(s, "admin"),
            "merchant": create_api_key(s, "merchant", merchant_id="m_ok"),
            "shopper": create_api_key(s, "shopper", shopper_id="s0"),
            "storefront": create_api_key(s, "storefront"),
        }
    return (
        make_client(session_factory=market),
        {role: k[1] for role, k in keys.items()},
        {role: k[0].id for role, k in keys.items()},
    )


def _order(factory, shopper: str) -> Decimal:
    """Place and pay one order of the 300.00 cream; its stored commission."""
    with transaction(factory) as s:
        order = checkout(s, shopper, [CartLine("p_cream", 1)])
        pay_order(s, order.order_id, f"pay-{order.order_id}")
        return s.scalar(select(OrderLine.commission).where(OrderLine.order_id == order.order_id))


def _rate(factory) -> Decimal:
    with factory() as s:
        return s.get(Category, "cosmetics").commission_rate


def _entries(factory) -> list[AuditEntry]:
    with factory() as s:
        return s.scalars(select(AuditEntry).where(AuditEntry.action == "category.commission_changed")).all()


def test_only_admins_change_commission_and_only_for_later_orders(api, market):
    client, keys, key_ids = api
    before = _order(market, "s0")
    assert before == Decimal("24.00")  # 8% of 300.00
    # The attack: a merchant (or any other key) lowering its own category's commission.
    for role in ("merchant", "shopper", "storefront"):
        r = client.put(URL, json={"commission_rate": "0"}, headers=auth(keys[role]))
        assert r.status_code == 403, (role, r.text)
    assert client.put(URL, json={"commission_rate": "0"}).status_code == 401
    assert _rate(market) == Decimal("0.0800") and _entries(market) == []

    with transaction(market) as s:  # placed before the change, paid after it
        pending = checkout(s, "s2", [CartLine("p_cream", 1)]).order_id
    r = client.put(URL, json={"commission_rate": "0.12"}, headers=auth(keys["admin"]))
    assert r.status_code == 200, r.text
    with transaction(market) as s:
        pay_order(s, pending, "pay-pending")
    body = r.json()
    assert (body["category_id"], Decimal(body["commission_rate"]), Decimal(body["previous_rate"])) == (
        "cosmetics", Decimal("0.12"), Decimal("0.08"),
    )  # fmt: skip
    after = _order(market, "s1")
    assert after == Decimal("36.00")  # the new rate, for the order placed after the change
    with market() as s:  # the earlier order keeps the commission it was placed with
        assert sorted(s.scalars(select(OrderLine.commission))) == [
            Decimal("24.00"), Decimal("24.00"), Decimal("36.00"),
        ]  # fmt: skip

    (entry,) = _entries(market)
    assert (entry.actor_role, entry.actor_key_id, entry.target_type, entry.target_id) == (
        "admin", key_ids["admin"], "category", "cosmetics",
    )  # fmt: skip
    log = client.get(
        "/v1/audit-log", params={"action": "category.commission_changed"}, headers=auth(keys["admin"])
    ).json()
    assert log["total"] == 1
    assert {k: Decimal(v) for k, v in log["items"][0]["detail"].items()} == {
        "old": Decimal("0.08"), "new": Decimal("0.12"),
    }  # fmt: skip
    assert log["items"][0]["at"]  # when: stamped by the server


@pytest.mark.parametrize(
    "body",
    [{"commission_rate": "1"}, {"commission_rate": "1.5"}, {"commission_rate": "-0.01"},
     {"commission_rate": "0.12345"}, {"commission_rate": "abc"}, {"commission_rate": None}, {},
     {"commission_rate": "0.1", "vat_rate": "0"}],
)  # fmt: skip
def test_out_of_range_rates_are_refused(api, market, body):
    client, keys, _ = api
    r = client.put(URL, json=body, headers=auth(keys["admin"]))
    assert r.status_code == 422, r.text
    assert _rate(market) == Decimal("0.0800") and _entries(market) == []


def test_unknown_category_is_404_and_writes_nothing(api, market):
    client, keys, _ = api
    r = client.put(
        "/v1/categories/nope/commission", json={"commission_rate": "0.1"}, headers=auth(keys["admin"])
    )
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert _entries(market) == []


def test_idempotency_key_replays_without_a_second_entry(api, market):
    client, keys, _ = api
    headers = {**auth(keys["admin"]), "Idempotency-Key": "commission-1"}
    first = client.put(URL, json={"commission_rate": "0.10"}, headers=headers)
    again = client.put(URL, json={"commission_rate": "0.10"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    assert len(_entries(market)) == 1
    other = client.put(URL, json={"commission_rate": "0.20"}, headers=headers)
    assert other.status_code == 422  # same key, different request
    assert _rate(market) == Decimal("0.1000") and len(_entries(market)) == 1
