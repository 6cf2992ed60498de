"""`commerce.db.read_only`: read-only work takes no write lock on SQLite (so it never holds up a writer)
and cannot write on either backend."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from commerce.catalog import Stock
from commerce.db import make_engine, make_session_factory, read_only, transaction


def test_a_write_through_a_read_only_session_is_refused(market):
    with read_only(market) as s, pytest.raises(DBAPIError) as refused:
        s.execute(update(Stock).where(Stock.product_id == "p_tea").values(quantity=0))
    # SQLite: PRAGMA query_only; PostgreSQL: a READ ONLY transaction
    assert "readonly" in str(refused.value) or "read-only" in str(refused.value)
    with transaction(market) as s:  # the pooled connection writes again in an ordinary transaction
        s.execute(update(Stock).where(Stock.product_id == "p_tea").values(quantity=7))
    with read_only(market) as s:
        assert set(s.scalars(select(Stock.quantity).where(Stock.product_id == "p_tea"))) == {7}


def test_a_long_read_only_transaction_does_not_block_a_writer(market, database_url):
    engine = market.kw["bind"]
    # A writer that gives up on the write lock after 0.5 s: a reader holding BEGIN IMMEDIATE stopped it.
    writer = make_session_factory(make_engine(database_url, statement_timeout=0.5))
    with read_only(market) as reader:
        before = reader.scalar(text("SELECT sum(quantity) FROM stock"))
        with transaction(writer) as w:  # commits while the reader is still open
            w.execute(update(Stock).where(Stock.product_id == "p_cream").values(quantity=Stock.quantity + 1))
        if engine.dialect.name == "sqlite":  # a deferred transaction reads one snapshot (WAL)
            assert reader.scalar(text("SELECT sum(quantity) FROM stock")) == before
    with read_only(market) as s:
        assert s.scalar(text("SELECT sum(quantity) FROM stock")) == before + 1
    writer.kw["bind"].dispose()
