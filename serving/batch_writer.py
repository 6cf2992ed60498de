"""A daemon thread that calls `flush()` every `every_seconds`, and once more on `stop()`: how the request
path hands writes (exposures, ad impressions) to the database in batches instead of per request."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class PeriodicFlush(ABC):
    """Subclasses set `every_seconds`, `thread_name`, `_stop` (an Event) and `_thread` (None)."""

    every_seconds: float
    thread_name: str
    _stop: threading.Event
    _thread: threading.Thread | None

    @abstractmethod
    def flush(self) -> int:
        """Write what is queued; returns how many rows were written."""

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            self.flush()

    def stop(self) -> None:
        """Stop the thread and write what is still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()
