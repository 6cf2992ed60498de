"""Shared fixtures. Database tests run on SQLite and PostgreSQL through the `database_url` fixture;
`tracking_uri` is a fresh MLflow registry.

PostgreSQL tests skip with a reason when the server is unreachable, except under CI (`CI=true`),
where they fail so that they can never silently skip.

`make test` runs the suite on two pytest-xdist workers (`--dist loadfile`): each test module runs whole on
one worker, so its module fixtures are built once, as in a serial run; session fixtures once per worker.
Modules that run at the same time must not share a resource beyond their own tmp_path: each module that
talks to the local Redis uses a database number of its own (6, 10-13, 15), each live server its own ports.
(`--dist loadgroup` would let modules share a worker, but pytest-xdist 3.8's groups do nothing under
pytest 9.2: it renames nodes through `_nodeid`, which pytest 9.2 no longer reads.)

A PostgreSQL test's fresh schema (tables, then the seeded marketplace) costs about 0.5 s on an idle host
and 1-2 s on the loaded 2-core one: a third of the suite's time went to them. Cases a refused call
cannot change (invalid ids, lenient numbers) share one database per test and loop, naming the failing
value, rather than one parameter (one schema) each. The seeded rows (the commerce market, the search shop)
are copied from a schema seeded once per session (`postgres_templates`), not seeded through the services.
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
def postgres_templates():
    """PostgreSQL schemas seeded once per session (per xdist worker), by seed function: a test copies
    their rows (`tests.commerce.conftest.copy_seeded`) rather than seeding through the services. Dropped
    at the end."""
    made: dict[str, tuple[str, list[str]]] = {}  # seed -> (schema, its sequences)
    yield made
    if made:
        admin = create_engine(POSTGRES_URL)
        with admin.begin() as conn:
            for schema, _ in made.values():
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
