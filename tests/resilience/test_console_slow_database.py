"""A database answering slowly while a console page reads it: the page waits for it, the process's other
requests do not. The console's routes are async (they render with the browser's session) while the API's
code they call is synchronous: run on the event loop, a console page's queries held every request of the
replica for as long as they waited."""

from __future__ import annotations

import threading
import time

import pytest

from commerce.db import make_session_factory
from tests.conftest import free_port
from tests.resilience.conftest import (
    collection_paused,
    fault_settings,
    make_keys,
    proxied_engine,
    seeded_factory,
)
from tests.serving.conftest import auth
from tests.serving.test_console import sign_in

PROXY_PORTS = range(18761, 18767)
SLOW = 0.5  # seconds each answer of the database takes (the page makes several round trips)
OTHERS_WITHIN = 1.0  # seconds a memory read may take while the page waits (2.0 s on the event loop)


def test_a_console_page_waiting_on_a_slow_database_holds_no_other_request(
    database_url, tmp_path, open_client
):
    if not database_url.startswith("postgresql"):
        pytest.skip("the delay is simulated on PostgreSQL's TCP connection")
    factory = seeded_factory(database_url)
    keys = make_keys(factory)
    proxy, engine = proxied_engine(database_url, free_port(PROXY_PORTS), statement_timeout=5)
    try:
        client = open_client(fault_settings(tmp_path), make_session_factory(engine))
        sign_in(client, keys["marketer"])
        assert client.get("/console/campaigns").status_code == 200
        assert client.get("/v1/products", headers=auth(keys["storefront"])).status_code == 200

        proxy.delay = SLOW
        pages: list = []
        page = threading.Thread(target=lambda: pages.append(client.get("/console/campaigns")), daemon=True)
        page.start()
        waits = []
        with collection_paused():  # a full collection's pause is not a wait on the page (2.5 s once)
            while page.is_alive():  # memory reads all along the page's wait
                started = time.monotonic()
                assert client.get("/v1/products", headers=auth(keys["storefront"])).status_code == 200
                waits.append(time.monotonic() - started)
                time.sleep(0.02)
        assert pages[0].status_code == 200
        assert max(waits) < OTHERS_WITHIN, f"a memory read waited {max(waits):.1f} s behind the console page"
    finally:
        engine.dispose()
        proxy.close()
        factory.kw["bind"].dispose()
