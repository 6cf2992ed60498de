"""Read-only work (`commerce.db.read_only`) goes on while a writer holds the write lock: on SQLite it
used to take BEGIN IMMEDIATE and fail past the busy timeout ("refreshing experiments failed: database is
locked" during make run's warm-up); on PostgreSQL a row lock never stopped a read."""

from __future__ import annotations

from sqlalchemy import text

from commerce.db import make_engine, make_session_factory, transaction
from commerce.services.experiments import create_experiment, start_experiment
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth


def test_refreshes_and_key_lookups_go_on_while_a_writer_holds_the_write_lock(
    database_url, tmp_path, open_client
):
    factory = seeded_factory(database_url, buyers=1)
    keys = make_keys(factory, buyers=1)
    engine = make_engine(database_url, statement_timeout=0.3)  # SQLite: the busy timeout
    client = open_client(fault_settings(tmp_path), make_session_factory(engine))
    state, search = client.app.state.serving, client.app.state.search
    with transaction(factory) as s:
        create_experiment(s, "e", {"a": 1, "b": 1})
        start_experiment(s, "e")
    holder = factory.kw["bind"].connect()
    holder.begin()  # SQLite: BEGIN IMMEDIATE, the write lock; PostgreSQL: the rows' locks
    holder.execute(text("UPDATE stock SET quantity = quantity WHERE product_id = 'p01'"))
    try:
        assert state.catalog.refresh(), state.catalog.last_error
        assert state.experiments.refresh(), state.experiments.last_error
        search.refresh()
        rankings = client.get("/v1/rankings", headers=auth(keys["b0"]))  # the key is not cached yet
        holder.execute(text("SELECT 1"))  # still open: everything above ran beside it
    finally:
        holder.rollback()
        holder.close()
    assert [e.spec.name for e in state.experiments.current] == ["e"]
    assert "p01" in state.catalog.current.index
    assert rankings.status_code == 200, rankings.text
    engine.dispose()
    factory.kw["bind"].dispose()
