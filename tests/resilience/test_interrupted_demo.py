"""`crosscart demo` (what `make run` runs) stopped part-way, then run again: Ctrl-C (SIGINT) while it
loads the marketplace, SIGTERM while it trains. Each run must pick up without a hand clean-up: the
database loaded whole in the end (never the part the stopped load committed), no MLflow run left
RUNNING, every model served under its alias, and the finished steps not done again (docs/operations.md);
meanwhile `crosscart serve` refuses the partially loaded database.

The signal comes at a chosen step: the demo runs in a subprocess in which that step's function first
sends the process the signal (as test_terminated_jobs.py does)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # three tiny demos, about one full demo's work: ~40 s of CPU

ROOT = Path(__file__).resolve().parents[2]
SIGNALLED_AT = """
import importlib, os, signal, sys

signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal, not a background job
signum, module, name = getattr(signal, sys.argv[1]), importlib.import_module(sys.argv[2]), sys.argv[3]
real = getattr(module, name)

def signalled(*args, **kwargs):
    os.kill(os.getpid(), signum)
    return real(*args, **kwargs)

setattr(module, name, signalled)
sys.argv = ["crosscart", *sys.argv[4:]]
from crosscart.cli import app
app()
"""
TABLES = ("events", "orders", "order_lines", "campaign_members", "coupon_grants")
MODELS = ("crosscart-recommender", "crosscart-uplift", "crosscart-delivery", "crosscart-session")


def _demo(var: Path, signalled: tuple[str, str, str] | None = None) -> subprocess.CompletedProcess:
    return _run(var, ["demo", "--scale", "tiny", "--no-serve"], signalled)


def _run(
    var: Path, args: list[str], signalled: tuple[str, str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CROSSCART_")}
    env.update(PYTHONPATH=str(ROOT), CROSSCART_DATA_DIR=str(var))
    script = SIGNALLED_AT if signalled else "from crosscart.cli import app; app()"
    command = [sys.executable, "-c", script, *(signalled or ()), *args]
    return subprocess.run(command, env=env, cwd=var.parent, capture_output=True, text=True, timeout=600)


def _unfinished(var: Path) -> str | None:
    from crosscart.demo_state import unfinished_load
    from crosscart.settings import Settings

    return unfinished_load(var, Settings(data_dir=var).resolved_database_url)


def _rows(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        return {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES}


def _mlflow(var: Path, query: str) -> list[tuple]:
    with sqlite3.connect(var / "mlflow.db") as conn:
        return conn.execute(query).fetchall()


def test_a_demo_stopped_while_loading_then_while_training_picks_up_where_it_stopped(tmp_path):
    var = tmp_path / "var"
    var.mkdir()

    loading = _demo(var, ("SIGINT", "commerce.importer", "load_order_history"))
    assert loading.returncode == 130, loading.stderr  # click's exit status for Ctrl-C
    assert _rows(var / "crosscart.db")["orders"] == 0  # the events' batches committed, the orders not
    assert "load" not in json.loads((var / "demo-state.json").read_text())
    assert _unfinished(var) is not None  # recorded before the load's first commit
    refused = _run(var, ["serve", "--port", "65000"])  # the partial database is not served (before binding)
    assert refused.returncode == 1 and "`make run` (or `crosscart demo`) again" in refused.stderr

    training = _demo(var, ("SIGTERM", "training.uplift", "serving_bundle"))  # in its run
    assert training.returncode == -signal.SIGTERM, training.stderr
    assert "already generated" in training.stdout and "already loaded" not in training.stdout
    assert _mlflow(var, "SELECT status FROM runs WHERE status = 'RUNNING'") == []

    done = _demo(var)
    assert done.returncode == 0, done.stderr
    assert _unfinished(var) is None
    for step in ("already generated", "already loaded", "already built", "recommender kept"):
        assert step in done.stdout, step
    assert "✓ uplift model" in done.stdout and "✓ delivery model" in done.stdout

    # what one uninterrupted load of the same marketplace holds
    from commerce.db import make_engine, make_session_factory
    from commerce.importer import load_marketplace
    from commerce.migrate import upgrade
    from crosscart.settings import Settings

    whole = f"sqlite:///{tmp_path / 'whole.db'}"
    upgrade(whole)
    engine = make_engine(whole)
    keyring = Settings().identity_keyring
    load_marketplace(make_session_factory(engine), var / "marketplace-tiny", keyring=keyring)
    engine.dispose()
    assert _rows(var / "crosscart.db") == _rows(tmp_path / "whole.db")
    assert _mlflow(var, "SELECT status FROM runs WHERE status = 'RUNNING'") == []
    assert {name for (name,) in _mlflow(var, "SELECT name FROM registered_model_aliases")} == set(MODELS)
