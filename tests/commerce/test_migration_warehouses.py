"""Migration 0020a on a database with stock and orders: every location becomes a warehouse of its goods'
mode, every order line keeps its units as one allocation, and downgrading gives the line its row back."""

from __future__ import annotations

from commerce import migrate
from tests.commerce.migration_data import query, seed_at

BEFORE = "0017_keyword_ads"
NOW = "'2026-06-01 12:00:00+00:00'"
ROWS = [
    "INSERT INTO merchants (merchant_id, name, country, licence_no, status, created_at) "
    f"VALUES ('m1', 'M', 'JP', 'L1', 'approved', {NOW})",
    "INSERT INTO categories (category_id, name, vat_rate, consumption_tax_rate, tariff_rate, commission_rate,"
    " repurchasable) VALUES ('c', 'C', 0.13, 0, 0.1, 0.05, false)",
    "INSERT INTO products (product_id, sku, merchant_id, title, category_id, brand, origin_country, price,"
    f" fulfillment, weight_g, self_operated, status, created_at) VALUES ('p1', 'S1', 'm1', 'T', 'c', 'B', "
    f"'JP', 10, 'bonded', 500, false, 'listed', {NOW}), ('p2', 'S2', 'm1', 'T', 'c', 'B', 'JP', 10, "
    f"'direct_mail', 500, false, 'listed', {NOW})",
    "INSERT INTO stock (id, product_id, location, quantity, reserved) VALUES (1, 'p1', 'HZ-1', 5, 2),"
    " (2, 'p2', 'JP-1', 3, 0)",
    f"INSERT INTO shoppers (shopper_id, region, created_at) VALUES ('s1', 'Zhejiang', {NOW})",
    "INSERT INTO logistics_partners (partner_id, name, mode, min_days, max_days)"
    " VALUES ('lp', 'L', 'bonded', 1, 3)",
    "INSERT INTO orders (order_id, shopper_id, status, fulfillment, partner_id, tax_regime, identity_digest,"
    " declared_name, goods_total, discount_total, tax_total, total, created_at, delivery_earliest,"
    f" delivery_latest) VALUES (1, 's1', 'pending_payment', 'bonded', 'lp', 'cross_border', 'd', 'N', 20, 0,"
    f" 0, 20, {NOW}, {NOW}, {NOW})",
    "INSERT INTO order_lines (id, order_id, line_no, product_id, merchant_id, stock_id, quantity, list_price,"
    " unit_price, gross, discount, tax_rate, tax, total, commission, margin) VALUES (1, 1, 1, 'p1', 'm1', 1,"
    " 2, 10, 10, 20, 0, 0, 0, 20, 0, 0)",
]


def test_existing_stock_and_lines_move_to_warehouses_and_allocations(database_url):
    seed_at(database_url, BEFORE, ROWS)
    migrate.upgrade(database_url)
    assert query(database_url, "SELECT warehouse_id, mode FROM warehouses ORDER BY warehouse_id") == [
        ("HZ-1", "bonded"),
        ("JP-1", "direct_mail"),
    ]
    assert query(database_url, "SELECT order_line_id, stock_id, quantity FROM order_line_allocations") == [
        (1, 1, 2)
    ]
    migrate.downgrade(database_url, BEFORE)
    assert query(database_url, "SELECT id, stock_id FROM order_lines") == [(1, 1)]
