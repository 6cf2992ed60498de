"""Migration 0042 on stored ad impressions: each is kept (naming no client, so an anonymous one counts
alone in the click rate, as before), new ones name their anonymous viewer and count once per viewer and
day; downgrade drops the column and keeps every row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from commerce import migrate
from commerce.ads import AdImpression
from commerce.db import make_engine, make_session_factory, transaction
from commerce.services import ads
from tests.commerce.migration_data import columns, query, seed_at

BEFORE = "0041_location_skeletons"
NOW = "'2026-06-01 12:00:00+00:00'"
SHOWN = datetime(2026, 6, 1, 12, tzinfo=UTC)
IMPRESSION = "('{0}', 'kc1', 1, 'p1', {1}, 1, 0.30, '2026-06-01 {2}:00:00+00:00')"
ROWS = [
    "INSERT INTO merchants (merchant_id, merchant_id_skeleton, name, name_skeleton, country, licence_no,"
    f" status, created_at) VALUES ('m1', 'rnl', 'M', 'M', 'JP', 'L1', 'approved', {NOW})",
    "INSERT INTO categories (category_id, category_id_skeleton, name, vat_rate, consumption_tax_rate,"
    " tariff_rate, commission_rate, repurchasable) VALUES ('c', 'c', 'C', 0.13, 0, 0.1, 0.05, false)",
    "INSERT INTO products (product_id, product_id_skeleton, sku, merchant_id, title, category_id, brand,"
    " origin_country, price, fulfillment, weight_g, self_operated, status, created_at) VALUES"
    f" ('p1', 'pl', 'S-1', 'm1', 'T', 'c', 'B', 'JP', 10, 'bonded', 500, false, 'listed', {NOW})",
    "INSERT INTO keyword_campaigns (campaign_id, campaign_id_skeleton, merchant_id, name, daily_budget,"
    f" status, created_at) VALUES ('kc1', 'kcl', 'm1', 'K', 100, 'active', {NOW})",
    "INSERT INTO ad_keywords (keyword_id, campaign_id, keyword, match_type, bid, status)"
    " VALUES (1, 'kc1', 'tea', 'broad', 0.50, 'active')",
    "INSERT INTO ad_impressions (token_id, campaign_id, keyword_id, product_id, shopper_id, slot, price,"
    " shown_at) VALUES "
    + ", ".join(
        IMPRESSION.format(token, shopper, hour)
        for token, shopper, hour in [
            ("a1", "NULL", 10),
            ("a2", "NULL", 11),
            ("s1", "'s1'", 10),
            ("s2", "'s1'", 11),
        ]
    ),  # fmt: skip
]


def _claim(token_id: str, client: str) -> ads.ImpressionClaim:
    return ads.ImpressionClaim(token_id, "kc1", 1, "p1", 1, "0.30", None, 0, client)


def test_0042_keeps_stored_impressions_and_new_ones_count_once_per_viewer_and_day(database_url):
    seed_at(database_url, BEFORE, ROWS)
    migrate.upgrade(database_url)
    assert migrate.schema_diff(database_url) == []
    stored = "SELECT token_id, shopper_id, client FROM ad_impressions ORDER BY token_id"
    assert query(database_url, stored) == [("a1", None, None), ("a2", None, None), ("s1", "s1", None),
                                          ("s2", "s1", None)]  # fmt: skip
    engine = make_engine(database_url)
    try:
        factory = make_session_factory(engine)
        with transaction(factory) as s:
            later = [(_claim(f"c{i}", "tag-1"), SHOWN + timedelta(hours=i)) for i in range(3)]
            ads.record_impressions(s, [*later, (_claim("next-day", "tag-1"), SHOWN + timedelta(days=1))])
        with factory() as s:
            counted = ads.viewer_days(s, AdImpression, AdImpression.shown_at, SHOWN - timedelta(days=1))
        # the two stored anonymous ones alone, the shopper's once, the tagged client's once a day
        assert counted == {("kc1", "p1"): 2 + 1 + 2}
    finally:
        engine.dispose()

    migrate.downgrade(database_url, BEFORE)
    assert "client" not in columns(database_url, "ad_impressions")
    prices = query(database_url, "SELECT price FROM ad_impressions")
    assert len(prices) == 8 and {Decimal(str(p)) for (p,) in prices} == {Decimal("0.30")}
