"""Migration 0029 on a database with an open coupon of a campaign, a grant-only one, and an open coupon
of no campaign: the first becomes grant-only (logged), the others stay; downgrade leaves them so."""

from __future__ import annotations

import logging

from commerce import migrate
from tests.commerce.migration_data import query, seed_at

BEFORE = "0028_impression_once"
NOW = "'2026-06-01 12:00:00+00:00'"
ROWS = [
    "INSERT INTO campaigns (campaign_id, name, channel, status, budget, spent, control_share, starts_at,"
    f" ends_at, created_at) VALUES ('k1', 'K', 'site', 'running', 100, 0, 0.1, {NOW},"
    f" '2026-06-08 12:00:00+00:00', {NOW})",
    *(
        "INSERT INTO coupons (coupon_id, name, issuer, campaign_id, kind, value, min_spend, scope_type,"
        f" per_shopper_limit, requires_grant, used, spent, created_at) VALUES ('{cid}', '', 'platform', {k},"
        f" 'amount_off', 5, 0, 'platform', 1, {grant}, 0, 0, {NOW})"
        for cid, k, grant in (
            ("c-open", "'k1'", "false"),
            ("c-arm", "'k1'", "true"),
            ("c-any", "NULL", "false"),
        )
    ),
]
GRANT_ONLY = "SELECT coupon_id, requires_grant FROM coupons ORDER BY coupon_id"


def test_0029_makes_campaign_coupons_grant_only(database_url, caplog):
    seed_at(database_url, BEFORE, ROWS)
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        migrate.upgrade(database_url)
    assert "0029: 1 coupons of campaigns needed no grant" in caplog.text and "c-open (k1)" in caplog.text
    after = [("c-any", False), ("c-arm", True), ("c-open", True)]
    assert [(c, bool(g)) for c, g in query(database_url, GRANT_ONLY)] == after
    assert migrate.schema_diff(database_url) == []
    migrate.downgrade(database_url, BEFORE)
    assert migrate.current(database_url) == BEFORE
    assert [(c, bool(g)) for c, g in query(database_url, GRANT_ONLY)] == after
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        migrate.upgrade(database_url)  # again: nothing left to change
    assert "0029" not in caplog.text
