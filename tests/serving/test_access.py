"""API keys and demo keys on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

import commerce.all_models  # noqa: F401
from commerce.access import ApiKey
from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.services.access import authenticate, create_api_key, hash_key, revoke_api_key
from crosscart.cli.demo_keys import create_demo_keys
from tests.serving.conftest import NOW, seed_marketplace


@pytest.fixture
def factory(database_url):
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_keys_are_stored_hashed_bound_and_revocable(factory):
    seed_marketplace(factory)
    with transaction(factory) as s:
        key, plaintext = create_api_key(s, "shopper", shopper_id="s1")
        key_id = key.id
    with transaction(factory) as s:
        stored = s.get(ApiKey, key_id)
        assert stored.key_hash == hash_key(plaintext) and plaintext not in repr(stored)
        assert plaintext not in {stored.key_hash, stored.hint} and stored.created_at.tzinfo is not None
        found = authenticate(s, plaintext)
        assert (found.role, found.shopper_id) == ("shopper", "s1")
        assert authenticate(s, plaintext + "x") is None and authenticate(s, "not-ours") is None
        revoke_api_key(s, key_id)
    with transaction(factory) as s:
        assert authenticate(s, plaintext) is None
    for role, binding in [
        ("shopper", {}),
        ("merchant", {"shopper_id": "s1"}),
        ("admin", {"merchant_id": "m"}),
        ("root", {}),
        ("shopper", {"shopper_id": "nobody"}),  # bound to a shopper that does not exist
        ("merchant", {"merchant_id": "nobody"}),
    ]:
        with pytest.raises(ValueError), transaction(factory) as s:
            create_api_key(s, role, **binding)


def test_demo_keys_are_idempotent(factory, tmp_path):
    seed_marketplace(factory)
    first = create_demo_keys(factory, tmp_path)
    assert set(first["keys"]) == {"storefront", "marketer", "data_scientist", "admin", "shopper1", "merchant"}
    assert first["keys"]["shopper1"]["shopper_id"] == "s1"  # the only shopper with a paid order
    assert first["samples"]["merchant"] in {"m1", "m2"} and first["samples"]["product"]
    second = create_demo_keys(factory, tmp_path)
    assert second == first == json.loads((tmp_path / "demo-keys.json").read_text())
    with transaction(factory) as s:
        assert s.query(ApiKey).count() == 6
        assert authenticate(s, first["keys"]["admin"]["key"]).role == "admin"


def test_catalog_snapshot_from_database(factory):
    from serving.catalog_db import load_catalog

    seed_marketplace(factory)
    catalog = load_catalog(factory)
    eligible = set(catalog.product_ids[catalog.eligible].tolist())
    assert eligible == {"p01", "p02", "p03", "p04", "p05", "p06", "p07", "p08"}
    sales_7d = dict(zip(catalog.product_ids.tolist(), catalog.sales["7d"].tolist(), strict=True))
    assert sales_7d["p05"] == 10 and sales_7d["p08"] == 0 and catalog.sales["all"][catalog.index["p08"]] == 60
    assert set(catalog.product_ids[catalog.purchased["s1"]].tolist()) == {"p01", "p03"}
    assert catalog.product_ids[catalog.sponsored].tolist() == ["p08"]
    assert (
        bool(catalog.repurchasable[catalog.index["p01"]]) and not catalog.repurchasable[catalog.index["p03"]]
    )


def test_catalog_windows_end_where_the_snapshot_says(factory):
    """The period /v1/rankings reports is the one the counts came from: loaded as of 59 days ago, the
    7-day window holds p08's sale of 60 days ago and states those 7 days."""
    from serving.catalog_db import load_catalog

    seed_marketplace(factory)
    as_of = NOW - timedelta(days=59)
    catalog = load_catalog(factory, now=as_of)
    assert catalog.window_bounds("7d") == (as_of - timedelta(days=7), as_of, 7)
    assert catalog.window_bounds("all") == (None, as_of, None)
    assert catalog.sales["7d"][catalog.index["p08"]] == 60 and catalog.sales["7d"][catalog.index["p05"]] == 0
