"""Migration 0046 on stored products: a SKU becomes unique per merchant (a rival may use one another merchant
uses, the merchant itself still may not twice), every product and the rows referring to them survive the
table copy both ways, and the products table's skeleton trigger (0038, SQLite) is kept and still fires."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.errors import Conflict
from commerce.services import catalog
from tests.commerce.migration_data import NOW, SELLER_ROWS, query, seed_at

BEFORE = "0045_open_campaign_product"
COLUMNS = (
    "product_id, product_id_skeleton, sku, merchant_id, title, category_id, brand, origin_country, price,"
    " fulfillment, weight_g, self_operated, status, created_at"
)
PRODUCT = (
    "('{0}', '{0}', '{1}', '{2}', 'T', 'c', 'B', 'JP', {3}, 'bonded', 500, false, 'listed', " + NOW + ")"
)
ROWS = [
    *SELLER_ROWS,  # m1 sells p1 as S-1
    "INSERT INTO merchants (merchant_id, merchant_id_skeleton, name, name_skeleton, country, licence_no,"
    f" status, created_at) VALUES ('m2', 'rn2', 'R', 'R', 'JP', 'L2', 'approved', {NOW})",
    "INSERT INTO brand_authorizations (merchant_id, brand, brand_skeleton)"
    " VALUES ('m1', 'B', 'B'), ('m2', 'B', 'B')",
    f"INSERT INTO products ({COLUMNS}) VALUES " + PRODUCT.format("p2", "S-2", "m2", 10),
    "INSERT INTO warehouses (warehouse_id, warehouse_id_skeleton, name, mode)"
    " VALUES ('w1', 'w1', 'W', 'bonded')",
    "INSERT INTO stock (product_id, location, quantity, reserved)"
    " VALUES ('p1', 'w1', 5, 1), ('p2', 'w1', 3, 0)",
]
KEPT = ("products", "stock", "brand_authorizations")


def _snapshot(url: str) -> dict:
    """The rows of `KEPT` and, on SQLite, every trigger (PostgreSQL has no skeleton trigger: NOT NULL)."""
    rows = {table: query(url, f"SELECT * FROM {table} ORDER BY 1, 2") for table in KEPT}
    if url.startswith("sqlite"):
        rows["triggers"] = query(
            url, "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY 1"
        )
    return rows


def _create(factory, merchant_id: str, product_id: str, sku: str) -> str:
    data = catalog.ProductInput(
        sku, merchant_id, "T", "c", "B", "JP", "10.00", "bonded", product_id=product_id
    )
    with transaction(factory) as s:
        return catalog.create_product(s, data).sku


def _insert(engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql))


def test_0046_makes_a_sku_unique_per_merchant_and_keeps_rows_and_triggers(database_url):
    seed_at(database_url, BEFORE, ROWS)
    kept = _snapshot(database_url)
    if database_url.startswith("sqlite"):
        assert ("products_product_id_skeleton_required", "products") in {t[:2] for t in kept["triggers"]}
    migrate.upgrade(database_url)
    assert migrate.schema_diff(database_url) == []
    assert _snapshot(database_url) == kept

    engine = make_engine(database_url)
    try:
        factory = make_session_factory(engine)
        assert _create(factory, "m2", "p3", "S-1") == "S-1"  # m1's SKU: m2 may use it
        with pytest.raises(Conflict) as taken:
            _create(factory, "m1", "p4", "S-1")  # m1's own: not twice
        assert taken.value.code == "duplicate_sku"
        with pytest.raises(IntegrityError):  # the constraint holds it too
            _insert(
                engine, f"INSERT INTO products ({COLUMNS}) VALUES " + PRODUCT.format("p5", "S-1", "m1", 10)
            )
        with pytest.raises(IntegrityError, match="price_positive"):  # the copy keeps CHECK constraints
            _insert(
                engine, f"INSERT INTO products ({COLUMNS}) VALUES " + PRODUCT.format("p5", "S-5", "m1", 0)
            )
        with pytest.raises(IntegrityError, match="product_id_skeleton"):  # the skeleton trigger still fires
            _insert(
                engine,
                f"INSERT INTO products ({COLUMNS.replace('product_id_skeleton, ', '')}) VALUES"
                f" ('p6', 'S-6', 'm1', 'T', 'c', 'B', 'JP', 10, 'bonded', 500, false, 'listed', {NOW})",
            )
    finally:
        engine.dispose()

    with pytest.raises(RuntimeError, match=r"several merchants use SKU\(s\) \['S-1'\]"):
        migrate.downgrade(database_url, BEFORE)  # m1 and m2 both use S-1
    assert migrate.current(database_url) == "0046_sku_per_merchant"
    engine = make_engine(database_url)
    try:
        _insert(engine, "DELETE FROM products WHERE product_id = 'p3'")
    finally:
        engine.dispose()
    migrate.downgrade(database_url, BEFORE)
    assert _snapshot(database_url) == kept
