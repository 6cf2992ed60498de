"""A value rebuilt periodically in a daemon thread and swapped in by one reference assignment."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

from serving.resilience import is_connection_limit, is_outage

T = TypeVar("T")
log = logging.getLogger(__name__)

FailureCode = Literal["missing", "unreadable", "corrupt", "unavailable", "failed"]


def failure_code(error: BaseException) -> FailureCode:
    """Why a load failed, in one stable word: what /ready says to anyone who asks. An exception's text
    can hold file paths, SQL, host names and URLs with credentials, so it goes to the log only."""
    import pickle
    import zipfile

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from serving.precomputed import BatchMissing
    from training.registry import ModelUnavailable, RegistryUnreadable

    if isinstance(error, RegistryUnreadable):
        return error.kind
    # a file, a published batch or a part gone; not any LookupError: a KeyError or IndexError is a
    # loader's bug or a malformed input, not something gone
    if isinstance(error, FileNotFoundError | BatchMissing):
        return "missing"
    if (
        is_outage(error)
        or is_connection_limit(error)
        or isinstance(
            error,
            ConnectionError | TimeoutError | RedisConnectionError | RedisTimeoutError | ModelUnavailable,
        )
    ):
        return "unavailable"
    if isinstance(error, OSError):  # permissions, I/O errors
        return "unreadable"
    if isinstance(error, ValueError | EOFError | pickle.UnpicklingError | zipfile.BadZipFile):
        return "corrupt"  # cut short or not what it should be (Parquet, joblib, JSON)
    return "failed"


LoopStatus = Literal["ok", "failing", "stale", "not loaded"]
#: Refresh intervals after which data refreshed without failing is `stale`: a load's own duration and an
#: early `request_refresh` stay well inside it.
STALE_INTERVALS = 3


class Refreshing(Generic[T]):
    """Holds `current` (None until the first successful load); a failed reload keeps the previous value
    and says why in `last_error` (the whole message) and `error_code` (`failure_code`).

    The log has one line when reloads start failing (or fail another way: another code or exception
    type) and one when one succeeds again, with how long and how many failed: every failed reload was
    logged, 3 loops x 2 a minute through a database outage (each a multi-line message), and nothing
    said when they worked again.

    It also keeps what `/v1/ready/details` and `/metrics` report per loop, since `/ready` stays up on stale
    data: `last_success` (epoch seconds: when the data served was read, the start of its load),
    `age_seconds()`, `failures` (consecutive) and `status()`. `on_refresh`, when set, is called after each
    refresh, successful or not (the metrics follow it)."""

    def __init__(self, name: str, loader: Callable[[], T], every_seconds: float):
        self.name, self._loader, self.every_seconds = name, loader, every_seconds
        self.current: T | None = None
        self.last_error: str | None = None
        self.error_code: FailureCode | None = None
        self._failing: tuple[str, str] | None = None  # (code, exception type) of the failure logged
        self._failing_since, self.failures = 0.0, 0
        self.last_success: float | None = None
        self._loaded_at = 0.0  # `last_success` on the monotonic clock: the age survives clock steps
        self.on_refresh: Callable[[Refreshing[T]], None] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        loaded = self._load()
        if self.on_refresh is not None:
            try:
                self.on_refresh(self)
            except Exception as exc:  # a metrics file that cannot grow (disk full) must not end the loop
                log.warning("recording the refresh of %s failed: %s: %s", self.name, type(exc).__name__, exc)
        return loaded

    def _load(self) -> bool:
        started, started_at = time.monotonic(), time.time()
        try:
            value = self._loader()
        except Exception as exc:  # a failed refresh must never take the service down
            self.last_error, self.error_code = f"{type(exc).__name__}: {exc}", failure_code(exc)
            if self._failing is None:
                self._failing_since = time.monotonic()
            if self._failing != (self.error_code, type(exc).__name__):
                self._failing = (self.error_code, type(exc).__name__)
                log.warning("refreshing %s failed: %s", self.name, self.last_error)
            self.failures += 1
            return False
        if self._failing is not None:
            log.warning(
                "refreshing %s works again after %.1f s; %d refreshes failed meanwhile",
                self.name,
                time.monotonic() - self._failing_since,
                self.failures,
            )
            self._failing, self.failures = None, 0
        self.current = value
        self.last_error = self.error_code = None
        self.last_success, self._loaded_at = started_at, started
        return True

    def age_seconds(self) -> float | None:
        """How old the data served is (None: never loaded)."""
        return None if self.last_success is None else time.monotonic() - self._loaded_at

    def status(self) -> LoopStatus:
        """`failing` from the first failed refresh; `stale` once the data is older than `STALE_INTERVALS`
        intervals without a failure (a load hung, the thread gone: nothing else would say it)."""
        age = self.age_seconds()
        if self.failures:
            return "failing"
        if age is None:
            return "not loaded"
        return "stale" if age > STALE_INTERVALS * self.every_seconds else "ok"

    def start(self) -> None:
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"refresh-{self.name}", daemon=True)
        self._thread.start()

    def request_refresh(self) -> None:
        """Rebuild soon in the background (after a write this replica knows about) instead of waiting."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.refresh()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
