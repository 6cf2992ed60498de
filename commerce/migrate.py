"""Run Alembic migrations from code (CLI, tests, demo) on a URL, without touching alembic.ini's URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext

from commerce.db import make_engine

INI_PATH = Path(__file__).with_name("migrations") / "alembic.ini"


def alembic_config() -> Config:
    return Config(str(INI_PATH))


def _with_connection(url: str, action) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            action(cfg)
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    _with_connection(url, lambda cfg: command.upgrade(cfg, revision))


def downgrade(url: str, revision: str = "-1") -> None:
    _with_connection(url, lambda cfg: command.downgrade(cfg, revision))


def current(url: str) -> str | None:
    """The revision the database is at (None for an empty database)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def schema_diff(url: str) -> list:
    """Differences between the database and the ORM metadata, as Alembic autogenerate sees them."""
    from alembic.autogenerate import compare_metadata

    from commerce.all_models import metadata

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            ctx = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(ctx, metadata)
    finally:
        engine.dispose()
