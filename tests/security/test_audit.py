"""The audit log: every privileged action leaves an entry (who, what, when); admins read it through the
API; the table is append-only in the database itself (SQLite and PostgreSQL, as migrated)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.services import campaigns, coupons
from commerce.services.audit import record
from tests.serving.conftest import NOW, auth


def _scheduled_campaign(session_factory) -> str:
    with transaction(session_factory) as s:
        campaigns.create_campaign(
            s,
            campaigns.CampaignInput(
                name="Spring",
                channel="email",
                budget="500",
                starts_at=NOW,
                ends_at=NOW + timedelta(days=7),
                control_share="0.5",
                campaign_id="cmp-audit",
            ),
        )
        coupons.create_coupon(
            s,
            coupons.CouponInput(
                kind="amount_off",
                value="5",
                requires_grant=True,
                campaign_id="cmp-audit",
                coupon_id="c-spring",
            ),
        )
        campaigns.set_audience(s, "cmp-audit", [("s1", "c-spring"), ("s2", "control")])
        campaigns.schedule_campaign(s, "cmp-audit")
    return "cmp-audit"


def test_privileged_actions_are_logged_and_readable_by_admins_only(client, keys, session_factory):
    admin, merchant = auth(keys["admin"]), auth(keys["merchant"])
    created = client.post("/v1/api-keys", json={"role": "marketer", "name": "ops"}, headers=admin).json()
    assert client.delete(f"/v1/api-keys/{created['id']}", headers=admin).status_code == 200
    assert (
        client.post("/v1/merchants/m3/review", json={"decision": "approve"}, headers=admin).status_code == 200
    )
    assert client.patch("/v1/products/p02", json={"price": "89.00"}, headers=merchant).status_code == 200
    assert client.patch("/v1/products/p02", json={"title": "Same price"}, headers=merchant).status_code == 200
    campaign = _scheduled_campaign(session_factory)
    launched = client.post(f"/v1/campaigns/{campaign}/launch", headers=auth(keys["marketer"]))
    assert launched.status_code == 200, launched.text

    page = client.get("/v1/audit-log", headers=admin).json()
    entries = [(e["action"], e["target_id"], e["actor_role"]) for e in reversed(page["items"])]
    assert entries == [
        ("api_key.created", str(created["id"]), "admin"),
        ("api_key.revoked", str(created["id"]), "admin"),
        ("merchant.reviewed", "m3", "admin"),
        ("product.price_changed", "p02", "merchant"),
        ("campaign.launched", campaign, "marketer"),
    ]
    price = next(e for e in page["items"] if e["action"] == "product.price_changed")
    assert price["detail"] == {"old": "99.50", "new": "89.00"} and price["actor_key_id"] is not None
    assert all(e["at"] for e in page["items"])
    for role in ("storefront", "shopper", "merchant", "marketer"):
        assert client.get("/v1/audit-log", headers=auth(keys[role])).status_code == 403
    assert client.get("/v1/audit-log").status_code == 401
    # Read-only through the API: no operation writes or removes entries.
    assert client.delete("/v1/audit-log", headers=admin).status_code == 405
    assert client.post("/v1/audit-log", json={}, headers=admin).status_code == 405


def test_the_table_refuses_updates_and_deletes(database_url):
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    try:
        with transaction(factory) as s:
            record(s, "api_key.created", "api_key", 1, actor_role="admin", actor_key_id=1)
        for sql in ("UPDATE audit_log SET actor_role = 'nobody'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"), transaction(factory) as s:
                s.execute(text(sql))
        with factory() as s:
            assert s.execute(text("SELECT actor_role FROM audit_log")).scalars().all() == ["admin"]
    finally:
        engine.dispose()
