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
from tests.commerce.migration_data import NOW, SELLER_ROWS, columns, query, seed_at

BEFORE = "0041_location_skeletons"
SHOWN = datetime(2026, 6, 1, 12, tzinfo=UTC)
IMPRESSION = "('{0}', 'kc1', 1, 'p1', {1}, 1, 0.30, '2026-06-01 {2}:00:00+00:00')"
ROWS = [
    *SELLER_ROWS,
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
