"""Engine and session construction shared by every caller of the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# A server that is alive ends a statement at its `statement_timeout` and says so; no answer this much
# later means it is not answering at all (frozen, or its packets black-holed).
ANSWER_GRACE_SECONDS = 5.0

SQLITE_BUSY = "SQLITE_BUSY"  # SQLite: another writer held the database's write lock past the busy timeout


def _sqlite_error_names(error: BaseException | None) -> Iterator[str]:
    """SQLite's error names on `error` (the driver's, or SQLAlchemy's wrapper of it) and on the errors it
    was raised from (MLflow's SQL stores raise their own MlflowException from the driver's)."""
    while error is not None:
        for raised in (error, getattr(error, "orig", None)):
            name = getattr(raised, "sqlite_errorname", None)
            if name:
                yield name
        error = error.__cause__


def is_sqlite_busy(error: BaseException | None) -> bool:
    """SQLite's write lock held by another writer past the busy timeout."""
    return SQLITE_BUSY in _sqlite_error_names(error)


def is_sqlite_damaged(error: BaseException | None) -> bool:
    """The file's pages are not what SQLite wrote (SQLITE_CORRUPT and its extended codes, or not a
    database at all): retrying cannot help, unlike a busy or locked database."""
    return any(
        name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB" for name in _sqlite_error_names(error)
    )


# The schema is behind the code (a database never migrated, or not up to the migration adding a table or
# column): PostgreSQL's undefined_table and undefined_column, SQLite's messages for the same (SQLITE_ERROR).
UNDEFINED_SQLSTATES = frozenset({"42P01", "42703"})
SQLITE_UNDEFINED = ("no such table:", "no such column:", "has no column named")


def is_schema_behind(error: BaseException | None) -> bool:
    """A statement named a table or column the database does not have: `crosscart db upgrade` is the
    fix, not waiting for the database (SQLite reports it as an OperationalError, like an outage)."""
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) in UNDEFINED_SQLSTATES:
        return True
    return getattr(orig, "sqlite_errorname", None) == "SQLITE_ERROR" and any(
        words in str(orig) for words in SQLITE_UNDEFINED
    )


# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(
    url: str,
    *,
    connect_timeout: float | None = None,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    **kwargs,
) -> Engine:
    """Create an engine; SQLite gets foreign keys, WAL and a busy timeout so concurrent writers queue.

    `connect_timeout` and `statement_timeout` (seconds) bound how long a caller can hang on an unreachable
    or stuck database: on PostgreSQL the statement timeout also ends transactions left idle that long, on
    SQLite it is the wait for the write lock (30 s when not given). `lock_timeout` (PostgreSQL) bounds
    one statement's wait for a row lock. Long batch jobs leave them unset.

    With `statement_timeout`, every wait on a PostgreSQL server (statements, COMMIT, ROLLBACK, pings) is
    also bounded on the client at `statement_timeout + ANSWER_GRACE_SECONDS`: a SIGSTOPped server or a
    dead network path keeps the TCP connection open, so the server-side timeout never fires and a
    request would wait forever. The connection is then closed (the pool replaces it).
    """
    if url.startswith("sqlite"):
        busy_ms = int((statement_timeout or 30) * 1000)
        kwargs.setdefault("connect_args", {"timeout": busy_ms / 1000, "check_same_thread": False})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # pysqlite's own transaction handling would defer BEGIN; we issue BEGIN ourselves below.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # BEGIN IMMEDIATE takes the write lock up front: SQLite's stand-in for row locks. Read-only
            # work (`read_only`) begins deferred: in WAL mode it reads a snapshot and never waits for, nor
            # holds up, a writer. `query_only` makes a write through it fail instead of taking the lock.
            read_only = bool(conn.get_execution_options().get("read_only"))
            pooled = conn.connection
            if pooled.info.get("query_only", False) != read_only:  # on the driver: 2 us CPU, not 8
                pooled.driver_connection.execute(f"PRAGMA query_only={int(read_only)}")
                pooled.info["query_only"] = read_only
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if connect_timeout is not None:  # libpq takes whole seconds, at least 2
        kwargs.setdefault("connect_args", {})["connect_timeout"] = max(2, round(connect_timeout))
    engine = create_engine(url, **kwargs)
    if statement_timeout is not None and engine.dialect.driver == "psycopg":
        _bound_server_waits(engine, statement_timeout + ANSWER_GRACE_SECONDS)
    timeouts = {
        name: int(seconds * 1000)
        for name, seconds in (
            ("statement_timeout", statement_timeout),
            ("idle_in_transaction_session_timeout", statement_timeout),
            ("lock_timeout", lock_timeout),
        )
        if seconds is not None
    }
    if timeouts and engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _pg_timeouts(dbapi_conn, _record):
            autocommit = dbapi_conn.autocommit
            dbapi_conn.autocommit = True
            with dbapi_conn.cursor() as cur:
                for name, ms in timeouts.items():
                    cur.execute(f"SET {name} = {ms}")
            dbapi_conn.autocommit = autocommit

    return engine


def _bound_server_waits(engine: Engine, seconds: float) -> None:
    import psycopg

    # What `Connection.wait` raises on its timeout (its documented behaviour) is private to psycopg: looked
    # up here, so a psycopg that moved it fails at start-up, not in the first outage (where the except
    # clause would raise AttributeError, a 500 with the connection left in the pool).
    wait_timeout = psycopg.errors._WaitTimeout

    class BoundedConnection(psycopg.Connection):
        def wait(self, gen, interval=0.1, timeout=None):
            if timeout is not None:  # the caller's own wait (notifies): its timeout is its answer
                return super().wait(gen, interval, timeout)
            try:
                return super().wait(gen, interval, seconds)
            except wait_timeout:  # the state is unknown: never reuse this connection
                self.close()
                raise psycopg.OperationalError(
                    f"the database server did not answer within {seconds:g} s; connection closed"
                ) from None

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):
        return BoundedConnection.connect(*cargs, **cparams)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back (changing nothing) on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def read_only_options(engine: Engine) -> dict[str, bool]:
    """Execution options for work that never writes (background refreshes, lookups, probes): a deferred
    transaction on SQLite instead of BEGIN IMMEDIATE's write lock, READ ONLY on PostgreSQL; a write
    through it is an error on both. Set them on a connection before its transaction begins."""
    if engine.dialect.name == "postgresql":  # psycopg then sends BEGIN READ ONLY: no extra round trip
        return {"read_only": True, "postgresql_readonly": True}
    return {"read_only": True}


def read_only_sessions(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """`factory`'s sessions (same class and options) with `read_only_options` on every transaction they
    begin. Lazy, unlike `read_only`: nothing is opened until the session's first statement."""
    bind = factory.kw["bind"]
    return sessionmaker(
        **{**factory.kw, "bind": bind.execution_options(**read_only_options(bind))}, class_=factory.class_
    )


@contextmanager
def read_only(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session with `read_only_options`, closed (rolled back) at the end: there is nothing to commit."""
    with factory() as session:
        session.connection(execution_options=read_only_options(session.get_bind()))
        yield session
