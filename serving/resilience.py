"""The database as the API sees it: a bounded number of requests inside it, honest 503s when it is gone.

Why a gate: FastAPI runs a sync endpoint, its response validation and its session dependency's exit in
worker threads. A request holding a row lock must never wait for a thread or a pool connection that the
requests queued behind its lock are holding, or everything stalls until a pool timeout (50 concurrent
checkouts did). So a request waits for a database slot on the event loop, holding nothing; slots never
outnumber pool connections (nobody in a slot waits on the pool) and leave worker threads to spare (the
lock holder always finds one). Key lookups have slots and connections of their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from sqlalchemy import Engine, exc, text

from commerce.db import is_sqlite_busy, read_only_options
from serving.http import ARRIVED

log = logging.getLogger(__name__)

AUTH_CONNECTIONS = 4  # key lookups: their own slots, so they never queue behind the write path
BACKGROUND_CONNECTIONS = 3  # catalog and experiment refresh, exposure log
RETRY_AFTER_SECONDS = 5


class DatabaseBusy(Exception):
    """No database slot freed up within the wait: the request is refused before touching anything."""


class CommitOutcomeUnknown(Exception):
    """The connection failed during COMMIT: the database may or may not have kept the changes (its
    acknowledgement was lost). The only case where a refused request may have changed something, so
    the client is told to look before retrying."""


# Errors meaning "the database cannot answer now" (connection refused or lost, timeouts, a full pool),
# as opposed to errors in what was asked of it (integrity, data), which stay bugs.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    DatabaseBusy,
)


# PostgreSQL ended the statement or transaction for contention, rolling it back: a retry is safe.
CONTENTION_SQLSTATES = frozenset(
    {
        "55P03",  # lock_not_available: `lock_timeout` expired waiting for a row lock
        "40P01",  # deadlock_detected: a lock cycle with another writer, this transaction chosen to end
        "40001",  # serialization_failure
        "57014",  # query_canceled: `statement_timeout` (a wait for rows other writers hold, a slow query),
        # or a cancel request (`is_cancel_request`)
    }
)
TOO_MANY_CONNECTIONS = "53300"  # PostgreSQL refused a new connection: its role, database or server limit
READ_ONLY_SQL_TRANSACTION = "25006"  # PostgreSQL: a write on a server taking none (a standby, a failover)


class DatabaseReadOnly(Exception):
    """The server answers but takes no writes (a hot standby, `default_transaction_read_only` on)."""


def is_connection_limit(error: BaseException) -> bool:
    """PostgreSQL refused a new connection for its limit (`CONNECTION LIMIT` of the role or database,
    `max_connections`): SQLSTATE 53300, which psycopg raises at connect without a sqlstate, so its
    message too. The pool's open connections still work."""
    if not isinstance(error, exc.DBAPIError):
        return False
    message = str(error.orig)
    return getattr(error.orig, "sqlstate", None) == TOO_MANY_CONNECTIONS or any(
        text in message for text in ("too many connections", "remaining connection slots are reserved")
    )


def is_contention(error: BaseException) -> bool:
    """The database is busy, not gone: a row (on SQLite, the database) stayed locked by other writers past
    the lock wait, a deadlock, a statement past `statement_timeout`, or a new connection refused for the
    connection limit (`is_connection_limit`). Each was rolled back or never began; the last three were
    taken for an outage (503 with `Retry-After: 5`, the database reported down, for one statement that
    waited or one connection too many while the pool's served)."""
    if not isinstance(error, exc.DBAPIError):
        return False
    return (
        getattr(error.orig, "sqlstate", None) in CONTENTION_SQLSTATES
        or is_sqlite_busy(error)
        or is_connection_limit(error)
    )


QUERY_CANCELED = "57014"


def is_cancel_request(error: BaseException) -> bool:
    """57014 from a cancel request (an operator's `pg_cancel_backend`, a client's cancel) rather than
    `statement_timeout`: PostgreSQL tells them apart only by the message ("canceling statement due to
    user request" / "... statement timeout"). Both were rolled back and neither means the database is
    down, so both stay contention; the answer differs (`serving.errors`). With `lc_messages` other than
    English the message is translated and a cancel reads as a timeout (busy), as before."""
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) != QUERY_CANCELED:
        return False
    message = getattr(getattr(orig, "diag", None), "message_primary", None) or str(orig)
    return "user request" in message


def is_read_only(error: BaseException) -> bool:
    """The server refused a write because it takes none now: after a failover to a standby, or with
    `default_transaction_read_only` on. It was a 500 on every write; like an outage, it passes (a
    write through `commerce.db.read_only` is refused the same way: a bug that would read as this)."""
    return isinstance(error, DatabaseReadOnly) or (
        isinstance(error, exc.DBAPIError)
        and getattr(error.orig, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION
    )


DISK_FULL = ("SQLITE_FULL", "53100")  # SQLite's error name, PostgreSQL's SQLSTATE: no room to write


def is_disk_full(error: BaseException) -> bool:
    orig = getattr(error, "orig", None)
    return any(getattr(orig, name, None) in DISK_FULL for name in ("sqlite_errorname", "sqlstate"))


def refuses_writes(error: BaseException) -> bool:
    """An outage for writes only (a read-only server, a full disk): reads that succeed meanwhile do not
    end it."""
    return is_read_only(error) or is_disk_full(error)


ROOM_BYTES = 1 << 20  # free space a full-disk outage needs back before the probe ends it (many checkouts)
DISK_FULL_RETRY_SECONDS = 30.0  # where the probe cannot see the disk (PostgreSQL's server): writes retry


def sqlite_has_room(conn, database: str | None) -> bool:
    """Room to write again after SQLite's disk was full: ROOM_BYTES of free pages under the database's
    page limit (`max_page_count`) and on the file's filesystem. A `SELECT 1` proves neither: answering
    "up" on it ended a full-disk outage once a second, each next write starting it again."""
    page_size, pages, limit, free_pages = (
        conn.exec_driver_sql(f"PRAGMA {name}").scalar()
        for name in ("page_size", "page_count", "max_page_count", "freelist_count")
    )
    if (limit - pages + free_pages) * page_size < ROOM_BYTES:
        return False
    folder = os.path.dirname(os.path.abspath(database)) if database and database != ":memory:" else None
    return folder is None or not os.path.isdir(folder) or shutil.disk_usage(folder).free >= ROOM_BYTES


def unavailable_detail(error: BaseException) -> str:
    """What a 503 for `error` (an outage) tells the client."""
    if is_read_only(error):
        return "the database takes no writes right now; retry shortly"
    return "the database is unavailable; retry shortly"


SQLITE_READONLY = "SQLITE_READONLY"  # SQLite: a write under PRAGMA query_only (`commerce.db.read_only`)


class WriteInReadOnlyTransaction(Exception):
    """A write inside a transaction opened read-only (a GET's own, `serving.deps.reads_only`): a bug in
    the code that wrote, answered 500, never an outage."""


def is_query_only_refusal(error: BaseException) -> bool:
    """SQLite refused a write under `query_only`: only our read-only transactions set it, so it is a bug
    (SQLite reports it as an OperationalError, like an outage), never a reason to call the database down."""
    return (
        isinstance(error, exc.DBAPIError) and getattr(error.orig, "sqlite_errorname", None) == SQLITE_READONLY
    )


def refused_as_read_only(error: BaseException) -> bool:
    """The database refused a write as read-only. On PostgreSQL the same SQLSTATE means a write inside a
    READ ONLY transaction *or* a server taking no writes: only the caller knows which transaction it
    opened (`serving.deps.get_session` tells them apart)."""
    return is_read_only(error) or is_query_only_refusal(error)


def is_outage(error: BaseException) -> bool:
    if is_contention(error) or is_query_only_refusal(error):
        return False
    return (
        isinstance(error, OUTAGE_ERRORS)
        or is_read_only(error)
        or (isinstance(error, exc.DBAPIError) and error.connection_invalidated)
    )


# Whether the server would refuse a write: in recovery (a standby) or read-only by default. The probe's
# own transaction is READ ONLY, so `transaction_read_only` would always say so.
READ_ONLY_SQL = "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'"
#: How long `/ready` says `degraded` after a new connection was refused for the connection limit.
DEGRADED_SECONDS = 30.0


class DatabaseHealth:
    """Up or down, as the last database call found it; an outage is logged once when it starts and once
    when it ends (with how many requests it refused), never per request."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.read_only = False  # down because the server takes no writes (it still answers reads)
        self.writes_only = False  # down for writes only (read-only, a full disk): a read does not end it
        self.disk_full = False  # down for a full disk: the probe ends it only once it sees room again
        self.last_error: str | None = None
        self.refused = 0
        self.connection_refused_at = -math.inf
        self._checked_at = -1e9
        self._lock = threading.Lock()

    @property
    def up(self) -> bool:
        return self.down_since is None

    @property
    def degraded(self) -> bool:
        """Up, but a new connection was refused for the connection limit in the last DEGRADED_SECONDS:
        requests that find a pooled connection are served, the others refused as busy."""
        return time.monotonic() - self.connection_refused_at < DEGRADED_SECONDS

    def connection_limited(self) -> None:
        if not self.degraded:
            log.warning("the database refuses new connections (connection limit): serving from the pool")
        self.connection_refused_at = time.monotonic()

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self.refused += 1
            if self.down_since is None:
                self.down_since = time.monotonic()
                self.read_only = is_read_only(error)
                self.writes_only = refuses_writes(error)
                self.disk_full = is_disk_full(error)
                first_line = (str(error).splitlines() or [""])[0]
                self.last_error = f"{type(error).__name__}: {first_line}"
                log.error("database unavailable, answering 503 until it is back: %s", self.last_error)

    def succeeded(self, read: bool = False) -> None:
        """The database answered: a write, or with `read`, a read only (which ends no write outage: with
        a full disk every new key's lookup logged "back" and the next write "unavailable" again)."""
        if self.down_since is None or (read and self.writes_only):  # the common case: no lock
            return
        with self._lock:
            if self.down_since is not None:
                log.warning(
                    "database back after %.1f s; %d requests refused meanwhile",
                    time.monotonic() - self.down_since,
                    self.refused,
                )
            self.down_since, self.last_error, self.refused = None, None, 0
            self.read_only = self.writes_only = self.disk_full = False

    async def check(self, engine: Engine, gate: DatabaseGate, every: float = 1.0) -> bool:
        """Up or not, probing at most every `every` seconds on the key lookups' slots and threads (a
        probe that finds no free slot keeps the last answer)."""
        now = time.monotonic()
        if now - self._checked_at >= every:
            self._checked_at = now
            try:
                async with gate.auth_slot():
                    await anyio.to_thread.run_sync(self.probe, engine, limiter=gate.auth_threads)
            except DatabaseBusy:
                pass
        return self.up

    def probe(self, engine: Engine) -> bool:
        """One `SELECT 1` (readiness checks while down), read-only so that SQLite's write lock held by a
        writer does not hold it up; records the outcome. On PostgreSQL it also asks whether the server
        takes writes (`SELECT 1` alone answered "up" from a standby refusing every write). A full-disk
        outage ends when SQLite has room again (`sqlite_has_room`), or, on PostgreSQL, whose server's disk
        it cannot see, once DISK_FULL_RETRY_SECONDS old (the next write tries); until then a write that
        succeeds ends it."""
        room = True
        try:
            with engine.connect() as conn:
                conn.execution_options(**read_only_options(engine))
                if engine.dialect.name == "postgresql":
                    if conn.execute(text(READ_ONLY_SQL)).scalar():
                        raise DatabaseReadOnly("the database takes no writes (a standby, or read-only)")
                    since = self.down_since or 0.0
                    room = not self.disk_full or time.monotonic() - since >= DISK_FULL_RETRY_SECONDS
                else:
                    conn.execute(text("SELECT 1"))
                    room = not self.disk_full or sqlite_has_room(conn, engine.url.database)
        except Exception as error:
            if is_refused_outright(error, engine):  # it answered 200 `degraded`
                self.failed(error)
                return False
            if is_connection_limit(error):  # every pooled connection in use and no new one allowed
                self.connection_limited()
            if is_contention(error):  # not expected read-only (WAL recovery?); busy, never an outage
                self.succeeded()
                return True
            if not is_outage(error):
                raise
            self.failed(error)
            return False
        if not room:
            return False
        self.succeeded()
        return True


def connections_in_use(engine: Engine) -> bool:
    """Whether the engine's pool has a connection checked out (serving a request now); a pool that does
    not count them (SQLite's) is taken to have some."""
    checkedout = getattr(engine.pool, "checkedout", None)
    return checkedout is None or checkedout() > 0


def is_refused_outright(error: BaseException, engine: Engine) -> bool:
    """A new connection refused for the connection limit while `engine`'s pool has none in use: nothing
    is served, an outage (`/ready` 503 `unavailable`, requests 503 with `Retry-After: 5`), not the busy
    `degraded` of a pool whose connections serve."""
    return is_connection_limit(error) and not connections_in_use(engine)


def pool_capacity(engine: Engine) -> int | None:
    """Connections the engine's pool can hand out at once (None: not bounded, e.g. SQLite in memory)."""
    size = getattr(engine.pool, "size", None)
    if size is None:
        return None
    return size() + max(0, getattr(engine.pool, "_max_overflow", 0))


class DatabaseGate:
    """Slots for requests (and separately for key lookups), acquired on the event loop with a deadline.

    The anyio primitives are made on first use inside the serving event loop (an app may be built in one
    thread and served from another)."""

    def __init__(self, requests: int, auth: int = AUTH_CONNECTIONS, wait_seconds: float = 2.0):
        self.requests, self.auth, self.wait_seconds = requests, auth, wait_seconds
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._request_slots = anyio.Semaphore(self.requests)
            self._auth_slots = anyio.Semaphore(self.auth)
            self.exit_threads = anyio.CapacityLimiter(self.requests)
            self.auth_threads = anyio.CapacityLimiter(self.auth)

    def ensure_threads(self) -> int:
        """Grow the worker-thread pool so that every slot holder can also hand its response to a free
        thread; returns its size."""
        self._bind()
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, 2 * self.requests + 8)
        return int(limiter.total_tokens)

    def deadline(self, arrived: float | None = None) -> float:
        """When a request that arrived at `arrived` (default: now) must have its slots (one deadline for
        the key lookup and the request's own transaction, so a request waits `wait_seconds` in all, not
        per slot)."""
        return (time.monotonic() if arrived is None else arrived) + self.wait_seconds

    @asynccontextmanager
    async def request_slot(self, deadline: float | None = None) -> AsyncIterator[None]:
        self._bind()
        async with self._slot(self._request_slots, deadline):
            yield

    @asynccontextmanager
    async def auth_slot(self, deadline: float | None = None) -> AsyncIterator[None]:
        self._bind()
        async with self._slot(self._auth_slots, deadline):
            yield

    @asynccontextmanager
    async def _slot(self, slots: anyio.Semaphore, deadline: float | None) -> AsyncIterator[None]:
        wait = self.wait_seconds if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            slots.acquire_nowait()  # a free slot is taken whatever the deadline: only queueing is bounded
        except anyio.WouldBlock:
            try:
                with anyio.fail_after(wait):
                    await slots.acquire()
            except TimeoutError:
                raise DatabaseBusy(f"no database slot free within {self.wait_seconds:g} s") from None
        try:
            yield
        finally:
            slots.release()


class DeadlineStamp:
    """Outermost ASGI middleware: a request's deadline for database slots starts when it arrived (its
    headers read, as serving.http stamps it; else when it reaches the app), so time spent queued behind
    a burst on the event loop counts against it too."""

    def __init__(self, app, gate: DatabaseGate):
        self.app, self.gate = app, gate

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            state = scope.setdefault("state", {})
            state["db_deadline"] = self.gate.deadline(state.get(ARRIVED))
        await self.app(scope, receive, send)
