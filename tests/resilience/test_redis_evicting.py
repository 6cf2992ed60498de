"""Redis full and evicting keys (`maxmemory` with `allkeys-lru`, a Redis shared with other work): live
sessions may be forgotten (their design allows it), but no request fails; rate limits are counted in each
replica instead of in a store that forgets them; and the published precomputed lists are either whole or
not used: an evicted or half-evicted batch was loaded as if it were whole (shoppers missing from it,
silently scored online)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import redis

from crosscart.cli.doctor import _redis
from serving import sessions
from serving.precomputed import REDIS_META, load_precomputed_redis, publish_to_redis, write_meta
from serving.security import Principal, RateLimiter
from serving.sessions import Click, SessionState
from tests.resilience.conftest import fault_settings, make_keys, own_redis_server, seeded_factory
from tests.serving.conftest import auth

PORT = 18640 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])  # one server per xdist worker
URL = f"redis://127.0.0.1:{PORT}/0"
MAXMEMORY = 3 * 2**20


@pytest.fixture(scope="module")
def evicting_redis(tmp_path_factory):
    """A redis-server of our own on PORT: 3 MiB, least recently used keys evicted, no persistence."""
    options = ("--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "allkeys-lru")
    with own_redis_server(PORT, tmp_path_factory.mktemp("redis"), *options) as client:
        yield client


@pytest.fixture
def clean(evicting_redis):
    evicting_redis.flushdb()
    return evicting_redis


def _batch(tmp_path, parts: int, shoppers_per_part: int):
    """A batch of `parts` part files with random scores (incompressible: each part about 0.5 MiB)."""
    directory = tmp_path / "lists"
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(parts):
        shoppers = np.repeat([f"x{i}-{j}" for j in range(shoppers_per_part)], 6)
        rows = pd.DataFrame(
            {
                "shopper_id": shoppers,
                "rank": np.tile(np.arange(1, 7), shoppers_per_part),
                "product_id": rng.choice([f"p{k:02d}" for k in range(1, 13)], len(shoppers)),
                "score": rng.random(len(shoppers)),
            }
        )
        rows.to_parquet(directory / f"part-{i:05d}.parquet", index=False)
    write_meta(directory, "crosscart-recommender", "1", 6)
    return directory


def test_a_batch_evicted_while_it_is_published_is_not_switched_to(tmp_path, clean):
    small = _batch(tmp_path / "small", parts=1, shoppers_per_part=200)
    publish_to_redis(small, URL)
    whole = load_precomputed_redis(URL)
    big = _batch(tmp_path / "big", parts=8, shoppers_per_part=12_000)  # more than Redis holds
    with pytest.raises((RuntimeError, redis.ResponseError)):
        publish_to_redis(big, URL)
    # a replica starting now loads the previous batch whole, or, if Redis evicted it for the new one's
    # parts, none (saying why); never part of the new batch (was: the parts Redis had kept)
    try:
        loaded = load_precomputed_redis(URL)
    except LookupError as exc:
        assert "evicted" in str(exc)
    else:  # None: its meta was evicted too
        assert loaded is None or len(loaded) == len(whole) == 200


def test_a_batch_whose_parts_were_evicted_is_refused_and_the_loaded_one_kept(tmp_path, clean):
    publish_to_redis(_batch(tmp_path, parts=2, shoppers_per_part=100), URL)
    current = load_precomputed_redis(URL)
    parts_key = json.loads(clean.get(REDIS_META))["parts"]
    clean.rpop(parts_key)  # as if half of the list were gone
    with pytest.raises(LookupError, match="evicted"):
        load_precomputed_redis(URL)  # a replica starting now scores online, saying why
    assert load_precomputed_redis(URL, current) is current  # the loaded batch is kept
    clean.delete(parts_key)
    with pytest.raises(LookupError, match="evicted"):
        load_precomputed_redis(URL)


@pytest.mark.parametrize("policy", ["allkeys-lru", "noeviction"])
def test_rate_limits_and_sessions_on_a_full_redis_never_fail_a_request(tmp_path, open_client, clean, policy):
    """Evicting (`allkeys-lru`), the rate-limit counters went with the other keys: 60 calls at 50 a
    minute, none refused (10 refused with room). The limiter now sees the policy and counts in process,
    `/ready` saying `redis: evicting`. With `noeviction` a full Redis refuses writes, the replica counts
    and keeps sessions in process (its breakers) and the limit holds: the policy `crosscart doctor` asks
    for."""
    clean.config_set("maxmemory-policy", policy)
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    settings = fault_settings(tmp_path, redis_url=URL, rate_limit_per_minute=50, redis_timeout_seconds=1)
    client = open_client(settings, factory)
    filler, storefront, session = b"f" * 200_000, auth(keys["storefront"]), "evicting-session-0001"
    statuses, throttled = [], 0
    try:
        for i in range(60):
            try:  # memory pressure from other work sharing the Redis
                clean.set(f"other-tenant:{i}", filler)
            except redis.ResponseError:  # noeviction: full
                pass
            event = {"event_id": f"e{i}", "ts": datetime.now(UTC).isoformat(), "shopper_id": "s2",
                     "event_type": "view", "product_id": f"p0{1 + i % 8}", "session_id": session}  # fmt: skip
            posted = client.post("/v1/events", json={"events": [event]}, headers=storefront)
            live = client.get(f"/v1/sessions/{session}/recommendations", headers=storefront)
            page = client.get("/v1/shoppers/s1/recommendations", params={"n": 3}, headers=auth(keys["s1"]))
            statuses += [posted.status_code, live.status_code, page.status_code]
            throttled += page.status_code == 429
        assert all(s < 500 for s in statuses), sorted(set(statuses))
        assert posted.json()["session_events"] == 1 and live.status_code == 200
        doctor = _redis(settings)[0]
        store = client.get("/ready").json()["redis"]
    finally:
        clean.config_set("maxmemory-policy", "allkeys-lru")
    assert throttled >= 10  # was 0 while evicting
    if policy == "noeviction":
        assert doctor.status == "ok" and store in ("up", "unavailable")
    else:
        assert clean.info("stats")["evicted_keys"] > 0 and store == "evicting"
        assert doctor.status == "warn" and "evicts keys" in doctor.detail and "limit // 1" in doctor.detail
        assert not clean.keys("crosscart:rl*")  # no counter was written to a store that forgets them


def test_the_limiter_follows_the_eviction_policy_as_it_changes(clean, caplog):
    """A policy set to an evicting one (`volatile-lru` too: every counter has a TTL) while the replica
    runs is seen within STORE_VERIFY_SECONDS; set back to `noeviction`, the breaker's probe sees it and
    the counters are shared again."""
    clean.config_set("maxmemory-policy", "volatile-lru")
    limiter = RateLimiter(3, 3, URL, redis_timeout=1, retry_seconds=0.1)
    principal = Principal(role="shopper", key_id=7)

    async def run():
        local = [(await limiter.check(principal)).allowed for _ in range(4)]
        evicting = limiter.shared_store
        clean.config_set("maxmemory-policy", "noeviction")
        await asyncio.sleep(0.5)  # the breaker's probe, every 0.1 s
        back = limiter.shared_store
        await limiter.check(principal)
        limiter.stop()
        return local, evicting, back

    try:
        local, evicting, back = asyncio.run(run())
    finally:
        clean.config_set("maxmemory-policy", "allkeys-lru")
    assert local == [True, True, True, False] and evicting == "evicting" and back == "up"
    assert clean.keys("crosscart:rl*")  # counted in Redis again
    assert "maxmemory-policy volatile-lru" in caplog.text and limiter.breaker.trips == 1


@pytest.mark.parametrize("refusal", ["full", "read-only"])
def test_a_redis_that_refuses_the_counters_writes_keeps_the_breaker_open_until_it_takes_them(
    clean, caplog, refusal
):
    """Full under `noeviction`, or a read-only replica (a failover), Redis answers PING and CONFIG but
    refuses every counter write: the breaker's probe passed, so it closed every `retry_seconds` and the
    next request opened it again (7 trips in 1 s at a 0.1 s retry; two warnings each, `/ready` mostly
    `up`). The probe now counts a hit itself: one trip, `unavailable`, until Redis takes writes again."""
    limiter = RateLimiter(50, 50, URL, redis_timeout=1, retry_seconds=0.1)
    principal = Principal(role="shopper", key_id=8)
    clean.config_set("maxmemory-policy", "noeviction")
    if refusal == "full":
        clean.config_set("maxmemory", 1)  # whatever it holds is over: every write refused
    else:
        clean.replicaof("127.0.0.1", 1)  # a master that never answers: writes refused, reads served

    async def run():
        seen = set()
        for _ in range(20):
            assert (await limiter.check(principal)).allowed
            seen.add(limiter.shared_store)
            await asyncio.sleep(0.05)
        clean.config_set("maxmemory", MAXMEMORY) if refusal == "full" else clean.replicaof("NO", "ONE")
        await asyncio.sleep(0.5)  # the breaker's probe, every 0.1 s
        back = limiter.shared_store
        limiter.stop()
        return seen, back

    try:
        seen, back = asyncio.run(run())
    finally:
        clean.config_set("maxmemory", MAXMEMORY)
        clean.config_set("maxmemory-policy", "allkeys-lru")
        clean.replicaof("NO", "ONE")
    assert limiter.breaker.trips == 1 and seen == {"unavailable"}  # was 10 trips, mostly "up"
    assert back == "up" and caplog.text.count("falling back to local counting") == 1


@pytest.mark.parametrize("refusal", ["full", "read-only"])
def test_the_live_sessions_read_what_was_written_while_redis_refused_writes(
    clean, caplog, refusal, monkeypatch
):
    """Clicks refused by Redis were kept in process, but once STORE_RETRY_SECONDS passed a page read Redis
    alone (it answers reads): the visit lost its newest clicks (for good: once Redis took writes again,
    p0 and p4 only), and the read logged "back", the next write "unavailable" again (6 lines for 3
    clicks). Reads now merge the clicks kept in process; only a write ends the refusal."""
    monkeypatch.setattr(sessions, "STORE_RETRY_SECONDS", 0.05)
    state = SessionState(max_items=10, ttl_seconds=60, redis_url=URL)
    token = "t" + "0" * 20

    def click(i):
        state.record(1, {token: [Click(f"e{i}", 100.0 + i, f"p{i}")]})

    click(0)
    clean.config_set("maxmemory-policy", "noeviction")
    if refusal == "full":
        clean.config_set("maxmemory", 1)
    else:
        clean.replicaof("127.0.0.1", 1)
    try:
        seen = []
        for i in range(1, 4):
            click(i)  # refused by Redis: kept in process
            time.sleep(0.1)  # past STORE_RETRY_SECONDS: Redis is asked again
            seen.append(asyncio.run(state.items(1, token)))
        assert seen == [[f"p{j}" for j in range(i + 1)] for i in range(1, 4)]  # was ["p0"] each time
    finally:
        clean.config_set("maxmemory", MAXMEMORY)
        clean.config_set("maxmemory-policy", "allkeys-lru")
        clean.replicaof("NO", "ONE")
    click(4)
    assert asyncio.run(state.items(1, token)) == [f"p{j}" for j in range(5)]
    lines = [r.getMessage() for r in caplog.records if r.name == "serving.sessions"]
    assert len(lines) == 2 and lines[-1] == "session store back", lines  # was 6: back, unavailable, ...
