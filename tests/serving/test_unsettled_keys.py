"""Ends of Idempotency-Key claims retried in the background (`serving.idempotency.UnsettledKeys`): an end
failing with anything but a database outage stopped every later end, and killed the thread.

An end raising, say, a ValueError escaped `flush` (only DBAPIError and SQLAlchemy's TimeoutError were
caught): it stayed first in `pending`, so every later end waited behind it, and it ended the daemon
thread silently (`PeriodicFlush._run` had no guard), so the keys of every later claim the database had
refused to end answered 409 `request_in_progress` until they expired, 24 h."""

from __future__ import annotations

import logging
import threading

from serving.batch_writer import PeriodicFlush
from serving.idempotency import UnsettledKeys


def test_an_end_that_fails_for_good_is_logged_once_and_dropped_and_the_rest_are_ended(caplog):
    unsettled = UnsettledKeys()
    ended = []

    def broken():
        raise ValueError("a claim row that no longer parses")

    unsettled.note(broken)
    unsettled.note(lambda: ended.append("later"))
    with caplog.at_level(logging.ERROR, logger="serving.idempotency"):
        assert unsettled.flush() == 1
        assert unsettled.flush() == 0

    assert ended == ["later"]
    assert len(unsettled.backlog) == 0
    failures = [r for r in caplog.records if "failed for good" in r.getMessage()]
    assert len(failures) == 1 and "a claim row that no longer parses" in failures[0].getMessage()


class _FailsOnce(PeriodicFlush):
    """A flush that raises the first time, then counts its calls."""

    thread_name = "fails-once"

    def __init__(self) -> None:
        super().__init__(every_seconds=0.01)
        self.calls = 0
        self.again = threading.Event()

    @property
    def backlogs(self):
        return ()

    def flush(self) -> int:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("unexpected")
        self.again.set()
        return 0


def test_the_flush_thread_outlives_a_flush_that_raises(caplog):
    writer = _FailsOnce()
    with caplog.at_level(logging.ERROR, logger="serving.batch_writer"):
        writer.start()
        try:
            assert writer.again.wait(5), "the thread died with the first flush"
        finally:
            writer.stop()
    assert any("unexpected" in r.getMessage() or r.exc_info for r in caplog.records)
