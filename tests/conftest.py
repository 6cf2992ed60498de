"""Shared fixtures. Database tests run on SQLite and PostgreSQL through the `database_url` fixture;
`tracking_uri` is a fresh MLflow registry.

PostgreSQL tests skip with a reason when the server is unreachable, except under CI (`CI=true`),
where they fail so that they can never silently skip.

`make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`); `pytest_collection_modifyitems`
below keeps each test module on one worker, so module and session fixtures are built once per module as
in a serial run.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

POSTGRES_URL = os.environ.get(
    "CROSSCART_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def free_port(ports: range) -> int:
    """The first port of `ports` nothing on 127.0.0.1 listens on, for a live server a test starts."""
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any driver or network error means "not available"
        return f"PostgreSQL at {POSTGRES_URL} unreachable: {type(exc).__name__}: {exc}".splitlines()[0]


# Modules that share one resource beyond their own tmp_path run on the same xdist worker, one after
# another: every browser test drives one demo and one live server (a session fixture, built once per
# worker), and the Redis tests use fixed database numbers of the one local server, some flushing them.
SHARED_GROUPS = {
    "tests/console/": "console",
    "tests/serving/test_replica_processes.py": "redis",
    "tests/serving/test_precomputed.py": "redis",
    "tests/serving/test_sessions.py": "redis",
    "tests/serving/test_limits.py": "redis",
    "tests/resilience/test_redis_flushed.py": "redis",
    "tests/resilience/test_replicas.py": "redis",
}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Under `--dist loadgroup`, one xdist group per test module (a shared group where `SHARED_GROUPS`
    says so): pytest-xdist would otherwise hand single tests of a module to both workers, and each
    would build the module's fixtures."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        module = item.nodeid.split("::", 1)[0]
        group = next((g for prefix, g in SHARED_GROUPS.items() if module.startswith(prefix)), module)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def postgres_reason() -> str | None:
    return _postgres_available()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path, postgres_reason):
    """A fresh, empty database URL: a SQLite file, or a private PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if postgres_reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and PostgreSQL tests cannot run: {postgres_reason}")
        pytest.skip(postgres_reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """An empty MLflow database, made once: creating one runs ~40 Alembic migrations (seconds of CPU)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates and migrates the schema
    return path


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """An empty CrossCart SQLite database at the Alembic head, made once: migrating one runs every
    revision (about 0.8 s of CPU). Tests copy it; the migration tests themselves still migrate."""
    from commerce import migrate

    path = tmp_path_factory.mktemp("crosscart-template") / "crosscart.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def fresh_mlflow_db(template: Path, target: Path) -> str:
    """A copy of the empty MLflow database `template` at `target`; its SQLite tracking URI."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def tracking_uri(tmp_path, empty_mlflow_db) -> str:
    """A fresh MLflow registry of this test's own (artifacts go beside it, under `mlruns-db/`)."""
    return fresh_mlflow_db(empty_mlflow_db, tmp_path / "mlruns-db" / "mlflow.db")
