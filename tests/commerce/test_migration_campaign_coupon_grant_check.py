"""Migration 0030 on a database with a campaign's grant-only coupon and two coupons of no campaign (one
open), each granted (so SQLite's table copy runs under rows pointing at it): the rows stay, and the
database then refuses a campaign's coupon that needs no grant, stored or edited into one; downgrade
takes the check away again."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from commerce import migrate
from commerce.db import make_engine
from tests.commerce.migration_data import query, seed_at

BEFORE = "0029_campaign_coupons_grant_only"
NOW = "'2026-06-01 12:00:00+00:00'"
ROWS = [
    f"INSERT INTO shoppers (shopper_id, region, created_at) VALUES ('s1', 'Zhejiang', {NOW})",
    "INSERT INTO campaigns (campaign_id, name, channel, status, budget, spent, control_share, starts_at,"
    f" ends_at, created_at) VALUES ('k1', 'K', 'site', 'running', 100, 0, 0.1, {NOW},"
    f" '2026-06-08 12:00:00+00:00', {NOW})",
    *(
        "INSERT INTO coupons (coupon_id, name, issuer, campaign_id, kind, value, min_spend, scope_type,"
        f" per_shopper_limit, requires_grant, used, spent, created_at) VALUES ('{cid}', '', 'platform', {k},"
        f" 'amount_off', 5, 0, 'platform', 1, {grant}, 0, 0, {NOW})"
        for cid, k, grant in (
            ("c-arm", "'k1'", "true"),
            ("c-any", "NULL", "false"),
            ("c-own", "NULL", "true"),
        )
    ),
    *(
        "INSERT INTO coupon_grants (coupon_id, shopper_id, campaign_id, channel, granted_at)"
        f" VALUES ('{cid}', 's1', {k}, 'site', {NOW})"
        for cid, k in (("c-arm", "'k1'"), ("c-any", "NULL"), ("c-own", "NULL"))
    ),
]
COUPONS = "SELECT coupon_id, campaign_id, requires_grant FROM coupons ORDER BY coupon_id"
OPEN_ARM = (  # at head with the id's skeleton (migration 0036), at 0029 without
    "INSERT INTO coupons (coupon_id, name, issuer, campaign_id, kind, value, min_spend, scope_type,"
    " per_shopper_limit, requires_grant, used, spent, created_at{}) VALUES ('c-open', '', 'platform', 'k1',"
    f" 'amount_off', 5, 0, 'platform', 1, false, 0, 0, {NOW}{{}})"
)
REFUSED = [
    OPEN_ARM.format(", coupon_id_skeleton", ", 'c-open'"),
    "UPDATE coupons SET requires_grant = false WHERE coupon_id = 'c-arm'",
    "UPDATE coupons SET campaign_id = 'k1' WHERE coupon_id = 'c-any'",
]


def _execute(url: str, sql: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def test_0030_makes_the_database_refuse_an_open_campaign_coupon(database_url):
    seed_at(database_url, BEFORE, ROWS)
    migrate.upgrade(database_url)
    kept = [("c-any", None, False), ("c-arm", "k1", True), ("c-own", None, True)]
    assert [(c, k, bool(g)) for c, k, g in query(database_url, COUPONS)] == kept
    assert len(query(database_url, "SELECT id FROM coupon_grants")) == 3  # the copy kept what points at it
    assert migrate.schema_diff(database_url) == []
    for sql in REFUSED:
        with pytest.raises(IntegrityError, match="campaign_grant_only"):
            _execute(database_url, sql)
    with pytest.raises(IntegrityError, match="value_positive"):  # SQLite's copy kept the other checks
        _execute(database_url, "UPDATE coupons SET value = 0 WHERE coupon_id = 'c-own'")
    _execute(database_url, "UPDATE coupons SET campaign_id = 'k1' WHERE coupon_id = 'c-own'")  # grant-only
    assert [(c, k, bool(g)) for c, k, g in query(database_url, COUPONS)][2] == ("c-own", "k1", True)

    migrate.downgrade(database_url, BEFORE)
    assert migrate.current(database_url) == BEFORE
    assert len(query(database_url, "SELECT id FROM coupon_grants")) == 3
    for sql in [OPEN_ARM.format("", ""), *REFUSED[1:]]:  # the check is gone again
        _execute(database_url, sql)
    assert [(c, k, bool(g)) for c, k, g in query(database_url, COUPONS)] == [
        ("c-any", "k1", False),
        ("c-arm", "k1", False),
        ("c-open", "k1", False),
        ("c-own", "k1", True),
    ]
