"""Rate limits, body-size limit, operations endpoints and no PII in responses or logs."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import pytest

from serving.security import Principal, RateLimiter
from tests.serving.conftest import auth, scrape


def test_shoppers_and_anonymous_are_throttled_storefront_is_not(make_client, keys, settings):
    client = make_client(
        settings=settings.model_copy(
            update={"rate_limit_per_minute": 3, "rate_limit_anonymous_per_minute": 2}
        )
    )
    shopper = [
        client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["shopper"])).status_code
        for _ in range(4)
    ]
    assert shopper == [200, 200, 200, 429]
    limited = client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["shopper"]))
    assert 1 <= int(limited.headers["retry-after"]) <= 60 and limited.json()["code"] == "rate_limited"
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.headers["ratelimit-policy"] == '"per-key";q=3;w=60'
    assert limited.headers["ratelimit"].startswith('"per-key";r=0;t=')
    assert [client.get("/v1/rankings").status_code for _ in range(3)] == [200, 200, 429]
    storefront = {
        client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["storefront"])).status_code
        for _ in range(10)
    }
    assert storefront == {200}
    # Another shopper has its own budget.
    assert client.get("/v1/shoppers/s2/orders", headers=auth(keys["shopper2"])).status_code == 200


def test_throttled_responses_carry_ratelimit_headers(make_client, keys, settings):
    client = make_client(settings=settings.model_copy(update={"rate_limit_per_minute": 5}))
    remaining = []
    for _ in range(3):
        r = client.get("/v1/shoppers/s1/orders", headers=auth(keys["shopper"]))
        assert r.status_code == 200 and r.headers["ratelimit-policy"] == '"per-key";q=5;w=60'
        fields = dict(p.split("=") for p in r.headers["ratelimit"].split(";")[1:])
        assert 1 <= int(fields["t"]) <= 60
        remaining.append(int(fields["r"]))
    assert remaining == [4, 3, 2]
    # Unthrottled roles (the storefront) get no rate-limit headers; the 429 is documented with them.
    storefront = client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["storefront"]))
    assert "ratelimit" not in storefront.headers
    documented = client.get("/openapi.json").json()["paths"]["/v1/shoppers/{shopper_id}/orders"]["get"]
    assert set(documented["responses"]["429"]["headers"]) == {"Retry-After", "RateLimit", "RateLimit-Policy"}


def _visits(shopper: str, start: int, count: int) -> dict:
    return {
        "events": [
            {
                "event_id": f"q{start + i}",
                "shopper_id": shopper,
                "event_type": "view",
                "product_id": "p02",
                "ts": datetime.now(UTC).isoformat(),
            }
            for i in range(count)
        ]
    }


def test_a_shoppers_events_have_a_quota_counted_per_event(make_client, keys, settings):
    """600 requests a minute of 1,000 events each let one shopper key write 600,000 rows a minute: events
    are counted one by one, and a batch over what is left is refused whole, nothing recorded."""
    client = make_client(settings=settings.model_copy(update={"event_rate_limit_per_minute": 1_000}))
    shopper = auth(keys["shopper"])
    first = client.post("/v1/events", json=_visits("s1", 0, 600), headers=shopper)
    assert first.status_code == 202 and first.json()["inserted"] == 600
    refused = client.post("/v1/events", json=_visits("s1", 600, 401), headers=shopper)
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert refused.headers["ratelimit-policy"] == '"events-per-key";q=1000;w=60'
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    fits = client.post("/v1/events", json=_visits("s1", 600, 400), headers=shopper)
    assert fits.status_code == 202 and fits.json()["inserted"] == 400  # the refused batch wrote nothing
    assert client.post("/v1/events", json=_visits("s1", 1_000, 1), headers=shopper).status_code == 429
    # The quota is the key's own; the storefront role is not throttled.
    other = client.post("/v1/events", json=_visits("s2", 0, 1_000), headers=auth(keys["shopper2"]))
    assert other.status_code == 202
    storefront = auth(keys["storefront"])
    batches = [_visits("s1", 10_000 * (k + 1), 1_000) for k in range(3)]
    assert {client.post("/v1/events", json=b, headers=storefront).status_code for b in batches} == {202}


def test_the_event_quota_admits_one_whole_batch_at_least():
    from crosscart.settings import Settings

    with pytest.raises(ValueError, match="event_rate_limit_per_minute"):
        Settings(event_rate_limit_per_minute=999)


def test_the_window_slides_rather_than_resetting_on_the_minute():
    """The sliding window counter weighs the previous minute's count: a burst at the end of one minute
    still counts just after the boundary (a fixed window would hand out a full quota again)."""
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import SlidingWindowCounterRateLimiter

    async def run():
        limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        item = RateLimitItemPerSecond(4, 1)
        await asyncio.sleep(1.05 - time.time() % 1)  # windows are aligned on the epoch: start one
        burst = [await limiter.hit(item, "k") for _ in range(4)]
        await asyncio.sleep(1.1 - time.time() % 1)  # 0.1 s into the next one: 90% of the burst still weighs
        return burst, [await limiter.hit(item, "k") for _ in range(4)]

    burst, after = asyncio.run(run())
    assert burst == [True] * 4 and 1 <= sum(after) < 4


def test_redis_counters_are_shared_between_replicas():
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/11"
    try:
        redis.Redis.from_url(url, socket_timeout=0.5).ping()
    except redis.exceptions.RedisError:
        pytest.skip("Redis at 127.0.0.1:6379 unreachable")
    import uuid

    principal = Principal(role="shopper", key_id=int(uuid.uuid4().int % 10**9), shopper_id="s1")
    replica_a = RateLimiter(3, 3, url, redis_timeout=2.0)
    replica_b = RateLimiter(3, 3, url, redis_timeout=2.0)

    async def run():
        return [(await limiter.check(principal)).allowed for limiter in (replica_a, replica_b) * 2]

    results = asyncio.run(run())
    assert results == [True, True, True, False], (replica_a.breaker.trips, replica_b.breaker.trips)
    assert replica_a.breaker.closed and replica_b.breaker.closed


def test_redis_down_falls_back_to_local_counting():
    limiter = RateLimiter(2, 2, "redis://127.0.0.1:1/0")  # nothing listens on port 1
    principal = Principal(role="shopper", key_id=1)

    async def run():
        results = [(await limiter.check(principal)).allowed for _ in range(3)]
        limiter.stop()
        return results

    assert asyncio.run(run()) == [True, True, False]
    assert limiter.breaker.trips == 1  # opened once, then counted locally without asking again


def test_replicas_counting_without_redis_admit_about_the_limit_together():
    """Redis down, each replica counted the whole limit in-process: 3 replicas at 10 a minute admitted
    30 calls of one key (round robin, as a balancer). With `rate_limit_replicas` each admits its share,
    10 // 3 = 3, so 9 together; a limit below the replicas still admits 1 a replica."""
    principal = Principal(role="shopper", key_id=1)

    async def admitted(per_minute: int, replicas: int) -> int:
        fleet = [RateLimiter(per_minute, 60, "redis://127.0.0.1:1/0", replicas=replicas) for _ in range(3)]
        allowed = [(await limiter.check(principal)).allowed for _ in range(20) for limiter in fleet]
        for limiter in fleet:
            limiter.stop()
        return sum(allowed)

    assert asyncio.run(admitted(10, 1)) == 30  # one replica, or replicas that did not say how many
    assert asyncio.run(admitted(10, 3)) == 9
    assert asyncio.run(admitted(2, 3)) == 3


def test_the_replicas_share_is_the_limit_a_throttled_response_states(make_client, keys, settings):
    dead = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "rate_limit_per_minute": 10, "rate_limit_replicas": 3}
    )
    client = make_client(settings=dead)
    codes = [
        client.get("/v1/shoppers/s1/orders", headers=auth(keys["shopper"])).status_code for _ in range(5)
    ]
    assert codes == [200, 200, 200, 429, 429]  # the first call found Redis down: all counted here
    limited = client.get("/v1/shoppers/s1/orders", headers=auth(keys["shopper"]))
    assert limited.headers["ratelimit-policy"] == '"per-key";q=3;w=60'


def test_a_burst_reads_the_eviction_policy_once(monkeypatch):
    """The shared store's policy is read once a minute (`SharedStore.verify`): every request of a burst
    arriving while the read was in flight read it too (20 reads for 20 requests on the first use)."""
    from serving.security import RateDecision

    limiter = RateLimiter(100, 100, "redis://127.0.0.1:9/0", redis_timeout=5)
    reads = []

    async def verify():
        reads.append(1)
        await asyncio.sleep(0.05)  # CONFIG GET's round trip
        limiter._shared.verified_at = time.monotonic()

    async def decide(_limiter, item, _key, _policy, _cost):
        return RateDecision(True, item.amount, item.amount - 1, 60, "per-key")

    monkeypatch.setattr(limiter._shared, "verify", verify)
    monkeypatch.setattr(RateLimiter, "_decide", staticmethod(decide))

    async def burst():
        return await asyncio.gather(*(limiter.check(Principal(role="shopper", key_id=i)) for i in range(20)))

    assert all(d.allowed for d in asyncio.run(burst()))
    limiter.stop()
    assert len(reads) == 1 and limiter.breaker.closed


def test_body_size_limit(make_client, keys, settings):
    client = make_client(settings=settings.model_copy(update={"max_body_bytes": 2_000}))
    event = {
        "event_id": "e",
        "ts": "2026-01-01T00:00:00Z",
        "shopper_id": "s1",
        "event_type": "search",
        "query": "x" * 150,
    }
    big = {"events": [{**event, "event_id": f"e{i}"} for i in range(20)]}
    r = client.post("/v1/events", json=big, headers=auth(keys["storefront"]))
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"

    def chunks():  # no Content-Length: counted while streaming
        yield b'{"events": ['
        for _ in range(50):
            yield b" " * 100
        yield b"]}"

    r = client.post(
        "/v1/events",
        content=chunks(),
        headers={**auth(keys["storefront"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    small = client.post("/v1/events", json={"events": [event]}, headers=auth(keys["storefront"]))
    assert small.status_code == 202


def test_health_ready_metrics(client, keys):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["model"] == "tiny" and ready["model_version"] == "1"
    assert ready["catalog_products"] == 12
    client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["storefront"]))
    text = scrape(client)
    assert (
        'crosscart_http_requests_total{method="GET",route="/v1/shoppers/{shopper_id}/recommendations",status="200"}'
        in text
    )
    assert "crosscart_model_swaps 1.0" in text
    assert (
        'crosscart_model_version_info{model="recommender",name="crosscart-recommender",version="1"} 1.0'
        in text
    )


def test_not_ready_until_catalog_loads(make_client):
    def broken():
        raise ConnectionError("database down")

    client = make_client(catalog_loader=broken)
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["catalog_error"] == "unavailable"
    assert client.get("/v1/rankings").status_code == 503


def test_no_identity_numbers_in_responses_or_logs(client, keys, caplog):
    from commerce.identity import check_char

    number = "11010519491231002" + check_char("11010519491231002")  # s1's resident ID (conftest)
    caplog.set_level(logging.DEBUG)
    admin, shopper = auth(keys["admin"]), auth(keys["shopper"])
    bodies = [
        client.get("/v1/shoppers/s1/orders", headers=shopper).text,
        client.get("/v1/orders/1", headers=admin).text,
        client.get("/v1/orders/1/tracking", headers=admin).text,
        client.post(
            "/v1/shoppers/s1/cart/quote",
            json={"lines": [{"product_id": "p05", "quantity": 1}]},
            headers=shopper,
        ).text,
        client.get("/openapi.json").text,
    ]
    for text in [*bodies, caplog.text]:
        assert number not in text and number[-4:] + '"' not in text
        assert "Name s1" not in text  # the declared real name stays in the database too


def test_ready_reports_the_shared_rate_limit_store(make_client, settings):
    assert make_client().get("/ready").json()["redis"] == "not configured"
    dead = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "rate_limit_anonymous_per_minute": 5}
    )
    client = make_client(settings=dead)
    assert client.get("/ready").json()["redis"] == "unavailable"  # /ready probes it, before any count
    assert client.get("/v1/rankings").status_code == 200  # counting is local meanwhile
    ready = client.get("/ready").json()
    assert ready["redis"] == "unavailable" and ready["database"] == "up"
