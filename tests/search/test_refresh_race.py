"""A product written while the search index refreshes is searchable as written once the refresh ends. The
refresh read the catalog, then wrote the index from that read: a write committed in between was
re-indexed at once and then undone by the refresh (its older copy written back, a new product removed, a
delisted one added again) until the next refresh, up to 30 s later. On every backend: the in-memory and
FTS5 indexes (per replica) on SQLite and PostgreSQL, and the PostgreSQL index (shared by the replicas)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from commerce.search.documents import load_documents
from commerce.search.index import sync
from crosscart.settings import Settings
from tests.search.conftest import search_app
from tests.search.test_api import ids
from tests.serving.conftest import auth

NEW = {
    "sku": "SKU-P9", "title": "Karimi 香水 Perfume Rose", "category_id": "C01-02", "brand": "Karimi",
    "origin_country": "JP", "price": "780.00", "fulfillment": "bonded", "stock": {"HZ-1": 4},
}  # fmt: skip


@pytest.fixture(params=["memory", "fts5", "postgresql"])
def replica(request, shop, engine, tmp_path):
    if request.param == "postgresql" and engine.dialect.name != "postgresql":
        pytest.skip("the postgresql search backend needs the PostgreSQL database")
    settings = Settings(
        data_dir=tmp_path,
        rate_limit_per_minute=10_000,
        search_backend=request.param,
        search_index_path=str(tmp_path / "search.db"),
        ads_token_secret="refresh-race-secret",
    )
    with TestClient(search_app(shop, settings, start_background=False)) as client:
        yield client


def test_a_write_during_a_refresh_is_searchable_when_the_refresh_ends(replica, keys, monkeypatch):
    import serving.search

    service, real_sync, pending = replica.app.state.search, serving.search.sync, []

    def written_between_read_and_sync(index, docs, **kwargs):
        pending.pop()()  # the write commits and is re-indexed after the refresh read the catalog
        return real_sync(index, docs, **kwargs)

    def during_a_refresh(write):
        pending.append(write)
        service.refresh()
        assert not pending

    def search(query: str) -> list[str]:
        return ids(replica.get("/v1/search", params={"q": query}).json())

    monkeypatch.setattr(serving.search, "sync", written_between_read_and_sync)
    made = []
    during_a_refresh(
        lambda: made.append(replica.post("/v1/merchants/M1/products", json=NEW, headers=auth(keys["m1"])))
    )
    pid = made[0].json()["product_id"]
    assert search("香水") == [pid]  # was removed: not in the refresh's read
    during_a_refresh(
        lambda: replica.patch(
            f"/v1/products/{pid}", json={"title": "Karimi 香水 Jasmine"}, headers=auth(keys["m1"])
        )
    )
    assert search("jasmine") == [pid] and search("rose") == []  # was the read's title again
    during_a_refresh(
        lambda: replica.patch(f"/v1/products/{pid}", json={"status": "delisted"}, headers=auth(keys["m1"]))
    )
    assert search("香水") == []  # was added again
    monkeypatch.setattr(serving.search, "sync", real_sync)
    service.refresh()  # the next refresh, with nothing written during it, agrees
    assert search("香水") == [] and service.index.count() == 7


def test_sync_leaves_what_was_re_indexed_after_its_snapshot(index, shop):
    """`before` is read before the documents: an entry that differs from it by the time it is written
    was re-indexed from a later read (written, changed or removed), and is left as it is; the rest is
    reconciled as without it."""
    with shop() as session:
        docs = {d.product_id: d for d in load_documents(session)}
    index.upsert([replace(docs["P3"], title="Velmar Headphones Old")])  # behind the catalog
    before = index.fingerprints()
    stale = list(docs.values())  # the refresh's read
    retitled = replace(docs["P1"], title="Karimi Face Cream Jasmine")
    created = replace(docs["P1"], product_id="P9", title="Karimi Perfume Rose")
    index.upsert([retitled, created])  # writes committed after the read, re-indexed at once
    index.remove(["P2"])
    assert sync(index, stale, before=before) == {"written": 1, "removed": 0, "total": 7}
    now = index.fingerprints()
    assert now["P1"] == retitled.fingerprint() and now["P9"] == created.fingerprint() and "P2" not in now
    assert now["P3"] == docs["P3"].fingerprint()  # changed before the read: reconciled
    assert sync(index, stale) == {"written": 2, "removed": 1, "total": 7}  # without `before`: undone
