"""Helpers for migration tests: rows written at an old revision, then read back after upgrading."""

from __future__ import annotations

from sqlalchemy import inspect, text

from commerce import migrate
from commerce.db import make_engine

NOW = "'2026-06-01 12:00:00+00:00'"
# Merchant m1 selling product p1 in category c, in the schema of 0038 (id skeletons) and later.
SELLER_ROWS = [
    "INSERT INTO merchants (merchant_id, merchant_id_skeleton, name, name_skeleton, country, licence_no,"
    f" status, created_at) VALUES ('m1', 'rnl', 'M', 'M', 'JP', 'L1', 'approved', {NOW})",
    "INSERT INTO categories (category_id, category_id_skeleton, name, vat_rate, consumption_tax_rate,"
    " tariff_rate, commission_rate, repurchasable) VALUES ('c', 'c', 'C', 0.13, 0, 0.1, 0.05, false)",
    "INSERT INTO products (product_id, product_id_skeleton, sku, merchant_id, title, category_id, brand,"
    " origin_country, price, fulfillment, weight_g, self_operated, status, created_at) VALUES"
    f" ('p1', 'pl', 'S-1', 'm1', 'T', 'c', 'B', 'JP', 10, 'bonded', 500, false, 'listed', {NOW})",
]


def seed_at(url: str, revision: str, rows: list[str]) -> None:
    """Migrate to `revision` and insert `rows` (SQL written for that revision's schema)."""
    migrate.upgrade(url, revision)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for sql in rows:
                conn.execute(text(sql))
    finally:
        engine.dispose()


def columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def query(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()
