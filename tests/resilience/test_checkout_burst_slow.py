"""Issue 10 item 1 at full size: 200 concurrent checkouts over HTTP on PostgreSQL (a real uvicorn server
in its own process) are each completed or refused within 2 s by the API, nothing is committed for a
request that got an error, and the stock, coupon and event invariants hold."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import create_engine, text

from bench.faults import (
    CHECKOUT_ROUTE,
    ApiProcess,
    Recorder,
    checkout_burst,
    health_burst,
    invariants,
    seed,
    server_side,
)
from tests.conftest import POSTGRES_URL

API_PORT = 18109
BURST = 200


@pytest.mark.slow
@pytest.mark.postgres
def test_two_hundred_concurrent_checkouts_on_postgresql(tmp_path, postgres_reason):
    if postgres_reason is not None:
        pytest.skip(postgres_reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3D{schema}"
    api = None
    try:
        seeded = seed(url, shoppers=BURST, burst_stock=150, coupon_limit=120)
        api = ApiProcess(tmp_path, url, "", API_PORT)
        api.wait_ready()
        baseline, recorder = Recorder(), Recorder()
        asyncio.run(health_burst(api.url, BURST, baseline))  # what the burst costs the client alone
        before = api.server_histogram(CHECKOUT_ROUTE)
        asyncio.run(checkout_burst(api.url, seeded["keys"]["shoppers"], recorder))
        statuses = [status for kind, status, _ in recorder.rows]
        assert set(statuses) <= {"201", "409", "422", "503"}, statuses  # no 500, no client timeout
        answered = server_side(before, api.server_histogram(CHECKOUT_ROUTE))
        phases = {"health_burst": baseline.summary(), "checkout_burst": recorder.summary()}
        assert answered["requests"] == BURST
        # By the API's own clock: the client shares this machine's CPUs (bench.faults reports a /health
        # burst of the same size beside it, and checks the client's own maximum). On a host whose CPUs
        # are oversubscribed (load 10+ on 2 cores) a few percent of the refusals miss this by up to 0.5 s.
        assert answered["within_2.0s"] == 1.0, (answered, phases)
        assert api.log_count("Traceback") == 0
        state = invariants(url, seeded, recorder.created)
        assert state["client_invisible_commits"] == 0
        assert state["reserved_equals_pending_lines"] and state["stock_equals_initial_minus_paid"]
        assert state["coupon_uses_equal_redemptions_within_limit"]
        assert state["coupon_uses"] == statuses.count("201")  # every order used the capped coupon
    finally:
        if api is not None:
            api.stop()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
