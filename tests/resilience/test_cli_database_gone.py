"""A CLI command whose database does not answer: the server down or being failed over (nothing listens),
or the connection reset in the middle of the command's transaction (a failover, `pg_terminate_backend`).
`crosscart coupon list`, `campaign list` and `db expire-orders` printed SQLAlchemy's traceback (518-543
lines, the cause at the end); a command now prints one line saying the database did not answer and
that a change cut off at its commit may have been kept, and exits 1. Nothing was half written: each
command's transaction rolled back, or its COMMIT was cut off (kept whole or not at all)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import commerce.services.coupons
from bench.faultkit import TcpProxy
from crosscart.cli import DATABASE_GONE, SCHEMA_BEHIND, app
from crosscart.settings import get_settings
from tests.resilience.conftest import seeded_factory

NOTHING_LISTENS = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # connect() is refused
PROXY_PORT = 18972


def _invoke(monkeypatch, tmp_path, url: str, *args: str):
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CROSSCART_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("command", [["coupon", "list"], ["campaign", "list"], ["db", "expire-orders"]])
def test_a_database_that_refuses_connections_is_one_error_line(monkeypatch, tmp_path, command):
    result = _invoke(monkeypatch, tmp_path, NOTHING_LISTENS, *command)
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {DATABASE_GONE}") and "Connection refused" in line


def test_a_connection_reset_in_the_middle_of_a_command_is_one_error_line(monkeypatch, tmp_path, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("a connection to reset: PostgreSQL's")
    seeded_factory(database_url).kw["bind"].dispose()
    url = make_url(database_url)
    proxy = TcpProxy(PROXY_PORT, url.host or "127.0.0.1", url.port or 5432)
    listed = commerce.services.coupons.list_coupons

    def list_then_cut(session, **kwargs):
        session.connection()  # the transaction has begun through the proxy
        proxy.cut()
        return listed(session, **kwargs)

    monkeypatch.setattr(commerce.services.coupons, "list_coupons", list_then_cut)
    through_proxy = url.set(host="127.0.0.1", port=PROXY_PORT).render_as_string(hide_password=False)
    try:
        result = _invoke(monkeypatch, tmp_path, through_proxy, "coupon", "list")
    finally:
        proxy.close()
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {DATABASE_GONE}")


@pytest.mark.parametrize("missing", ["table", "column"])
def test_a_schema_behind_the_code_says_to_upgrade_not_to_wait(monkeypatch, tmp_path, database_url, missing):
    """A never-migrated database (no table) or one migrated by an older version (a column short): SQLite's
    "no such table" passed for a database not answering ("run the command again once it does"), and
    PostgreSQL's undefined_table showed a traceback."""
    if missing == "column":
        engine = seeded_factory(database_url).kw["bind"]
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE coupons DROP COLUMN name")
        engine.dispose()
    result = _invoke(monkeypatch, tmp_path, database_url, "coupon", "list")
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {SCHEMA_BEHIND}") and line.endswith("run `crosscart db upgrade`")
    assert DATABASE_GONE not in line
