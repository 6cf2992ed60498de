"""`crosscart train` on an MLflow SQLite store that another process holds locked past SQLite's busy
timeout (another trainer's long write, a backup holding the file, an operator's open `sqlite3` shell):
the command ended with sqlalchemy's "database is locked" traceback (100+ lines). It now prints one line
and exits 1, registers nothing, and the run after the lock is released trains and promotes.

MLflow sets SQLite's busy timeout to 20 s on each session (`PRAGMA busy_timeout = 20000`, written into
mlflow.store.db.utils): each locked run here waited it out, 64 s of the suite. `short_busy_timeout` makes
it 0.5 s; the lock is still held past it, so the command meets the same "database is locked"."""

from __future__ import annotations

import sqlite3
import types
from contextlib import contextmanager

import mlflow.store.db.utils
import pytest
from sqlalchemy import sql
from typer.testing import CliRunner

import training.pipelines
from crosscart.cli import BUSY_MESSAGE, app
from tests.training.conftest import planted_events
from training.registry import champion_version, registry_client

NAME = "locked-recs"


@contextmanager
def _held(path):
    """The database file's write lock held by another connection (`BEGIN EXCLUSIVE`) until the end."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _train(uri, events_file):
    return CliRunner().invoke(
        app,
        ["train", "recommender", "--data", f"events:{events_file}", "--user-col", "shopper",
         "--item-col", "product", "--time-col", "when", "--model", "popularity",
         "--tracking-uri", uri, "--registered-name", NAME, "--force-promote"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "events.csv"
    planted_events().to_csv(path, index=False)
    return path


@pytest.fixture
def short_busy_timeout(monkeypatch):
    """MLflow's SQLite sessions wait 0.5 s for a lock instead of its fixed 20 s."""

    def text(statement, *args, **kwargs):
        return sql.text(statement.replace("busy_timeout = 20000", "busy_timeout = 500"), *args, **kwargs)

    assert "busy_timeout = 20000" in open(mlflow.store.db.utils.__file__).read()  # still what MLflow sets
    monkeypatch.setattr(mlflow.store.db.utils, "sql", types.SimpleNamespace(text=text))


@pytest.mark.parametrize("locked_at", ["start", "fitting"])
def test_a_locked_mlflow_store_is_one_error_line_and_the_next_run_promotes(
    tmp_path, monkeypatch, short_busy_timeout, events_file, locked_at
):
    path = tmp_path / "mlflow.db"
    uri = f"sqlite:///{path}"
    assert _train(uri, events_file).exit_code == 0  # the store exists, v1 champion
    with _held(path) if locked_at == "start" else _locked_while_fitting(monkeypatch, path):
        result = _train(uri, events_file)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [f"error: {BUSY_MESSAGE}"]

    client = registry_client(uri)
    assert [str(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == ["1"]
    monkeypatch.undo()
    assert _train(uri, events_file).exit_code == 0
    assert str(champion_version(client, NAME).version) == "2"


@contextmanager
def _locked_while_fitting(monkeypatch, path):
    """The lock taken once the run has started (MLflow's writes after it find the store locked)."""
    score = training.pipelines._score
    with _held_later() as take:

        def locking_score(*args, **kwargs):
            take(path)
            return score(*args, **kwargs)

        monkeypatch.setattr(training.pipelines, "_score", locking_score)
        yield


@contextmanager
def _held_later():
    stack = []

    def take(path):
        held = _held(path)
        held.__enter__()
        stack.append(held)

    try:
        yield take
    finally:
        for held in stack:
            held.__exit__(None, None, None)
