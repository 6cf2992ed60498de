"""A PostgreSQL server that stops answering without closing anything (SIGSTOPped, or a network path
that black-holes packets): the kernel keeps acknowledging, so neither the server's statement timeout nor
TCP notices. Every wait on the server is bounded on the client."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from commerce.db import make_session_factory
from tests.conftest import free_port
from tests.resilience.conftest import (
    fault_app,
    fault_settings,
    invariants,
    make_keys,
    proxied_engine,
    seeded_factory,
)
from tests.serving.conftest import auth

# A free port of these per test, not one fixed port: tests of this module once ran on both xdist workers
# at the same time (`--dist loadgroup` splitting modules, see tests/conftest.py) and clashed on 18750.
PROXY_PORTS = range(18754, 18760)
ORDER = {"lines": [{"product_id": "p01", "quantity": 1}]}
ANSWER_WITHIN = 30  # seconds: far above the 1 s statement timeout + grace, far below "never"


def _post(client, key: str, results: list) -> None:
    results.append(client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(key)))


def test_a_frozen_database_mid_request_is_a_503_then_recovers(database_url, tmp_path, open_client):
    if not database_url.startswith("postgresql"):
        pytest.skip("the freeze is simulated on PostgreSQL's TCP connection")
    factory = seeded_factory(database_url, buyers=2)
    keys = make_keys(factory, buyers=2)
    proxy, engine = proxied_engine(database_url, free_port(PROXY_PORTS), statement_timeout=1)
    try:
        client = open_client(fault_settings(tmp_path), make_session_factory(engine))
        assert client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(keys["b0"])).status_code == 201

        proxy.freeze()
        results: list = []
        worker = threading.Thread(target=_post, args=(client, keys["b0"], results), daemon=True)
        worker.start()
        worker.join(ANSWER_WITHIN)
        assert not worker.is_alive(), "the request hung on the frozen database"
        (r,) = results
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert r.json()["code"] in {"unavailable", "outcome_unknown"}

        proxy.thaw()
        assert client.post("/v1/shoppers/b1/orders", json=ORDER, headers=auth(keys["b1"])).status_code == 201
        state = invariants(factory)
        # the refused checkout left nothing (or, if its COMMIT was what froze, it was flagged as unknown)
        assert state["orders"] == 2 + (r.json()["code"] == "outcome_unknown")
        assert state["reserved"] == state["pending_units"]
    finally:
        proxy.thaw()
        engine.dispose()
        proxy.close()
        factory.kw["bind"].dispose()


def test_an_api_started_while_the_database_is_frozen_serves_health_then_recovers(database_url, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("the freeze is simulated on PostgreSQL's TCP connection")
    factory = seeded_factory(database_url, buyers=1)
    keys = make_keys(factory, buyers=1)
    proxy, engine = proxied_engine(database_url, free_port(PROXY_PORTS), statement_timeout=1)
    proxy.freeze()
    app = fault_app(
        fault_settings(tmp_path),
        make_session_factory(engine),
        start_background=True,
        catalog_refresh_seconds=0.5,
    )
    client = TestClient(app)
    try:
        started = threading.Thread(target=client.__enter__, daemon=True)  # the lifespan's start-up
        started.start()
        started.join(ANSWER_WITHIN)
        assert not started.is_alive(), "start-up hung on the frozen database"
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["catalog_products"] is None

        proxy.thaw()  # the database answers again: the replica gets ready by itself
        deadline = time.monotonic() + ANSWER_WITHIN
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/ready").status_code == 200
        assert client.post("/v1/shoppers/b0/orders", json=ORDER, headers=auth(keys["b0"])).status_code == 201
    finally:
        proxy.thaw()
        client.__exit__(None, None, None)
        engine.dispose()
        proxy.close()
        factory.kw["bind"].dispose()
