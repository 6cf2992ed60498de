"""Row locks taken to change a row, not its key, leave rows that reference it free to be inserted.

A price change, a commission change, a shipping rule and a keyword campaign's status lock their row
(so an audit entry names the value it replaced). Plain FOR UPDATE also blocks the KEY SHARE lock that
PostgreSQL's foreign-key check takes on the referenced row, so every checkout of a product (an order
line) waited for a price change to commit; FOR NO KEY UPDATE does not."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from commerce.catalog import Product
from commerce.db import transaction
from commerce.services import catalog, logistics
from commerce.services._util import locked_or_404


def _key_share_waits(factory, table: str, column: str, key: str) -> bool:
    """Whether another transaction's KEY SHARE lock on the row (a foreign-key check's) has to wait."""
    with factory() as other:
        other.execute(text("SET LOCAL lock_timeout = '300ms'"))
        try:
            other.execute(text(f"SELECT 1 FROM {table} WHERE {column} = :k FOR KEY SHARE"), {"k": key})
        except Exception as exc:  # noqa: BLE001  (the lock timeout's error, whatever the driver calls it)
            assert "lock timeout" in str(exc)
            return True
        finally:
            other.rollback()
    return False


@pytest.fixture
def pg_market(market, engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks: SQLite's BEGIN IMMEDIATE serializes writers instead")
    return market


CHANGES = {
    "price": ("products", "product_id", "p_tea", lambda s: catalog.update_product(s, "p_tea", price="88.00")),
    "commission": (
        "categories",
        "category_id",
        "food",
        lambda s: catalog.update_category_rates(s, "food", commission_rate=Decimal("0.07")),
    ),
    "shipping rule": (
        "merchants",
        "merchant_id",
        "m_ok",
        lambda s: logistics.set_shipping_rule(s, "m_ok", max_days=20),
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_holding_its_row_lock_lets_references_to_the_row_be_inserted(pg_market, change):
    table, column, key, act = CHANGES[change]
    with transaction(pg_market) as s:
        act(s)  # its lock held until this transaction ends
        assert not _key_share_waits(pg_market, table, column, key)


def test_a_plain_row_lock_does_block_them(pg_market):
    """The check above can fail: FOR UPDATE makes the same KEY SHARE wait."""
    with transaction(pg_market) as s:
        locked_or_404(s, Product, "p_tea", "product")
        assert _key_share_waits(pg_market, "products", "product_id", "p_tea")
