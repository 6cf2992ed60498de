"""`crosscart db upgrade` while another session holds a table it changes (session 20): a long report, a
`pg_dump`, a transaction left open. PostgreSQL queues every later lock request on that table behind the
migration's, so while the migration waits, the API's writes to it wait too (and are refused at their
0.3 s lock timeout): the upgrade must give up in bounded time, apply nothing and say why in one line."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from commerce import migrate
from commerce.db import make_engine
from crosscart.cli import app
from crosscart.settings import get_settings

BEFORE = "0042_ad_impression_client"  # the head migration indexes ad_impressions
HELD_SECONDS = 3.0
WAIT_SECONDS = 0.5  # the upgrade's lock timeout (5 s by default)


@pytest.fixture
def held_table(database_url):
    """The database one migration behind, `ad_impressions` held by another writer for HELD_SECONDS."""
    if not database_url.startswith("postgresql"):
        pytest.skip("table locks are PostgreSQL's (SQLite's migrations wait on its busy timeout)")
    migrate.upgrade(database_url, BEFORE)
    holder = make_engine(database_url)
    conn = holder.connect()
    conn.begin()
    conn.exec_driver_sql("LOCK TABLE ad_impressions IN ROW EXCLUSIVE MODE")  # what an INSERT holds
    release = threading.Timer(HELD_SECONDS, conn.rollback)
    release.start()
    yield database_url
    release.join()
    conn.close()
    holder.dispose()


def _api_writes(url: str, until: float) -> list[bool]:
    """A write to the table every 0.1 s as the API makes it (0.3 s lock timeout): True when it got in."""
    api = make_engine(url, lock_timeout=0.3)
    outcomes = []
    while time.monotonic() < until:
        try:
            with api.begin() as conn:
                conn.exec_driver_sql("LOCK TABLE ad_impressions IN ROW EXCLUSIVE MODE")
            outcomes.append(True)
        except OperationalError:  # LockNotAvailable
            outcomes.append(False)
        time.sleep(0.1)
    api.dispose()
    return outcomes


def test_an_upgrade_behind_a_held_table_gives_up_applying_nothing_and_writes_go_on(held_table):
    url = held_table
    started = time.monotonic()
    failure: list[BaseException] = []
    ended: list[float] = []

    def upgrade() -> None:
        try:
            migrate.upgrade(url, lock_timeout=WAIT_SECONDS)
        except Exception as exc:
            failure.append(exc)
        ended.append(time.monotonic())

    upgrading = threading.Thread(target=upgrade)
    upgrading.start()
    time.sleep(0.1)
    writes = _api_writes(url, started + HELD_SECONDS - 0.3)  # while the other writer still holds it
    upgrading.join()
    waited = ended[0] - started
    # was: the upgrade waited the holder's whole 3 s (for ever, for a holder that stays) and every API
    # write to the table meanwhile was refused
    assert waited < HELD_SECONDS - 0.5, f"the upgrade waited {waited:.1f} s"
    assert failure and isinstance(failure[0], migrate.MigrationLocked), failure
    assert migrate.current(url) == BEFORE  # nothing applied
    assert writes[-5:] == [True] * 5, writes  # the API writes again once the upgrade gave up


def _db(url: str, tmp_path, monkeypatch, *args: str):
    monkeypatch.setenv("CROSSCART_DATABASE_URL", url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["db", *args])
    finally:
        get_settings.cache_clear()


def test_the_command_waits_as_long_as_told_and_says_so_in_one_line(held_table, tmp_path, monkeypatch):
    started = time.monotonic()
    result = _db(held_table, tmp_path, monkeypatch, "upgrade", "--lock-timeout", str(WAIT_SECONDS))
    waited = time.monotonic() - started
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "lock" in lines[0], result.output
    assert f"more than {WAIT_SECONDS:g} s" in lines[0]
    assert waited < HELD_SECONDS - 0.5, f"the upgrade waited {waited:.1f} s"
    assert migrate.current(held_table) == BEFORE


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "five", ""])
def test_a_lock_timeout_that_is_no_positive_number_is_refused_in_one_line(value, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'never.db'}"
    result = _db(url, tmp_path, monkeypatch, "upgrade", "--lock-timeout", value)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: --lock-timeout must be a positive number of seconds, got {value!r}"
    ]
    assert not (tmp_path / "never.db").exists()  # refused before touching the database
