"""Issue 10 item 4: a frozen Redis (accepts connections, never answers) must not slow the event loop.

The rate-limit counter falls back to local counting after the first timeout (a circuit breaker) and
retries Redis in the background, never on a request.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi.testclient import TestClient

from bench.faultkit import Blackhole, FrozenServer
from serving.precomputed import BATCH_IO_SECONDS
from serving.security import CircuitBreaker
from tests.resilience.conftest import (
    LoopWatch,
    fault_app,
    fault_settings,
    make_keys,
    seeded_factory,
)
from tests.serving.conftest import auth

FROZEN_PORT = 18102  # issue 10's port range
REFUSED_PORT = 18110  # nothing listens there
BLACKHOLE_PORT = 18111


@pytest.fixture
def frozen_redis():
    server = FrozenServer(FROZEN_PORT)
    yield server
    server.close()


def test_frozen_redis_neither_blocks_health_nor_slows_throttled_calls(tmp_path, open_client, frozen_redis):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    # Bounds relative to the Redis timeout, not absolute: a held loop or a Redis call per request costs a
    # whole timeout, while a free one answers in milliseconds even on a loaded host (0.1 s and 0.05 s
    # bounds failed there).
    timeout = 2.0
    settings = fault_settings(
        tmp_path, redis_url=f"redis://127.0.0.1:{FROZEN_PORT}/0", redis_timeout_seconds=timeout
    )
    client = open_client(settings, factory)
    marketer = auth(keys["marketer"])  # a throttled role: every call counts in the limiter
    first = threading.Thread(target=lambda: client.get("/v1/rankings", headers=marketer))
    first.start()
    time.sleep(0.1)  # the first throttled call now waits for Redis
    start = time.perf_counter()
    assert client.get("/health").status_code == 200
    health_seconds = time.perf_counter() - start
    first_waiting = first.is_alive()
    first.join()
    # the event loop was free meanwhile: /health answered while the first call still waited for Redis
    assert first_waiting and health_seconds < timeout / 2
    assert frozen_redis.connections >= 1

    start = time.perf_counter()
    statuses = [client.get("/v1/rankings", headers=marketer).status_code for _ in range(20)]
    per_call = (time.perf_counter() - start) / 20
    assert statuses == [200] * 20
    assert per_call < timeout / 4  # breaker open: counted locally, Redis not asked again
    limiter = client.app.state.serving.limiter
    assert not limiter.breaker.closed and limiter.breaker.trips == 1


def test_breaker_retries_in_the_background_and_closes_when_the_store_answers():
    attempts = []

    async def probe():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("still down")

    async def run():
        breaker = CircuitBreaker("store", probe, retry_seconds=0.02)
        breaker.trip(TimeoutError())
        assert not breaker.closed
        for _ in range(100):
            if breaker.closed:
                break
            await asyncio.sleep(0.01)
        breaker.stop()
        return breaker

    breaker = asyncio.run(run())
    assert breaker.closed and len(attempts) == 3 and breaker.trips == 1


@pytest.fixture(params=["frozen", "refusing", "unreachable"])
def broken_redis(request):
    """The URL of a Redis that is frozen (accepts, never answers), refuses connections (nothing listens) or
    never completes a connect (drops packets)."""
    if request.param == "refusing":
        yield f"redis://127.0.0.1:{REFUSED_PORT}/0", None
        return
    server = FrozenServer(FROZEN_PORT) if request.param == "frozen" else Blackhole(BLACKHOLE_PORT)
    yield f"redis://127.0.0.1:{server.port}/0", server
    server.close()


def test_a_broken_redis_never_holds_the_event_loop(tmp_path, open_client, broken_redis):
    """The loop's lag (how late a 10 ms timer fires) while throttled calls meet the broken Redis and the
    revocation feed keeps reconnecting to it: a blocking call would hold the loop a whole timeout, and a
    blocking connect on the loop thread is caught even when it fails at once."""
    url, server = broken_redis
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    timeout = 1.0
    client = open_client(fault_settings(tmp_path, redis_url=url, redis_timeout_seconds=timeout), factory)
    deadline = time.monotonic() + 2.5 * timeout  # the first call's wait, then the feed's reconnects
    marketer = auth(keys["marketer"])
    with LoopWatch(late=timeout / 4) as watch:
        sampling = client.portal.start_task_soon(watch.sample, deadline)
        while time.monotonic() < deadline:
            assert client.get("/v1/rankings", headers=marketer).status_code == 200
        sampling.result(timeout=5)
    assert len(watch.lags) > 50 and max(watch.lags) < timeout / 2, watch.report()
    assert watch.blocking == []
    serving = client.app.state.serving
    assert serving.limiter.breaker.trips == 1 and not serving.revocations.listening
    if isinstance(server, FrozenServer):
        assert server.connections >= 2  # the limiter's and the revocation feed's


def test_startup_and_shutdown_never_call_redis_on_the_event_loop(tmp_path):
    """The lifespan loads what the app serves (here the precomputed lists, from Redis through a blocking
    client) and stops its background threads in a worker thread, never on the event loop. A refusing
    Redis fails the load at once, so only the audit hook can see where the connect ran."""
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    url = f"redis://127.0.0.1:{REFUSED_PORT}/0"
    settings = fault_settings(tmp_path, redis_url=url, precomputed_redis=True, redis_timeout_seconds=0.25)
    app = fault_app(settings, factory, start_background=True)

    async def start_and_stop(watch: LoopWatch) -> None:
        asyncio.create_task(watch.sample(time.monotonic() + 60))  # cancelled when asyncio.run returns
        await asyncio.sleep(0)  # the watch now knows the loop thread
        async with app.router.lifespan_context(app):
            pass

    with LoopWatch(late=1.0) as watch:  # generous: the host may be loaded; the old code held it 5-30 s
        asyncio.run(start_and_stop(watch))
    assert watch.blocking == [] and watch.stacks == [], watch.report() + "\n".join(watch.blocking)
    assert app.state.serving.precomputed.last_error is not None  # it did try Redis, in a worker thread


def test_an_api_started_while_redis_is_frozen_serves_within_one_batch_read(tmp_path, frozen_redis):
    """The start waits for the first load of the precomputed lists, which read Redis with a 30 s socket
    timeout: a replica started while Redis was frozen answered nothing, `/health` included, for 31 s (long
    enough for an orchestrator's liveness probe to kill it, again and again). It now starts within one
    BATCH_IO_SECONDS and scores online until a batch loads."""
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    url = f"redis://127.0.0.1:{FROZEN_PORT}/0"
    settings = fault_settings(tmp_path, redis_url=url, precomputed_redis=True)
    start = time.monotonic()
    with TestClient(fault_app(settings, factory, start_background=True)) as client:
        started = time.monotonic() - start
        assert started < BATCH_IO_SECONDS + 5, started  # was 31 s
        assert client.get("/ready").json()["precomputed_error"] == "unavailable"
        page = client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["storefront"]))
        assert page.status_code == 200 and page.json()["model"]["source"] == "online"
    factory.kw["bind"].dispose()


def test_ready_reports_a_frozen_redis_before_any_throttled_call_within_its_timeout(
    tmp_path, open_client, frozen_redis
):
    """Only a counted call opened the breaker: with no throttled call yet, `/ready` said `"redis": "up"`
    while Redis was frozen. It now probes the store itself, and answers within the store's timeout."""
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    timeout = 0.5
    settings = fault_settings(
        tmp_path, redis_url=f"redis://127.0.0.1:{FROZEN_PORT}/0", redis_timeout_seconds=timeout
    )
    client = open_client(settings, factory)
    start = time.perf_counter()
    first = client.get("/ready")
    first_seconds = time.perf_counter() - start
    assert first.json()["redis"] == "unavailable" and first_seconds < timeout + 1.0
    start = time.perf_counter()
    assert client.get("/ready").json()["redis"] == "unavailable"
    assert time.perf_counter() - start < timeout / 2  # the breaker open: Redis not asked again
    assert client.app.state.serving.limiter.breaker.trips == 1
