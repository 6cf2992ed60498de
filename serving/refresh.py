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


class Refreshing(Generic[T]):
    """Holds `current` (None until the first successful load); a failed reload keeps the previous value
    and says why in `last_error` (the whole message) and `error_code` (`failure_code`).

    The log has one line when reloads start failing (or fail another way: another code or exception
    type) and one when one succeeds again, with how long and how many failed: every failed reload was
    logged, 3 loops x 2 a minute through a database outage (each a multi-line message), and nothing
    said when they worked again."""

    def __init__(self, name: str, loader: Callable[[], T], every_seconds: float):
        self.name, self._loader, self.every_seconds = name, loader, every_seconds
        self.current: T | None = None
        self.last_error: str | None = None
        self.error_code: FailureCode | None = None
        self._failing: tuple[str, str] | None = None  # (code, exception type) of the failure logged
        self._failing_since, self._failures = 0.0, 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        try:
            value = self._loader()
        except Exception as exc:  # a failed refresh must never take the service down
            self.last_error, self.error_code = f"{type(exc).__name__}: {exc}", failure_code(exc)
            if self._failing is None:
                self._failing_since = time.monotonic()
            if self._failing != (self.error_code, type(exc).__name__):
                self._failing = (self.error_code, type(exc).__name__)
                log.warning("refreshing %s failed: %s", self.name, self.last_error)
            self._failures += 1
            return False
        if self._failing is not None:
            log.warning(
                "refreshing %s works again after %.1f s; %d refreshes failed meanwhile",
                self.name,
                time.monotonic() - self._failing_since,
                self._failures,
            )
            self._failing, self._failures = None, 0
        self.current = value
        self.last_error = self.error_code = None
        return True

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
