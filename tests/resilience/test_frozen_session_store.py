"""A frozen Redis under the live-session store (`CROSSCART_REDIS_URL`; accepts connections, never
answers). Rate limits already fell back after one timeout (test_frozen_redis.py), but every event write
and every session page asked Redis again, each waiting its 0.5 s timeout and logging a warning: 10
events and 10 session pages took about 10 s and logged 20 warnings. After a failure the store now keeps
sessions in process without asking Redis for `STORE_RETRY_SECONDS`, logging the outage once."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from bench.faultkit import FrozenServer
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth

FROZEN_PORT = 18660  # this round's port range
SESSION = "visit-0123456789abcdef"


@pytest.fixture
def frozen_redis():
    server = FrozenServer(FROZEN_PORT)
    yield server
    server.close()


def test_a_frozen_redis_costs_the_session_store_one_timeout_not_one_per_call(
    tmp_path, open_client, frozen_redis, caplog
):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    settings = fault_settings(
        tmp_path, redis_url=f"redis://127.0.0.1:{FROZEN_PORT}/0", redis_timeout_seconds=0.5
    )
    client = open_client(settings, factory)
    storefront = auth(keys["storefront"])  # not throttled: only the session store asks Redis
    started = time.perf_counter()
    for i in range(10):
        event = {
            "event_id": f"e{i}",
            "ts": datetime.now(UTC).isoformat(),
            "shopper_id": "s2",
            "event_type": "view",
            "product_id": f"p0{1 + i % 8}",
            "session_id": SESSION,
        }
        posted = client.post("/v1/events", json={"events": [event]}, headers=storefront)
        assert posted.status_code == 202 and posted.json()["session_events"] == 1, posted.text
        page = client.get(f"/v1/sessions/{SESSION}/recommendations", headers=storefront)
        assert page.status_code == 200 and len(page.json()["session"]["items"]) == i + 1  # kept in process
    seconds = time.perf_counter() - started
    warnings = [r for r in caplog.records if "session store unavailable" in r.getMessage()]
    assert len(warnings) == 1, (len(warnings), seconds)  # was 20: one per call
    assert seconds < 5, seconds  # was about 10 s: 0.5 s per call
    factory.kw["bind"].dispose()
