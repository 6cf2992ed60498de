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


def test_demo_keys_are_private_and_written_whole_with_the_keys_they_hold(factory, tmp_path, monkeypatch):
    """The keys file (the keys' only copy) is 600 whatever the umask, never readable by others while it
    is written: it was written in place, 664 under umask 002 until its chmod. A write that fails (a full
    disk) or a commit that fails leaves the previous file whole and no key created: the write truncated
    the previous file, with the new keys committed."""
    import errno
    import os
    from pathlib import Path

    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    seed_marketplace(factory)
    data = tmp_path / "data"  # beside the SQLite file
    path = data / "demo-keys.json"
    write_text, modes = Path.write_text, []

    def recorded(self, data, *args, **kwargs):
        written = write_text(self, data, *args, **kwargs)
        modes.append(self.stat().st_mode & 0o777)
        return written

    def disk_fills_up(self, data, *args, **kwargs):
        write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    def keys() -> int:
        with factory() as s:
            return s.scalar(select(func.count()).select_from(ApiKey))

    mask = os.umask(0o002)
    try:
        monkeypatch.setattr(Path, "write_text", recorded)
        first = create_demo_keys(factory, data)
        assert modes == [0o600] and path.stat().st_mode & 0o777 == 0o600
        previous, created = path.read_text(), keys()
        with transaction(factory) as s:  # the next run creates an admin key again
            revoke_api_key(s, authenticate(s, first["keys"]["admin"]["key"]).id)

        monkeypatch.setattr(Path, "write_text", disk_fills_up)
        with pytest.raises(OSError, match="No space"):
            create_demo_keys(factory, data)
        assert path.read_text() == previous and keys() == created

        monkeypatch.setattr(Path, "write_text", write_text)
        commit = Session.commit
        monkeypatch.setattr(Session, "commit", lambda self: (_ for _ in ()).throw(RuntimeError("lost")))
        with pytest.raises(RuntimeError, match="lost"):
            create_demo_keys(factory, data)
        assert path.read_text() == previous and keys() == created  # the file's keys still the valid ones

        monkeypatch.setattr(Session, "commit", commit)
        again = create_demo_keys(factory, data)
    finally:
        os.umask(mask)
    assert keys() == created + 1 and again["keys"]["admin"] != first["keys"]["admin"]
    assert json.loads(path.read_text()) == again and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in data.iterdir()) == [path.name]
