"""Apps built, started and stopped in one process (tests, restarts) leave nothing behind: an app that
outlived its lifespan kept every object it held (about 25,000 for the test app, more with a loaded model)."""

from __future__ import annotations

import gc
import socket
import threading
import weakref

from fastapi.testclient import TestClient

import commerce.all_models  # noqa: F401  (every table on the metadata)
from commerce.catalog import Product
from commerce.db import Base, make_engine, transaction
from serving.app import create_app
from serving.console import campaigns
from tests.serving.conftest import LOOPBACK, ScriptedSource

PAGES = ("/health", "/ready", "/", "/docs", "/redoc", "/openapi.json", "/console/", "/v1/products",
         "/v1/search?q=product", "/v1/shoppers/s1/recommendations", "/metrics")  # fmt: skip


def _cycle(settings, session_factory, source) -> weakref.ref:
    """Build, start, serve a page of each kind, stop; a weak reference to the app."""
    app = create_app(
        settings,
        session_factory=session_factory,
        model_source=source,
        uplift_source=ScriptedSource(),
        delivery_source=ScriptedSource(),
        start_background=False,
    )
    with TestClient(app, client=LOOPBACK) as client:  # a client /metrics answers
        for page in PAGES:
            assert client.get(page).status_code < 500, page
    return weakref.ref(app)


def test_stopped_apps_are_freed(settings, session_factory, source):
    for _ in range(1):  # first-use caches (imports, schemas, templates) fill here
        _cycle(settings, session_factory, source)
    gc.collect()
    before = len(gc.get_objects())
    apps = [_cycle(settings, session_factory, source) for _ in range(3)]
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert [app() for app in apps] == [None] * 3
    # one leaked app is about 25,000 objects; without leaks a few hundred remain from lazily filled caches
    assert grown < 2_000, f"{grown} objects survived three app lifecycles"


def test_stopping_closes_the_engine_the_app_made(settings, database_url, source):
    """An app given only settings makes its own engine; stopping it closes the pooled connections (a
    replaced app otherwise held its database files and server connections until garbage collection)."""
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    own = settings.model_copy(update={"database_url": database_url})
    app = create_app(
        own, model_source=source, uplift_source=ScriptedSource(), delivery_source=ScriptedSource(),
        start_background=False,
    )  # fmt: skip
    engine = app.state.serving.session_factory.kw["bind"]
    with TestClient(app) as client:
        assert client.get("/v1/products").status_code == 200
        assert engine.pool.checkedin() > 0
    assert engine.pool.checkedin() == 0


def test_console_reports_are_bounded_and_per_app(monkeypatch, make_client):
    """The console's report cache keeps at most its size (it was a process-wide dict growing by every
    campaign reported, shared by every app in the process)."""
    measured = []

    def report(campaign_id, session, principal, alpha):
        measured.append(campaign_id)
        return {"campaign": campaign_id}

    monkeypatch.setattr(campaigns.marketing_api, "report", report)
    cache = campaigns.ReportCache(entries=2)
    for campaign_id in ("c1", "c2", "c3", "c3", "c1"):
        assert cache.report(None, campaign_id, None) == {"campaign": campaign_id}
    assert len(cache) == 2
    assert measured == ["c1", "c2", "c3", "c1"]  # c3 again from the cache, c1 evicted and measured again
    one, other = make_client(), make_client()
    assert one.app.state.console_reports is not other.app.state.console_reports


def test_stopping_ends_the_span_exporter(make_client, settings, monkeypatch):
    """Tracing to a collector runs an exporting thread per app; stopping the app ends it (it ran, and kept
    the provider and its queued spans, until the process exited). The exporter retries the final export
    for its timeout: 1 s here, not OTLP's default 10 s (8 s of this test)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    threads = {t for t in threading.enumerate() if t.name.startswith("OtelBatch")}
    # a port bound and never listening: export fails quietly (not the point), and no test on the other
    # xdist worker can be serving there (18661 was in round 6's range: spans went to its live server)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{unused.getsockname()[1]}"
        client = make_client(settings=settings.model_copy(update={"otel_endpoint": endpoint}))
        started = {t for t in threading.enumerate() if t.name.startswith("OtelBatch")} - threads
        assert started
        client.__exit__(None, None, None)
    assert not any(t.is_alive() for t in started)


class _Node:
    """A reference cycle's member: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_a_served_app_freezes_its_start_up_heap(settings, session_factory, source):
    """`freeze_heap` (`crosscart serve`'s app): what start-up built is out of the collector's reach, so a
    full collection under traffic no longer walks it; garbage made before start-up is collected first,
    not frozen for good. Apps built by default (tests) freeze nothing."""
    gc.unfreeze()
    for freeze in (False, True):
        gc.disable()  # the cycle is left for start-up to collect (an automatic collection may not come)
        cycle = weakref.ref(_Node())
        app = create_app(
            settings, session_factory=session_factory, model_source=source, uplift_source=ScriptedSource(),
            delivery_source=ScriptedSource(), start_background=False, freeze_heap=freeze,
        )  # fmt: skip
        try:
            with TestClient(app) as client:
                assert client.get("/v1/products").status_code == 200
                if not freeze:
                    assert gc.get_freeze_count() == 0
                    continue
                assert gc.get_freeze_count() > 10_000  # the libraries, the app, the catalog
                assert not any(o is app.state.serving for o in gc.get_objects())  # not walked any more
                assert cycle() is None  # collected before the freeze, not kept for good
        finally:
            gc.unfreeze()  # this process goes on building apps
            gc.enable()


def test_what_a_refresh_replaces_is_freed_though_start_up_froze_it(settings, session_factory, source):
    """A frozen object is never collected: one the start-up built and a refresh then replaces must be
    freed by its reference count alone. The search parser was a reference cycle (its typo cache held a
    bound method), so each served app kept its first vocabulary for good."""
    gc.unfreeze()
    app = create_app(
        settings, session_factory=session_factory, model_source=source, uplift_source=ScriptedSource(),
        delivery_source=ScriptedSource(), start_background=False, freeze_heap=True,
    )  # fmt: skip
    try:
        with TestClient(app) as client:
            assert client.get("/v1/search", params={"q": "product"}).status_code == 200
            search = app.state.search
            first = weakref.ref(search.parser), weakref.ref(search.parser.vocabulary)
            with transaction(session_factory) as session:
                session.get(Product, "p01").title = "Renamed product"
            search.refresh()
            assert search.parser is not first[0]()  # the change rebuilt the vocabulary
            gc.collect()
            assert [ref() for ref in first] == [None, None]
    finally:
        gc.unfreeze()
