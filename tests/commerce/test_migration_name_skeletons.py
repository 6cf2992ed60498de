"""Migration 0036 on names stored before their skeletons were: each coupon id, merchant name, brand,
experiment and layer name gets its Unicode skeleton (UTS #39) beside it, look-alikes stored side by side
one skeleton, over more rows than one backfill batch; the look-alike check then finds them by it."""

from __future__ import annotations

import pytest

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.errors import ValidationError
from commerce.services import coupons
from commerce.sqltypes import skeleton
from tests.commerce.migration_data import columns, query, seed_at

BEFORE = "0035_licence_recompose"
NOW = "'2026-06-01 12:00:00+00:00'"
MANY = 2_500  # more than the migration's batch of 2,000
COUPON = "('{}', '', 'platform', 'amount_off', 5, 0, 'platform', 1, false, 0, 0, " + NOW + ")"
ROWS = [
    "INSERT INTO coupons (coupon_id, name, issuer, kind, value, min_spend, scope_type, per_shopper_limit,"
    " requires_grant, used, spent, created_at) VALUES "
    + ", ".join(
        COUPON.format(c) for c in ["PAY", "\u0420\u0410\u0423", *(f"c-{i:04d}" for i in range(MANY))]
    ),
    "INSERT INTO merchants (merchant_id, name, country, licence_no, status, created_at) VALUES"
    f" ('m1', 'ACME', 'DE', 'L-1', 'approved', {NOW}), ('m2', '\u0410\u0421\u041c\u0415', 'DE', 'L-2',"
    f" 'approved', {NOW})",
    "INSERT INTO brand_authorizations (id, merchant_id, brand) VALUES (1, 'm1', 'Solden'),"
    " (2, 'm2', 'Solden'), (3, 'm2', '\u0405olden')",
    f"INSERT INTO experiment_layers (id, name, salt, created_at) VALUES (1, 'home', 's', {NOW})",
    "INSERT INTO experiments (id, name, description, salt, status, layer_id, traffic_start, traffic_end,"
    " primary_metric, inference, created_at) VALUES"
    f" (1, 'promo', '', 's', 'draft', 1, 0, 1, 'conversion', 'fixed', {NOW}),"
    f" (2, 'prorno', '', 's', 'draft', NULL, 0, 1, 'conversion', 'fixed', {NOW})",
]
SKELETONS = {
    "coupons": ("coupon_id", [("PAY", "PAY"), ("\u0420\u0410\u0423", "PAY")]),  # Cyrillic РАУ
    "merchants": ("name", [("ACME", "ACME"), ("\u0410\u0421\u041c\u0415", "ACME")]),
    "brand_authorizations": (
        "brand",
        [("Solden", "Solden"), ("Solden", "Solden"), ("\u0405olden", "Solden")],
    ),
    "experiment_layers": ("name", [("home", "horne")]),
    "experiments": ("name", [("promo", "prorno"), ("prorno", "prorno")]),  # rn looks like m
}


def test_0036_backfills_skeletons_and_look_alikes_are_found_by_them(database_url):
    seed_at(database_url, BEFORE, ROWS)
    migrate.upgrade(database_url)
    for table, (name, expected) in SKELETONS.items():
        rows = query(database_url, f"SELECT {name}, {name}_skeleton FROM {table} ORDER BY {name}")
        assert sorted(r for r in rows if r in expected) == sorted(expected), table
        assert [(n, key) for n, key in rows if key != skeleton(n)] == [], table  # every batch filled
    assert migrate.schema_diff(database_url) == []

    engine = make_engine(database_url)
    try:
        with (
            pytest.raises(ValidationError, match="looks like the existing") as refused,
            transaction(make_session_factory(engine)) as s,
        ):
            greek = "\u03a1\u0391\u03a5"  # ΡΑΥ: a third spelling of PAY
            coupons.create_coupon(s, coupons.CouponInput(kind="amount_off", value="5", coupon_id=greek))
        assert refused.value.code == "confusable_name"
    finally:
        engine.dispose()

    migrate.downgrade(database_url, BEFORE)
    assert all(f"{name}_skeleton" not in columns(database_url, t) for t, (name, _) in SKELETONS.items())
    assert len(query(database_url, "SELECT coupon_id FROM coupons")) == MANY + 2  # rows kept
    migrate.upgrade(database_url)  # and up again
    assert migrate.schema_diff(database_url) == []


def test_a_name_inserted_without_its_skeleton_is_listed_filled_and_then_refused(database_url, monkeypatch):
    """0036 left SQLite's `*_skeleton` columns an empty default: a raw INSERT naming no skeleton stored
    '' and the look-alike check missed the row. `renormalise --dry-run` lists it (`stale_skeletons`),
    0037 fills it, and from then on such an INSERT is refused on SQLite as on PostgreSQL."""
    from sqlalchemy.exc import IntegrityError

    from commerce.coupons import Coupon
    from commerce.logistics import Warehouse
    from commerce.services import renormalise
    from commerce.services.renormalise import stale_skeletons

    ids = [*renormalise.KEPT_IDS.values(), Warehouse.warehouse_id]
    names = [c for c in renormalise.LOOKED_UP if c not in ids]
    monkeypatch.setattr(renormalise, "LOOKED_UP", names)  # 0036's schema: no id skeletons (0038, 0041) yet

    columns = ROWS[0].split(" VALUES ")[0]
    pay = f"{columns} VALUES {COUPON.format('PAY')}"  # names no skeleton: '' on SQLite at 0036
    given = columns[:-1] + ", coupon_id_skeleton) VALUES " + COUPON.format("{}")[:-1] + ", '{}')"
    rows = [given.format("PAY", "PAY"), given.format("\u0420\u0410\u0423", "")]  # Cyrillic РАУ, ''
    seed_at(database_url, "0036_name_skeletons", rows)
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s:
            assert stale_skeletons(s) == [(Coupon.coupon_id, "\u0420\u0410\u0423", "PAY")]
        migrate.upgrade(database_url)
        with make_session_factory(engine)() as s:
            assert stale_skeletons(s) == []
        with pytest.raises(IntegrityError, match="coupon_id_skeleton"), engine.begin() as conn:
            conn.exec_driver_sql(pay.replace("'PAY'", "'P\u0391Y'", 1))  # Greek Α; no skeleton named
    finally:
        engine.dispose()
    assert query(database_url, "SELECT coupon_id_skeleton FROM coupons") == [("PAY",), ("PAY",)]
    migrate.downgrade(database_url, "0036_name_skeletons")
    migrate.upgrade(database_url)
