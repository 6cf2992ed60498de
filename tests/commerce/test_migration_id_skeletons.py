"""Migration 0038 on merchant, product, campaign, keyword campaign, category and shopper ids stored before
their skeletons were: each gets its Unicode skeleton (UTS #39) beside it, look-alikes stored side by side
one skeleton (the index is not unique, so they stay), over more rows than one backfill batch; a new
look-alike is then refused by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.errors import ValidationError
from commerce.services import campaigns
from commerce.sqltypes import skeleton
from tests.commerce.migration_data import columns, query, seed_at

BEFORE = "0037_skeleton_required"
NOW = "'2026-06-01 12:00:00+00:00'"
MANY = 2_500  # more than the migration's batch of 2,000
CYRILLIC_P1 = "\u04401"  # р1
PRODUCT = "('{}', 'S-{}', 'm1', 'T', 'c', 'B', 'JP', 10, 'bonded', 500, false, 'listed', " + NOW + ")"
CAMPAIGN = "('{}', 'K', 'site', 'draft', 100, 0, 0.1, " + NOW + ", '2026-06-08 12:00:00+00:00', " + NOW + ")"
ROWS = [
    "INSERT INTO merchants (merchant_id, name, name_skeleton, country, licence_no, status, created_at) VALUES"
    f" ('m1', 'M', 'M', 'JP', 'L1', 'approved', {NOW}), ('ml', 'N', 'N', 'JP', 'L2', 'approved', {NOW})",
    "INSERT INTO categories (category_id, name, vat_rate, consumption_tax_rate, tariff_rate, commission_rate,"
    " repurchasable) VALUES ('c', 'C', 0.13, 0, 0.1, 0.05, false)",
    "INSERT INTO products (product_id, sku, merchant_id, title, category_id, brand, origin_country, price,"
    " fulfillment, weight_g, self_operated, status, created_at) VALUES "
    + ", ".join(PRODUCT.format(p, p) for p in ["p1", CYRILLIC_P1, *(f"p-{i:04d}" for i in range(MANY))]),
    "INSERT INTO campaigns (campaign_id, name, channel, status, budget, spent, control_share, starts_at,"
    " ends_at, created_at) VALUES " + ", ".join(CAMPAIGN.format(c) for c in ["k1", "kl", "\uff4b2"]),
    "INSERT INTO keyword_campaigns (campaign_id, merchant_id, name, daily_budget, status, created_at) VALUES"
    f" ('kc0', 'm1', 'A', 5, 'active', {NOW}), ('kcO', 'm1', 'B', 5, 'active', {NOW})",
    f"INSERT INTO shoppers (shopper_id, region, created_at) VALUES ('U0', 'R', {NOW}), ('UO', 'R', {NOW})",
]
SKELETONS = {
    "merchants": ("merchant_id", [("m1", "rnl"), ("ml", "rnl")]),
    "products": ("product_id", [("p1", "pl"), (CYRILLIC_P1, "pl")]),
    "campaigns": ("campaign_id", [("k1", "kl"), ("kl", "kl")]),
    "keyword_campaigns": ("campaign_id", [("kc0", "kcO"), ("kcO", "kcO")]),
    "categories": ("category_id", [("c", "c")]),
    "shoppers": ("shopper_id", [("U0", "UO"), ("UO", "UO")]),
}


def test_0038_backfills_id_skeletons_and_look_alikes_are_found_by_them(database_url):
    seed_at(database_url, BEFORE, ROWS)
    migrate.upgrade(database_url)
    for table, (key, expected) in SKELETONS.items():
        rows = query(database_url, f"SELECT {key}, {key}_skeleton FROM {table} ORDER BY {key}")
        assert sorted(r for r in rows if r[0] in dict(expected)) == sorted(expected), table
        assert [(k, s) for k, s in rows if s != skeleton(k)] == [], table  # every batch filled
    assert len(query(database_url, "SELECT product_id FROM products")) == MANY + 2
    assert migrate.schema_diff(database_url) == []

    engine = make_engine(database_url)
    start = datetime(2026, 7, 1, tzinfo=UTC)
    try:
        for look_alike in ("kI", "\uff4b1"):  # a capital I; ｋ1, full width, stored as k1 (`kl` is)
            with pytest.raises(ValidationError) as refused, transaction(make_session_factory(engine)) as s:
                data = campaigns.CampaignInput(
                    "S", "email", "9", start, start + timedelta(1), "0", look_alike
                )
                campaigns.create_campaign(s, data)
            assert refused.value.code == "confusable_name"
        with transaction(make_session_factory(engine)) as s:
            campaigns.create_campaign(
                s, campaigns.CampaignInput("S", "email", "9", start, start + timedelta(1))
            )
    finally:
        engine.dispose()

    migrate.downgrade(database_url, BEFORE)
    assert all(f"{key}_skeleton" not in columns(database_url, t) for t, (key, _) in SKELETONS.items())
    assert len(query(database_url, "SELECT campaign_id FROM campaigns")) == 4  # rows kept
    migrate.upgrade(database_url)  # and up again
    assert migrate.schema_diff(database_url) == []
