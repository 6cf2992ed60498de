"""A search index file (`CROSSCART_SEARCH_BACKEND=fts5` with `CROSSCART_SEARCH_INDEX_PATH`) that is not a
SQLite database (overwritten, a wrong path) kept the API from starting, with "file is not a database"
naming no file, at every restart. The index is derived from the database: the API now starts, indexes in
memory, answers searches, names the file in the log and leaves it as it found it."""

from __future__ import annotations

from tests.resilience.conftest import fault_settings, seeded_factory


def test_an_index_file_that_is_not_sqlite_is_named_and_search_is_served_from_memory(
    tmp_path, open_client, caplog
):
    path = tmp_path / "search.db"
    path.write_bytes(b"\x00not an index" * 1000)
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    settings = fault_settings(tmp_path, search_backend="fts5", search_index_path=str(path))
    client = open_client(settings, factory)  # was: DatabaseError, no app
    answer = client.get("/v1/search", params={"q": "p01"})
    assert answer.status_code == 200 and [i["product_id"] for i in answer.json()["items"]] == ["p01"]
    assert any(f"search index {path} cannot be opened" in r.getMessage() for r in caplog.records)
    assert path.read_bytes() == b"\x00not an index" * 1000
    factory.kw["bind"].dispose()
