"""Issue 10 item 1: concurrent checkouts never stall the worker threads or the connection pool.

The stall came from a lock holder waiting for resources held by the requests queued behind its lock: its
response was validated, and its transaction committed, on worker threads that every waiter had taken.
Here the thread pool is shrunk below the number of concurrent checkouts so that this can happen at once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from tests.resilience.conftest import POOL_SLOTS, fault_settings, invariants, make_keys, seeded_factory
from tests.serving.conftest import auth

BUYERS = 16
THREADS = POOL_SLOTS + 1  # one more worker thread than database slots: what the sizing rule guarantees


@pytest.mark.timeout(120)
def test_more_checkouts_than_threads_all_finish_and_only_answered_orders_commit(
    database_url, tmp_path, open_client
):
    factory = seeded_factory(database_url, buyers=BUYERS, stock=10)
    keys = make_keys(factory, buyers=BUYERS)
    client = open_client(fault_settings(tmp_path, db_wait_seconds=20), factory)

    def shrink() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS

    client.portal.call(shrink)
    barrier = threading.Barrier(BUYERS)

    def buy(i: int):
        body = {"lines": [{"product_id": "p01", "quantity": 1}], "coupon_id": "c-capped"}
        barrier.wait()
        start = time.perf_counter()
        r = client.post(f"/v1/shoppers/b{i}/orders", json=body, headers=auth(keys[f"b{i}"]))
        return r.status_code, r.json(), time.perf_counter() - start

    with ThreadPoolExecutor(BUYERS) as pool:
        futures = [pool.submit(buy, i) for i in range(BUYERS)]
        results = [f.result(timeout=60) for f in futures]  # before the fix: never (a deadlock)

    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {201, 409}, results
    assert statuses.count(201) == 10  # exactly the stock, each checkout with the capped coupon
    assert {body["code"] for status, body, _ in results if status == 409} <= {"out_of_stock"}
    assert max(seconds for _, _, seconds in results) < 20
    state = invariants(factory)
    assert state["orders"] == statuses.count(201)  # no order without a 201
    assert state["reserved"] == state["pending_units"] == 10
    assert state["coupon_used"] == state["redemptions"] == 10 <= state["usage_limit"]
    factory.kw["bind"].dispose()
