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


def insert_rows_fast(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], *, ignore_conflicts: bool = False
) -> None:
    """executemany straight on the DB driver, each value converted by its column type's bind processor.

    Skips SQLAlchemy's per-row parameter compilation, which dominates 100k-row loads (several times
    faster than `session.execute(insert(table), rows)`); the stored values are identical.
    `ignore_conflicts` adds ON CONFLICT DO NOTHING (any unique key).
    """
    if not rows:
        return
    dialect = session.get_bind().dialect
    columns = list(rows[0])
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})" + (
        " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    )
    conn = session.connection()
    for start in range(0, len(rows), CHUNK_ROWS * 4):
        chunk = rows[start : start + CHUNK_ROWS * 4]
        converted = []
        for column, proc in zip(columns, processors, strict=True):  # column-wise: far fewer calls
            values = [r[column] for r in chunk]
            converted.append(values if proc is None else [None if v is None else proc(v) for v in values])
        params = list(zip(*converted, strict=True))
        if dialect.name == "postgresql":
            _copy_postgres(conn, table.name, columns, params, ignore_conflicts)
        else:
            conn.exec_driver_sql(sql, params)


def _copy_postgres(conn, table: str, columns: list[str], rows: list[tuple], ignore_conflicts: bool) -> None:
    """COPY (PostgreSQL's bulk path; executemany sends row by row), via a temporary table to skip
    conflicts."""
    names = ", ".join(columns)
    with conn.connection.driver_connection.cursor() as cursor:
        target = table
        if ignore_conflicts:
            target = f"{table}_load"
            cursor.execute(  # only the loaded columns, no constraints
                f"CREATE TEMP TABLE IF NOT EXISTS {target} ON COMMIT DROP AS "
                f"SELECT {names} FROM {table} WITH NO DATA"
            )
        with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        if ignore_conflicts:
            cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {target} ON CONFLICT DO NOTHING"
            )
            cursor.execute(f"TRUNCATE {target}")
