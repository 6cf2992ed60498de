"""Migration 0039 on locations registered before they had owners: one stocked by a single merchant only
becomes that merchant's own (then refused to another merchant), one shared by merchants, a partner's and
an unstocked one stay platform locations; every stock row survives the table copy both ways."""

from __future__ import annotations

import logging

import pytest

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.errors import Forbidden
from commerce.services import catalog
from tests.commerce.migration_data import columns, query, seed_at

BEFORE = "0038_id_skeletons"
NOW = "'2026-06-01 12:00:00+00:00'"
PRODUCT = "('{0}', 'x', 'S-{0}', '{1}', 'T', 'c', 'B', 'JP', 10, 'bonded', 500, false, 'listed', " + NOW + ")"
ROWS = [
    "INSERT INTO merchants (merchant_id, merchant_id_skeleton, name, name_skeleton, country, licence_no,"
    f" status, created_at) VALUES ('m1', 'x', 'M', 'M', 'JP', 'L1', 'approved', {NOW}),"
    f" ('m2', 'x', 'N', 'N', 'JP', 'L2', 'approved', {NOW})",
    "INSERT INTO categories (category_id, category_id_skeleton, name, vat_rate, consumption_tax_rate,"
    " tariff_rate, commission_rate, repurchasable) VALUES ('c', 'c', 'C', 0.13, 0, 0.1, 0.05, false)",
    "INSERT INTO products (product_id, product_id_skeleton, sku, merchant_id, title,"
    " category_id, brand, origin_country, price, fulfillment, weight_g, self_operated, status, created_at)"
    " VALUES " + ", ".join(PRODUCT.format(p, m) for p, m in [("p1", "m1"), ("p2", "m1"), ("p3", "m2")]),
    "INSERT INTO logistics_partners (partner_id, name, mode, min_days, max_days)"
    " VALUES ('lp', 'L', 'bonded', 1, 3)",
    "INSERT INTO warehouses (warehouse_id, name, mode, partner_id) VALUES ('partner', 'P', 'bonded', 'lp'),"
    " ('own1', 'O1', 'bonded', NULL), ('own2', 'O2', 'bonded', NULL), ('shared', 'S', 'bonded', NULL),"
    " ('empty', 'E', 'bonded', NULL)",
    "INSERT INTO stock (id, product_id, location, quantity, reserved) VALUES (1, 'p1', 'own1', 5, 0),"
    " (2, 'p2', 'own1', 1, 0), (3, 'p1', 'shared', 2, 0), (4, 'p3', 'shared', 2, 0), (5, 'p3', 'own2', 4, 1),"
    " (6, 'p1', 'partner', 3, 0), (7, 'p3', 'partner', 3, 0)",
]
OWNERS = [("empty", None), ("own1", "m1"), ("own2", "m2"), ("partner", None), ("shared", None)]


def test_0039_gives_a_location_stocked_by_one_merchant_to_it_and_keeps_stock(database_url, caplog):
    seed_at(database_url, BEFORE, ROWS)
    stock_before = query(database_url, "SELECT * FROM stock ORDER BY id")
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        migrate.upgrade(database_url)
    assert "0039: 2 merchant locations now belong" in caplog.text
    assert "1 shared by several merchants and 1 holding no stock" in caplog.text
    owners = query(database_url, "SELECT warehouse_id, owner_merchant_id FROM warehouses ORDER BY 1")
    assert owners == OWNERS
    assert query(database_url, "SELECT * FROM stock ORDER BY id") == stock_before
    assert migrate.schema_diff(database_url) == []

    engine = make_engine(database_url)
    try:
        factory = make_session_factory(engine)
        with transaction(factory) as s, pytest.raises(Forbidden) as refused:
            catalog.set_stock(s, "p3", "own1", 1)  # m1's own location now
        assert refused.value.code == "location_forbidden"
        with transaction(factory) as s:  # a location already shared keeps serving both merchants
            catalog.set_stock(s, "p1", "shared", 9)
            catalog.set_stock(s, "p3", "shared", 9)
    finally:
        engine.dispose()

    migrate.downgrade(database_url, BEFORE)
    assert "owner_merchant_id" not in columns(database_url, "warehouses")
    assert len(query(database_url, "SELECT warehouse_id FROM warehouses")) == len(OWNERS)
    assert query(database_url, "SELECT id, location FROM stock ORDER BY id") == [
        (row[0], row[2]) for row in stock_before
    ]
