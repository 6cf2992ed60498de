"""Migration 0045 on keyword campaigns written before a product could be in only one open campaign:
each product is kept in one open campaign (active before paused, then the latest created, then the
greatest id) and taken out of the others, ended campaigns keep theirs, and the database then refuses a
second open campaign for a product until the first ends."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.services import ads
from tests.commerce.migration_data import SELLER_ROWS, columns, query, seed_at

BEFORE = "0044_ad_impression_recent_index"
PRODUCTS = ["p1", "p2", "p3", "p4"]
# (campaign, status, created on 2026-06-DD, products)
CAMPAIGNS = [
    ("kc-ended", "ended", 1, ["p1", "p3"]),
    ("kc-old", "active", 2, ["p1", "p2", "p4"]),
    ("kc-new", "active", 3, ["p1"]),
    ("kc-paused", "paused", 4, ["p2", "p3"]),
    ("kc-twin-a", "active", 5, ["p4"]),
    ("kc-twin-b", "active", 5, ["p4"]),
]
PRODUCT = (
    "INSERT INTO products (product_id, product_id_skeleton, sku, merchant_id, title, category_id, brand,"
    " origin_country, price, fulfillment, weight_g, self_operated, status, created_at) VALUES ('{0}', '{0}',"
    " 'S-{0}', 'm1', 'T', 'c', 'B', 'JP', 10, 'bonded', 500, false, 'listed', '2026-06-01 12:00:00+00:00')"
)
ROWS = [
    *SELLER_ROWS,
    *(PRODUCT.format(p) for p in PRODUCTS[1:]),
    *(
        "INSERT INTO keyword_campaigns (campaign_id, campaign_id_skeleton, merchant_id, name, daily_budget,"
        f" status, created_at) VALUES ('{c}', '{c}', 'm1', 'K', 100, '{status}',"
        f" '2026-06-0{day} 12:00:00+00:00')"
        for c, status, day, _ in CAMPAIGNS
    ),
    *(
        f"INSERT INTO keyword_campaign_products (campaign_id, product_id) VALUES ('{c}', '{p}')"
        for c, _, _, products in CAMPAIGNS
        for p in products
    ),
]
PROMOTED = "SELECT campaign_id, product_id FROM keyword_campaign_products ORDER BY campaign_id, product_id"
OPEN_ROW = "INSERT INTO keyword_campaign_products (campaign_id, product_id) VALUES ('{0}', '{1}')"


def _execute(url: str, sql: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def test_0045_keeps_each_product_in_one_open_campaign_and_the_database_holds_it(database_url):
    seed_at(database_url, BEFORE, ROWS)
    migrate.upgrade(database_url)
    assert migrate.schema_diff(database_url) == []
    assert query(database_url, PROMOTED) == [
        ("kc-ended", "p1"),  # ended: kept as it was
        ("kc-ended", "p3"),
        ("kc-new", "p1"),  # the latest active of kc-old, kc-new
        ("kc-old", "p2"),  # active before the later, paused kc-paused
        ("kc-paused", "p3"),  # the only open one (kc-ended is ended)
        ("kc-twin-b", "p4"),  # created with kc-twin-a: the greater id
    ]

    with pytest.raises(IntegrityError):  # a second open campaign for p1
        _execute(database_url, OPEN_ROW.format("kc-old", "p1"))
    engine = make_engine(database_url)
    try:
        with transaction(make_session_factory(engine)) as s:
            ads.update_campaign(s, "kc-new", status="ended")
    finally:
        engine.dispose()
    _execute(database_url, OPEN_ROW.format("kc-old", "p1"))  # ending kc-new freed it
    with pytest.raises(IntegrityError):
        _execute(database_url, OPEN_ROW.format("kc-paused", "p1"))

    migrate.downgrade(database_url, BEFORE)
    assert "campaign_open" not in columns(database_url, "keyword_campaign_products")
    assert len(query(database_url, PROMOTED)) == 7
    _execute(database_url, OPEN_ROW.format("kc-paused", "p1"))  # as before 0045
