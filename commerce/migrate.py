"""Run Alembic migrations from code (CLI, tests, demo) on a URL, without touching alembic.ini's URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.exc import OperationalError

from commerce.db import make_engine

INI_PATH = Path(__file__).with_name("migrations") / "alembic.ini"

#: How long a migration statement waits for a lock on PostgreSQL by default (`crosscart db upgrade
#: --lock-timeout`). Waiting, it queues every later lock
#: request on its table behind its own: while an upgrade waited for a long report or a transaction left
#: open, every API write to that table waited too and was refused at its 0.3 s lock timeout, for as long
#: as the other session held on (6 of 7 writes refused over 3 s in the test; for ever, had it stayed).
LOCK_TIMEOUT_SECONDS = 5.0


class MigrationLocked(Exception):
    """A migration gave up waiting for a lock another session holds; nothing was applied."""


def alembic_config() -> Config:
    return Config(str(INI_PATH))


def _with_connection(url: str, action, lock_timeout: float) -> None:
    """Run `action` in one transaction (all its migrations or none), each statement waiting at most
    `lock_timeout` seconds for a lock on PostgreSQL (`MigrationLocked` past it)."""
    engine = make_engine(url, lock_timeout=lock_timeout)
    try:
        with engine.begin() as connection:
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            action(cfg)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        raise MigrationLocked(
            f"a migration waited more than {lock_timeout:g} s for a lock another session holds on a "
            "table it changes (a long query, a dump, a transaction left open; pg_stat_activity shows it), "
            "holding up the API's writes to that table meanwhile: nothing applied; retry once it ends"
        ) from exc
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head", lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
    _with_connection(url, lambda cfg: command.upgrade(cfg, revision), lock_timeout)


def downgrade(url: str, revision: str = "-1", lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
    _with_connection(url, lambda cfg: command.downgrade(cfg, revision), lock_timeout)


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
