"""A search index file (`CROSSCART_SEARCH_BACKEND=fts5` with `CROSSCART_SEARCH_INDEX_PATH`) that is not a
SQLite database (overwritten, a wrong path) kept the API from starting, with "file is not a database"
naming no file, at every restart; one whose full-text pages were damaged started and answered every
search 500 ("vtable constructor failed"). The index is derived from the database: the API now starts,
indexes in memory, answers searches, names the file in the log and leaves it as it found it."""

from __future__ import annotations

import pytest

from tests.resilience.conftest import fault_settings, seeded_factory


def _zero_pages(path) -> None:
    """Keep the header page and the last one, zero the rest (a disk's bad blocks, a partial copy)."""
    data = bytearray(path.read_bytes())
    data[4096:-4096] = bytes(len(data) - 8192)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["not-sqlite", "pages-zeroed"])
def test_an_index_file_that_cannot_be_read_is_named_and_search_is_served_from_memory(
    tmp_path, open_client, caplog, damage
):
    path = tmp_path / "search.db"
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    settings = fault_settings(tmp_path, search_backend="fts5", search_index_path=str(path))
    if damage == "not-sqlite":
        path.write_bytes(b"\x00not an index" * 1000)
    else:
        index = open_client(settings, factory).app.state.search.index  # built in the file at start
        index._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the file
        _zero_pages(path)
    damaged = path.read_bytes()
    client = open_client(settings, factory)  # was: DatabaseError, no app; or 500 for every search
    answer = client.get("/v1/search", params={"q": "p01"})
    assert answer.status_code == 200 and [i["product_id"] for i in answer.json()["items"]] == ["p01"]
    assert any(f"search index {path} cannot be opened" in r.getMessage() for r in caplog.records)
    assert path.read_bytes() == damaged
    factory.kw["bind"].dispose()


@pytest.mark.parametrize("table", ["search_fts_idx", "search_fts_docsize"])
def test_an_index_file_that_opens_but_fails_the_lookups_is_replaced_in_memory(
    tmp_path, open_client, caplog, table
):
    """Damage that the open does not reach (a full-text table's page) used to fail every search that
    read it with 500 ("database disk image is malformed"), at every restart."""
    path = tmp_path / "search.db"
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    settings = fault_settings(tmp_path, search_backend="fts5", search_index_path=str(path))
    index = open_client(settings, factory).app.state.search.index
    index._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (root,) = index._conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    data = bytearray(path.read_bytes())
    data[(root - 1) * 4096 : root * 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    damaged = path.read_bytes()
    client = open_client(settings, factory)  # opens: the damage is in pages only lookups read
    for _ in range(2):
        answer = client.get("/v1/search", params={"q": "p01"})
        assert answer.status_code == 200 and [i["product_id"] for i in answer.json()["items"]] == ["p01"]
    named = [r for r in caplog.records if f"search index {path} is damaged" in r.getMessage()]
    assert len(named) == 1  # replaced once, not at every lookup
    assert path.read_bytes() == damaged
    factory.kw["bind"].dispose()
