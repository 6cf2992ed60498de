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
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from sqlalchemy import Engine, exc, text

from commerce.db import read_only_options
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


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired waiting for a row lock
SQLITE_BUSY = "SQLITE_BUSY"  # SQLite: another writer held the database's write lock past the busy timeout


def is_lock_timeout(error: BaseException) -> bool:
    """A row (on SQLite, the database) stayed locked by other writers past the lock wait: the database is
    busy, not gone."""
    if not isinstance(error, exc.DBAPIError):
        return False
    return (
        getattr(error.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE
        or getattr(error.orig, "sqlite_errorname", None) == SQLITE_BUSY
    )


READ_ONLY_TRANSACTION = "25006"  # PostgreSQL: a write inside a READ ONLY transaction
SQLITE_READONLY = "SQLITE_READONLY"  # SQLite: a write under PRAGMA query_only (`commerce.db.read_only`)


def is_read_only_refusal(error: BaseException) -> bool:
    """A write inside a read-only transaction: a bug in the code that wrote (SQLite reports it as an
    OperationalError, like an outage), never a reason to call the database down."""
    if not isinstance(error, exc.DBAPIError):
        return False
    return (
        getattr(error.orig, "sqlstate", None) == READ_ONLY_TRANSACTION
        or getattr(error.orig, "sqlite_errorname", None) == SQLITE_READONLY
    )


def is_outage(error: BaseException) -> bool:
    if is_lock_timeout(error) or is_read_only_refusal(error):
        return False
    return isinstance(error, OUTAGE_ERRORS) or (
        isinstance(error, exc.DBAPIError) and error.connection_invalidated
    )


class DatabaseHealth:
    """Up or down, as the last database call found it; an outage is logged once when it starts and once
    when it ends (with how many requests it refused), never per request."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.refused = 0
        self._checked_at = -1e9
        self._lock = threading.Lock()

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self.refused += 1
            if self.down_since is None:
                self.down_since = time.monotonic()
                first_line = (str(error).splitlines() or [""])[0]
                self.last_error = f"{type(error).__name__}: {first_line}"
                log.error("database unavailable, answering 503 until it is back: %s", self.last_error)

    def succeeded(self) -> None:
        if self.down_since is None:  # the common case: no lock
            return
        with self._lock:
            if self.down_since is not None:
                log.warning(
                    "database back after %.1f s; %d requests refused meanwhile",
                    time.monotonic() - self.down_since,
                    self.refused,
                )
            self.down_since, self.last_error, self.refused = None, None, 0

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
        writer does not hold it up; records the outcome."""
        try:
            with engine.connect() as conn:
                conn.execution_options(**read_only_options(engine))
                conn.execute(text("SELECT 1"))
        except Exception as error:
            if is_lock_timeout(error):  # not expected read-only (WAL recovery?); busy, never an outage
                self.succeeded()
                return True
            if not is_outage(error):
                raise
            self.failed(error)
            return False
        self.succeeded()
        return True


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
