"""Dialect-aware `INSERT ... ON CONFLICT DO NOTHING`, the basis of idempotent loads on both backends."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

CHUNK_ROWS = 5_000


def insert_ignore_stmt(session: Session, table: Table, conflict_cols: Sequence[str] | None = None):
    """An INSERT on `table` that skips rows clashing with a unique key
    (any key when `conflict_cols` is None)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict_cols)
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict_cols)
    raise NotImplementedError(f"insert-or-ignore is not implemented for dialect {name!r}")


def insert_ignore(
    session: Session,
    table: Table,
    rows: Iterable[dict[str, Any]],
    conflict_cols: Sequence[str] | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> None:
    """Insert many rows in chunks (executemany), silently keeping rows that already exist."""
    stmt = insert_ignore_stmt(session, table, conflict_cols)
    rows = iter(rows)
    while chunk := list(islice(rows, chunk_rows)):
        session.execute(stmt, chunk)
