"""Migration 0041 on stock locations stored before their skeletons were: each gets its Unicode skeleton
(UTS #39) beside it, over more rows than one backfill batch, look-alikes stored side by side one skeleton
(the index is not unique, so they stay, with their stock); a new look-alike is then refused by it, and a
location stored without its skeleton is refused on SQLite as on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.errors import ValidationError
from commerce.services import catalog
from commerce.sqltypes import skeleton
from tests.commerce.migration_data import SELLER_ROWS, columns, query, seed_at

BEFORE = "0040_live_licence"
MANY = 2_500  # more than the migration's batch of 2,000
CYRILLIC_HH = "\u041d\u041d-1"  # НН-1, stored beside HH-1 before the check
WAREHOUSE = "('{0}', '{0}', 'bonded', 'm1')"
ROWS = [
    *SELLER_ROWS,
    "INSERT INTO warehouses (warehouse_id, name, mode, owner_merchant_id) VALUES "
    + ", ".join(WAREHOUSE.format(w) for w in ["HH-1", CYRILLIC_HH, *(f"w-{i:04d}" for i in range(MANY))]),
    "INSERT INTO stock (product_id, location, quantity, reserved) VALUES ('p1', 'HH-1', 5, 0),"
    f" ('p1', '{CYRILLIC_HH}', 3, 1)",
]


def test_0041_backfills_location_skeletons_and_look_alikes_are_found_by_them(database_url):
    seed_at(database_url, BEFORE, ROWS)
    migrate.upgrade(database_url)
    rows = query(database_url, "SELECT warehouse_id, warehouse_id_skeleton FROM warehouses")
    assert len(rows) == MANY + 2
    assert [(w, s) for w, s in rows if s != skeleton(w)] == []  # every batch filled
    assert {s for w, s in rows if w in ("HH-1", CYRILLIC_HH)} == {"HH-l"}  # both kept, one skeleton
    assert migrate.schema_diff(database_url) == []

    engine = make_engine(database_url)
    try:
        factory = make_session_factory(engine)
        # Greek ΗΗ-1 beside both; a Cyrillic ԝ beside a location of the second batch
        for look_alike, stored in (("\u0397\u0397-1", {"HH-1", CYRILLIC_HH}), ("\u051d-2400", {"w-2400"})):
            with pytest.raises(ValidationError) as refused, transaction(factory) as s:
                catalog.set_stock(s, "p1", look_alike, 1)
            assert refused.value.code == "confusable_name"
            assert any(f"looks like the existing {w!r}" in str(refused.value) for w in stored)
        with transaction(factory) as s:
            catalog.set_stock(s, "p1", CYRILLIC_HH, 4)  # a stored look-alike keeps its stock
            catalog.set_stock(s, "p1", "\u0421\u043a\u043b\u0430\u0434-1", 2)  # Склад-1: like none
        with pytest.raises(IntegrityError, match="warehouse_id_skeleton"), engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO warehouses (warehouse_id, name, mode) VALUES ('raw', 'R', 'bonded')"
            )
    finally:
        engine.dispose()

    migrate.downgrade(database_url, BEFORE)
    assert "warehouse_id_skeleton" not in columns(database_url, "warehouses")
    assert len(query(database_url, "SELECT warehouse_id FROM warehouses")) == MANY + 3  # rows kept
    stock = query(database_url, "SELECT location, quantity, reserved FROM stock")
    assert sorted(stock) == sorted(
        [("HH-1", 5, 0), (CYRILLIC_HH, 4, 1), ("\u0421\u043a\u043b\u0430\u0434-1", 2, 0)]
    )
    migrate.upgrade(database_url)  # and up again
    assert migrate.schema_diff(database_url) == []
