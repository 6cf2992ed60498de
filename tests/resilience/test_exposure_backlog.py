"""Experiment exposures and logged pages wait in memory while the database is down, within a bound: a
long outage under traffic must not grow the process until it dies (losing everything it held)."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import func, select

import serving.batch_writer
from commerce.db import transaction
from commerce.experiments import ExperimentImpression
from commerce.services.experiments import create_experiment, exposure_counts, start_experiment
from serving.ab import ExposureLog
from serving.batch_writer import Backlog
from serving.search import ImpressionLog
from tests.resilience.conftest import seeded_factory

ROW = {"page_id": "", "slot": 1, "product_id": "p01", "team": None, "propensity": None}


def _down():
    raise ConnectionError("database unavailable")


def test_the_backlog_is_bounded_while_the_database_is_down_and_written_when_it_is_back(tmp_path, caplog):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with transaction(factory) as s:
        create_experiment(s, "e", {"a": 1, "b": 1})
        start_experiment(s, "e")
    log = ExposureLog(_down, max_exposures=5, max_pages=3)
    for i in range(20):  # an outage under traffic: many shoppers, many pages, several flushes failing
        log.note(f"s{i}", [("e", "a")])
        log.note_page("e", "a", f"s{i}", [{**ROW, "page_id": f"page{i}"}], None)
        if i % 7 == 0:
            assert log.flush() == 0
    assert (len(log.exposures), len(log.pages)) == (5, 3)  # what is held stays within the bound
    assert (log.exposures.dropped, log.pages.dropped) == (15, 17)

    log.session_factory = factory
    with caplog.at_level(logging.ERROR, logger="serving.batch_writer"):
        assert log.flush() == 5
    assert "15 exposures were not kept" in caplog.text and "17 logged pages were not kept" in caplog.text
    assert (log.exposures.dropped, log.pages.dropped) == (0, 0)  # reported once
    log.note("s19", [("e", "a")])  # a shopper whose exposure was not kept is noted on its next page
    assert log.flush() == 1
    with factory() as s:
        assert exposure_counts(s, "e") == {"a": 6, "b": 0}
        assert s.scalar(select(func.count()).select_from(ExperimentImpression)) == 3
    factory.kw["bind"].dispose()


def test_ad_impressions_are_bounded_the_same_way():
    impressions = ImpressionLog(_down, max_pending=4)
    for i in range(10):
        impressions.note(f"claim{i}", None)
    assert impressions.flush() == 0 and len(impressions.backlog) == 4 and impressions.backlog.dropped == 6


def test_a_row_the_database_refuses_is_dropped_not_retried_for_ever(database_url, caplog):
    """A storefront key may ask for any shopper id's page (no database lookup), and its exposure is queued:
    one PostgreSQL refuses (a NUL character, an id longer than the column) failed every flush of the
    batch it was in, so nothing was stored again until the backlog overflowed. It is dropped with a
    warning, like a row of an experiment stopped meanwhile; the others are stored."""
    factory = seeded_factory(database_url)
    with transaction(factory) as s:
        create_experiment(s, "e", {"a": 1, "b": 1})
        start_experiment(s, "e")
    log = ExposureLog(factory)
    bad = ["s\x00x", "s" * 200] if database_url.startswith("postgresql") else []  # SQLite stores both
    for i, shopper in enumerate(["s1", *bad, "s2"]):
        log.note(shopper, [("e", "a")])
        log.note_page("e", "a", shopper, [{**ROW, "page_id": f"page{i}"}], None)
    with caplog.at_level(logging.WARNING, logger="serving.ab"):
        assert log.flush() == 2
    assert (len(log.exposures), len(log.pages)) == (0, 0)  # nothing left to retry
    if bad:
        assert "not recorded" in caplog.text
    with factory() as s:
        assert exposure_counts(s, "e") == {"a": 2, "b": 0}
        assert s.scalar(select(func.count()).select_from(ExperimentImpression)) == 2
    factory.kw["bind"].dispose()


def test_the_bound_and_the_dropped_count_hold_when_request_threads_put_at_once(monkeypatch):
    counted = Backlog.__len__

    def slow_len(self):  # a thread switch between the bound's check and the put, as under load
        n = counted(self)
        time.sleep(0.001)
        return n

    monkeypatch.setattr(Backlog, "__len__", slow_len)
    backlog = Backlog("rows", limit=50)
    barrier = threading.Barrier(8)

    def put_many():
        barrier.wait()
        for i in range(20):
            backlog.put(i)

    threads = [threading.Thread(target=put_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counted(backlog) == 50  # never past the bound, however the threads interleave
    assert backlog.dropped == 8 * 20 - 50  # every refused row counted


def test_stopping_while_the_database_is_away_retries_then_says_what_was_lost(tmp_path, caplog, monkeypatch):
    """The shutdown's flush was the last: with the database restarting at that moment (a deploy during a
    failover), the exposures and ad impressions queued went with the process, logged as "will retry".
    `stop()` now retries for FINAL_FLUSH_SECONDS, then logs what was not kept."""
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with transaction(factory) as s:
        create_experiment(s, "e", {"a": 1, "b": 1})
        start_experiment(s, "e")
    down = threading.Event()
    down.set()

    def sessions():
        if down.is_set():
            _down()
        return factory()

    exposures = ExposureLog(sessions)
    exposures.note("s1", [("e", "a")])
    threading.Timer(0.6, down.clear).start()  # back 0.6 s into the shutdown
    exposures.stop()
    with factory() as s:
        assert exposure_counts(s, "e") == {"a": 1, "b": 0}  # was 0: lost
    factory.kw["bind"].dispose()

    monkeypatch.setattr(serving.batch_writer, "FINAL_FLUSH_SECONDS", 0.5)
    impressions = ImpressionLog(_down)
    impressions.note("claim", None)
    start = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="serving.batch_writer"):
        impressions.stop()
    assert time.monotonic() - start < 3  # bounded: the orchestrator's SIGKILL comes next
    assert "1 ad impressions were not kept" in caplog.text
