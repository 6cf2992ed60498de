"""Migration 0040 on stored merchants: a rejected application stops holding its licence (the holder can
apply), a live merchant keeps holding its own, and every merchant and the rows referring to them survive
the table copy both ways."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.errors import Conflict
from commerce.services import merchants
from tests.commerce.migration_data import query, seed_at

BEFORE = "0039_location_owner"
NOW = "'2026-06-01 12:00:00+00:00'"
MERCHANT = "('{0}', '{0}', '{1}', '{1}', 'NZ', '{2}', '{3}', " + NOW + ")"
ROWS = [
    "INSERT INTO merchants (merchant_id, merchant_id_skeleton, name, name_skeleton, country, licence_no,"
    " status, created_at) VALUES "
    + ", ".join(
        MERCHANT.format(*row)
        for row in [("m1", "Kiwi", "NZ-1", "approved"), ("m2", "Squat", "NZ-2", "rejected")]
    ),
    "INSERT INTO brand_authorizations (merchant_id, brand, brand_skeleton)"
    " VALUES ('m1', 'Kiwi', 'Kiwi'), ('m2', 'Kiwi', 'Kiwi')",
    "INSERT INTO merchant_status_changes (merchant_id, from_status, to_status, changed_at)"
    f" VALUES ('m2', 'pending', 'rejected', {NOW})",
]


def _apply(factory, name: str, licence: str) -> str:
    with transaction(factory) as s:
        return merchants.apply(s, merchants.MerchantApplication(name, "NZ", licence, ["Kiwi"])).merchant_id


def test_0040_frees_a_rejected_applications_licence_and_keeps_every_row(database_url):
    seed_at(database_url, BEFORE, ROWS)
    kept = {
        table: query(database_url, f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("merchants", "brand_authorizations", "merchant_status_changes")
    }
    migrate.upgrade(database_url)
    assert migrate.schema_diff(database_url) == []
    assert {t: query(database_url, f"SELECT * FROM {t} ORDER BY 1, 2") for t in kept} == kept

    engine = make_engine(database_url)
    try:
        factory = make_session_factory(engine)
        holder = _apply(factory, "Squat Victim", "NZ-2")  # m2's rejected application held it
        with pytest.raises(Conflict) as taken:
            _apply(factory, "Kiwi Again", "NZ-1")  # m1 (approved) still holds its own
        assert taken.value.code == "duplicate_licence"
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the index holds it too
            conn.exec_driver_sql(
                "INSERT INTO merchants (merchant_id, merchant_id_skeleton, name, name_skeleton, country,"
                " licence_no, status, created_at) VALUES " + MERCHANT.format("m9", "X", "NZ-1", "pending")
            )
        with engine.begin() as conn:  # the constraint back holds one merchant per licence: the later goes
            conn.exec_driver_sql(f"DELETE FROM brand_authorizations WHERE merchant_id = '{holder}'")
            conn.exec_driver_sql(f"DELETE FROM merchant_status_changes WHERE merchant_id = '{holder}'")
            conn.exec_driver_sql(f"DELETE FROM merchants WHERE merchant_id = '{holder}'")
    finally:
        engine.dispose()
    migrate.downgrade(database_url, BEFORE)
    assert {t: query(database_url, f"SELECT * FROM {t} ORDER BY 1, 2") for t in kept} == kept
