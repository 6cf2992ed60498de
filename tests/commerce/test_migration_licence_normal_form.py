"""Migration 0032 on merchants stored before licence numbers were normalised: each licence gets the normal
form; two merchants whose licences share one keep both rows, the one already normal (else the oldest)
takes it and the other is flagged in its review log; a number with no valid normal form is flagged."""

from __future__ import annotations

import logging

import pytest

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.errors import Conflict, ValidationError
from commerce.services import merchants
from commerce.services._util import licence_number
from tests.commerce.migration_data import query, seed_at

BEFORE = "0031_console_generation"
MERCHANTS = [  # id, country, licence as stored, created on
    ("m1", "DE", "lic-7", "01"),  # its status reason: 'checked 2025'
    ("m2", "DE", "LIC-7", "02"),  # already normal: keeps it, m1 (older) is flagged
    ("m3", "DE", "\uff2c\uff29\uff23\u20119", "03"),  # full-width LIC, non-breaking hyphen
    ("m4", "FR", "lic-9", "04"),  # another country: no collision with m3
    ("m5", "CN", " ab\u3000 12 ", "05"),
    ("m6", "CN", "aB 12", "06"),  # none normal: m5 (oldest) takes 'AB 12', m6 is flagged
    ("m7", "JP", "OK-1", "07"),
    ("m8", "JP", "\u3000", "08"),  # normal form empty
    ("m9", "JP", "\u337f" * 20, "09"),  # NFKC makes 80 characters: too long
]
ROWS = [
    "INSERT INTO merchants (merchant_id, name, country, licence_no, status, created_at) VALUES"
    f" ('{m}', 'N', '{c}', '{lic}', 'approved', '2026-01-{day} 00:00:00')"
    for m, c, lic, day in MERCHANTS
] + ["UPDATE merchants SET status_reason = 'checked 2025' WHERE merchant_id = 'm1'"]
LICENCES = "SELECT merchant_id, licence_no FROM merchants ORDER BY merchant_id"
FLAGS = "SELECT merchant_id, from_status, to_status, reason FROM merchant_status_changes ORDER BY merchant_id"


def test_0032_normalises_licences_and_flags_collisions(database_url, caplog):
    seed_at(database_url, BEFORE, ROWS)
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        migrate.upgrade(database_url)
    after = [
        ("m1", "lic-7"),
        ("m2", "LIC-7"),
        ("m3", "LIC-9"),
        ("m4", "LIC-9"),
        ("m5", "AB 12"),
        ("m6", "aB 12"),
        ("m7", "OK-1"),
        ("m8", "\u3000"),
        ("m9", "\u337f" * 20),
    ]
    assert query(database_url, LICENCES) == after
    flags = query(database_url, FLAGS)
    assert [(m, f, t) for m, f, t, _ in flags] == [
        (m, "approved", "approved") for m in ("m1", "m6", "m8", "m9")
    ]
    reasons = {m: r for m, _, _, r in flags}
    assert "'LIC-7' in normal form, the licence of merchant 'm2'" in reasons["m1"]
    assert "'AB 12' in normal form, the licence of merchant 'm5'" in reasons["m6"]
    assert "no valid normal form ('')" in reasons["m8"] and "no valid normal form" in reasons["m9"]
    shown = dict(query(database_url, "SELECT merchant_id, status_reason FROM merchants"))
    assert shown["m1"] == reasons["m1"] + "; before: checked 2025" and shown["m6"] == reasons["m6"]
    assert shown["m2"] is None and shown["m7"] is None  # not flagged
    assert "0032: 3 licence numbers rewritten" in caplog.text and "m3 " in caplog.text
    assert "0032: 4 merchants flagged for review" in caplog.text
    assert migrate.schema_diff(database_url) == []

    migrate.downgrade(database_url, BEFORE)
    assert query(database_url, LICENCES) == after
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        migrate.upgrade(database_url)  # again: nothing to rewrite, each merchant flagged once
    assert "0032" not in caplog.text
    assert query(database_url, FLAGS) == flags
    assert dict(query(database_url, "SELECT merchant_id, status_reason FROM merchants")) == shown


def test_0032_normal_licence_refuses_a_second_registration(database_url):
    """After the upgrade an application with the typed-differently licence of an old merchant is a
    duplicate (before, `lic-5` stored did not match a new `LIC-5`)."""
    seed_at(database_url, BEFORE, [ROWS[0].replace("'m1'", "'m0'").replace("lic-7", "lic-5")])
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with (
            pytest.raises(Conflict, match="already registered"),
            transaction(make_session_factory(engine)) as session,
        ):
            merchants.apply(session, merchants.MerchantApplication("New", "DE", "LIC-5", ["B"]))
    finally:
        engine.dispose()


def test_the_licence_normal_form_is_stable_for_every_bmp_code_point():
    """Normalising a normal form again must not change it, or a stored licence never matches the same
    number typed again: upper-casing `ΐ` (U+0390) or `ß` before an accent gave letters NFKC composes.
    Each BMP code point alone and before a combining acute accent (~1 s)."""
    unstable = []
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        for typed in (chr(cp), chr(cp) + "\u0301"):
            try:
                once = licence_number(typed)
            except ValidationError:
                continue  # refused (invisible, empty): nothing stored
            if licence_number(once) != once:
                unstable.append(f"U+{cp:04X}")
    assert unstable == []


RECOMPOSE = [  # stored in 0032's form; 0035 composes them
    ("g1", "GR", "\u0399\u0308\u0301-1", "01"),  # ΐ upper-cased by 0032: Ϊ + combining acute
    ("g2", "GR", "\u0399\u0308\u0301-2", "02"),  # its new form is held by g3 already: flagged
    ("g3", "GR", "\u03aa\u0301-2", "03"),
    ("g4", "GR", "lic-1", "04"),  # flagged by 0032 (left as typed): untouched
    ("g6", "GR", "\u3000", "06"),  # no valid normal form: untouched
    ("g5", "GR", "OK-1", "05"),
]


def test_0035_recomposes_stored_licences_and_flags_collisions(database_url, caplog):
    seed_at(
        database_url,
        "0034_ad_click_client",
        [
            "INSERT INTO merchants (merchant_id, name, country, licence_no, status, created_at) VALUES"
            f" ('{m}', 'N', '{c}', '{lic}', 'approved', '2026-01-{day} 00:00:00')"
            for m, c, lic, day in RECOMPOSE
        ]
        + ["UPDATE merchants SET status_reason = 'review: ... (migration 0032)' WHERE merchant_id = 'g4'"],
    )
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        migrate.upgrade(database_url)
    after = [
        ("g1", "\u03aa\u0301-1"),
        ("g2", "\u0399\u0308\u0301-2"),
        ("g3", "\u03aa\u0301-2"),
        ("g4", "lic-1"),
        ("g5", "OK-1"),
        ("g6", "\u3000"),
    ]
    assert query(database_url, LICENCES) == after
    flags = query(database_url, FLAGS)
    assert [m for m, *_ in flags] == ["g2"] and "migration 0035" in flags[0][3]
    assert "0035: 1 licence numbers recomposed" in caplog.text
    migrate.downgrade(database_url, "0034_ad_click_client")
    migrate.upgrade(database_url)  # again: flagged once
    assert query(database_url, FLAGS) == flags and query(database_url, LICENCES) == after
    engine = make_engine(database_url)
    try:
        with (
            pytest.raises(Conflict, match="already registered"),
            transaction(make_session_factory(engine)) as session,
        ):  # ΐ typed again now matches g1
            merchants.apply(session, merchants.MerchantApplication("New", "GR", "\u0390-1", ["B"]))
    finally:
        engine.dispose()
