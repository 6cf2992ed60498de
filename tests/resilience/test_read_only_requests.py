"""A GET's own transaction is read-only (serving.deps.reads_only): on SQLite it began BEGIN IMMEDIATE and
so queued behind every writer (and every other reader) for the write lock; a write inside it is refused
loudly (a 500, the database untouched and not called down), and a GET marked `writes_on_get` still
writes. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update

from commerce.catalog import Stock
from commerce.db import make_engine, make_session_factory
from serving.deps import SessionDep, writes_on_get
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth


def _quantity(factory) -> int:
    with factory() as s:
        return s.scalar(select(Stock.quantity).where(Stock.product_id == "p01"))


@pytest.fixture
def api(database_url, tmp_path, open_client):
    """(client, seeded factory, keys) over an engine whose lock wait (SQLite: busy timeout) is 0.3 s."""
    factory = seeded_factory(database_url, stock=10)
    keys = make_keys(factory)
    engine = make_engine(database_url, statement_timeout=0.3)
    client = open_client(fault_settings(tmp_path), make_session_factory(engine))
    app = client.app

    @app.get("/test/restock")
    def restock(session: SessionDep) -> dict:
        session.execute(update(Stock).where(Stock.product_id == "p01").values(quantity=Stock.quantity + 1))
        return {"read_only": session.connection().get_execution_options().get("read_only", False)}

    @app.get("/test/restock-orm")
    def restock_orm(session: SessionDep) -> dict:
        session.scalars(select(Stock).where(Stock.product_id == "p01")).one().quantity += 1
        return {}  # flushed at the commit, after the endpoint returned

    @app.get("/test/marked-restock")
    @writes_on_get
    def marked_restock(session: SessionDep) -> dict:
        return restock(session)

    @app.post("/test/restock")
    def posted_restock(session: SessionDep) -> dict:
        return restock(session)

    yield client, factory, keys
    engine.dispose()
    factory.kw["bind"].dispose()


@pytest.mark.parametrize("path", ["/test/restock", "/test/restock-orm"])
def test_a_write_inside_a_get_fails_loudly_and_changes_nothing(api, path):
    client, factory, _ = api
    # the test client re-raises the error of an unhandled 500 (a 503 for an outage would be answered)
    with pytest.raises(Exception, match="readonly database|read-only transaction"):
        client.get(path)
    assert _quantity(factory) == 10
    assert client.app.state.serving.db_health.up  # SQLite says OperationalError: not an outage though


def test_a_get_marked_writes_on_get_and_a_post_still_write(api):
    client, factory, _ = api
    assert client.get("/test/marked-restock").json() == {"read_only": False}
    assert client.post("/test/restock").json() == {"read_only": False}
    assert _quantity(factory) == 12
    # the connection the read-only request used is read-write again for the next writer (pooled)
    with pytest.raises(Exception, match="readonly database|read-only transaction"):
        client.get("/test/restock")
    assert client.post("/test/restock").status_code == 200 and _quantity(factory) == 13


def test_get_pages_answer_while_a_writer_holds_the_write_lock(api):
    """On SQLite every GET used to wait for BEGIN IMMEDIATE's write lock and got a 503 past the busy
    timeout; on PostgreSQL a row lock never held up a read. The key is looked up before (cached)."""
    client, factory, keys = api
    headers = auth(keys["admin"])
    pages = ["/v1/products/p01", "/v1/coupons", "/v1/shoppers/s1/orders", "/v1/audit-log"]
    assert [client.get(p, headers=headers).status_code for p in pages] == [200] * len(pages)
    holder = factory.kw["bind"].connect()
    holder.begin()  # SQLite: BEGIN IMMEDIATE, the write lock; PostgreSQL: the row's lock
    holder.execute(text("UPDATE stock SET quantity = quantity + 5 WHERE product_id = 'p01'"))
    try:
        answers = {p: client.get(p, headers=headers) for p in pages}
        holder.execute(text("SELECT 1"))  # still open: the pages were read beside it
    finally:
        holder.rollback()
        holder.close()
    assert {p: a.status_code for p, a in answers.items()} == dict.fromkeys(pages, 200)
    assert answers["/v1/products/p01"].json()["product_id"] == "p01"
