"""A daemon thread that calls `flush()` every `every_seconds`, and once more on `stop()`: how the request
path hands writes (exposures, ad impressions) to the database in batches instead of per request."""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

log = logging.getLogger(__name__)

#: How long `stop()` keeps retrying what is still queued while the database is away (a restart or a
#: failover during a deploy): the first failed flush used to be the last, and the rows went with the
#: process. Short, since it runs after the requests' shutdown grace, before the orchestrator's SIGKILL.
FINAL_FLUSH_SECONDS = 3.0
FINAL_FLUSH_RETRY_SECONDS = 0.5


class Backlog:
    """Rows on their way to the database: the queue the request path puts to and the batch the writer
    retries until it is stored, bounded together at `limit`. Unbounded, a long outage under traffic grew
    the process until it died, losing them all; what does not fit is counted instead, and the count
    logged once the database takes the writes again."""

    def __init__(self, what: str, limit: int) -> None:
        self.what, self.limit = what, limit
        self.pending: list[Any] = []  # drained from the queue, not yet stored
        self.dropped = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._count = threading.Lock()  # put's check-then-put and the dropped count, across request threads

    def __len__(self) -> int:
        return self._queue.qsize() + len(self.pending)

    def put(self, row: Any) -> bool:
        """Queue `row`; False (and counted) when the backlog is full."""
        with self._count:
            if len(self) >= self.limit:
                self.dropped += 1
                return False
            self._queue.put(row)
            return True

    def drain(self) -> list[Any]:
        """Move what was queued into `pending` (the writer's lock held); returns `pending`."""
        while True:
            try:
                self.pending.append(self._queue.get_nowait())
            except queue.Empty:
                return self.pending

    def stored(self) -> None:
        """`pending` is in the database."""
        self.pending.clear()
        with self._count:
            dropped, self.dropped = self.dropped, 0
        if dropped:
            log.error("the database was unavailable too long: %d %s were not kept", dropped, self.what)


class PeriodicFlush(ABC):
    """A daemon thread calling `flush` every `every_seconds`; subclasses set `thread_name` and flush
    holding `_flush_lock` (the thread's and `stop`'s flushes never overlap)."""

    thread_name: str

    def __init__(self, every_seconds: float) -> None:
        self.every_seconds = every_seconds
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def flush(self) -> int:
        """Write what is queued; returns how many rows were written."""

    @property
    @abstractmethod
    def backlogs(self) -> tuple[Backlog, ...]:
        """What is queued, by kind."""

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Flush until stopped; a flush that raises is logged and the next one tried, since the thread
        dying ended every later flush silently (what was queued then waited for `stop()`, or was lost)."""
        while not self._stop.wait(self.every_seconds):
            try:
                self.flush()
            except Exception:
                log.exception("%s: a flush failed; retrying in %.1f s", self.thread_name, self.every_seconds)

    def stop(self) -> None:
        """Stop the thread and write what is still queued, retrying for FINAL_FLUSH_SECONDS while the
        database is away; what is left then is logged as lost."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        deadline = time.monotonic() + FINAL_FLUSH_SECONDS
        self.flush()
        while any(len(b) for b in self.backlogs) and time.monotonic() < deadline:
            time.sleep(FINAL_FLUSH_RETRY_SECONDS)
            self.flush()
        for backlog in self.backlogs:
            if len(backlog):
                log.error(
                    "stopping with the database unavailable: %d %s were not kept", len(backlog), backlog.what
                )
