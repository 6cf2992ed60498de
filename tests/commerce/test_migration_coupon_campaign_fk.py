"""Migration 0027 on a database with a coupon of a stored campaign, one naming a campaign that does not
exist and one of no campaign, each granted (so SQLite's table copy runs under rows pointing at it):
the orphan's campaign_id becomes NULL (logged), the others stay, and the key then refuses orphans."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from commerce import migrate
from commerce.db import make_engine
from tests.commerce.migration_data import query, seed_at

BEFORE = "0026_campaign_spent_backfill"
NOW = "'2026-06-01 12:00:00+00:00'"
ROWS = [
    f"INSERT INTO shoppers (shopper_id, region, created_at) VALUES ('s1', 'Zhejiang', {NOW})",
    "INSERT INTO campaigns (campaign_id, name, channel, status, budget, spent, control_share, starts_at,"
    f" ends_at, created_at) VALUES ('k1', 'K', 'site', 'draft', 100, 0, 0.1, {NOW},"
    f" '2026-06-08 12:00:00+00:00', {NOW})",
    *(
        "INSERT INTO coupons (coupon_id, name, issuer, campaign_id, kind, value, min_spend, scope_type,"
        f" per_shopper_limit, requires_grant, used, spent, created_at) VALUES ('{cid}', '', 'platform', {k},"
        f" 'amount_off', 5, 0, 'platform', 1, true, 0, 0, {NOW})"
        for cid, k in (("c-k1", "'k1'"), ("c-ghost", "'ghost'"), ("c-none", "NULL"))
    ),
    *(
        "INSERT INTO coupon_grants (coupon_id, shopper_id, campaign_id, channel, granted_at)"
        f" VALUES ('{cid}', 's1', NULL, 'site', {NOW})"
        for cid in ("c-k1", "c-ghost", "c-none")
    ),
]


def test_0027_nulls_orphan_campaign_ids_then_enforces_the_key(database_url, caplog):
    seed_at(database_url, BEFORE, ROWS)
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        migrate.upgrade(database_url)
    assert "1 coupons named campaigns that do not exist" in caplog.text and "c-ghost (ghost)" in caplog.text
    assert query(database_url, "SELECT coupon_id, campaign_id FROM coupons ORDER BY coupon_id") == [
        ("c-ghost", None),
        ("c-k1", "k1"),
        ("c-none", None),
    ]
    assert len(query(database_url, "SELECT id FROM coupon_grants")) == 3  # the copy kept what points at it
    assert migrate.schema_diff(database_url) == []
    engine = make_engine(database_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE coupons SET campaign_id = 'ghost' WHERE coupon_id = 'c-none'"))
    finally:
        engine.dispose()
    migrate.downgrade(database_url, BEFORE)
    assert migrate.current(database_url) == BEFORE
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:  # the key is gone again
            conn.execute(text("UPDATE coupons SET campaign_id = 'ghost' WHERE coupon_id = 'c-none'"))
    finally:
        engine.dispose()
