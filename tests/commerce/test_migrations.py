"""`alembic upgrade head` builds exactly the ORM schema (no autogenerate diff) on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect

from commerce import migrate
from commerce.all_models import metadata
from commerce.db import make_engine


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_head_matches_metadata_and_downgrade_empties(database_url):
    migrate.upgrade(database_url)
    assert migrate.current(database_url) is not None
    assert migrate.schema_diff(database_url) == []
    assert set(metadata.tables) <= table_names(database_url)
    migrate.downgrade(database_url, "base")
    assert table_names(database_url) == {"alembic_version"}
    assert migrate.current(database_url) is None
