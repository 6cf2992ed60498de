"""Helpers for migration tests: rows written at an old revision, then read back after upgrading."""

from __future__ import annotations

from sqlalchemy import inspect, text

from commerce import migrate
from commerce.db import make_engine


def seed_at(url: str, revision: str, rows: list[str]) -> None:
    """Migrate to `revision` and insert `rows` (SQL written for that revision's schema)."""
    migrate.upgrade(url, revision)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for sql in rows:
                conn.execute(text(sql))
    finally:
        engine.dispose()


def columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def query(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()
