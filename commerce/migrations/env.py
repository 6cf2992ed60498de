"""Alembic environment: the metadata of every ORM module, one URL source, identical DDL on both backends."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from commerce.all_models import metadata
from commerce.db import make_engine
from commerce.sqltypes import UTCDateTime

config = context.config


def database_url() -> str:
    """`-x url=...` wins, then `sqlalchemy.url` in the config, then the application settings."""
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from crosscart.settings import Settings

    settings = Settings()
    settings.ensure_dirs()
    return settings.resolved_database_url


def render_item(type_, obj, autogen_context):
    """Write UTCDateTime as the plain DateTime(timezone=True) it stores, so revisions need no app imports."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_offline() -> None:
    context.configure(
        url=database_url(), target_metadata=metadata, literal_binds=True, render_item=render_item
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = make_engine(database_url(), poolclass=pool.NullPool)
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connectable)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
