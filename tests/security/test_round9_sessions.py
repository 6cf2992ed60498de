"""Round 9: a client flooding live sessions with invented session ids. A shopper key keeps only its
SHOPPER_LIVE_SESSIONS newest sessions, in Redis and in process alike, and one event batch is one Redis
round trip however many sessions it touches. Redis tests use database 11 and unique key ids, and delete
what they wrote. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import pytest

from serving.sessions import (
    SHOPPER_LIVE_SESSIONS,
    Click,
    MemorySessions,
    SessionState,
    index_key,
    session_key,
)
from tests.serving.conftest import auth

REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    yield client
    for name in client.scan_iter("crosscart:session*"):  # database 11 is this module's
        client.delete(name)


def _tokens(n: int) -> list[str]:
    return [f"visit_{uuid.uuid4().hex}" for _ in range(n)]


def _round_trips(monkeypatch) -> list:
    """Every command or pipeline sent to Redis database 11 from now on (one entry per round trip; the
    connection's own handshake is not counted)."""
    from redis.client import Pipeline, Redis

    sent, command, pipeline = [], Redis.execute_command, Pipeline.execute

    def ours(client) -> bool:
        return client.connection_pool.connection_kwargs.get("db") == 11

    def counted_command(self, *args, **options):
        if ours(self):
            sent.append(args[0])
        return command(self, *args, **options)

    def counted_pipeline(self, *args, **options):
        if ours(self):
            sent.append(f"pipeline of {len(self.command_stack)}")
        return pipeline(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counted_command)
    monkeypatch.setattr(Pipeline, "execute", counted_pipeline)
    return sent


def _batch(tokens: list[str], shopper: str = "s1") -> dict:
    now = datetime.now(UTC).isoformat()
    return {
        "events": [
            {
                "event_id": f"e{i}",
                "ts": now,
                "shopper_id": shopper,
                "event_type": "view",
                "product_id": "p02",
                "session_id": token,
            }  # fmt: skip
            for i, token in enumerate(tokens)
        ]
    }


def test_a_shopper_key_keeps_its_newest_sessions_in_redis_and_evicted_state_is_deleted(redis_client):
    state = SessionState(max_items=5, ttl_seconds=60, redis_url=REDIS_URL)
    owner = random.randrange(10**9, 2 * 10**9)
    tokens = _tokens(SHOPPER_LIVE_SESSIONS + 3)
    for i, token in enumerate(tokens):  # one batch each: the first ones are the oldest
        assert state.record(owner, {token: [Click(f"e{i}", 100.0 + i, f"p{i}")]}, SHOPPER_LIVE_SESSIONS) == 1
    state.record(owner, {tokens[3]: [Click("again", 200.0, "p3")]}, SHOPPER_LIVE_SESSIONS)  # touched again
    state.record(owner, {"late_" + "x" * 16: [Click("late", 300.0, "p9")]}, SHOPPER_LIVE_SESSIONS)
    assert len(list(redis_client.scan_iter(f"crosscart:session:{owner}:*"))) == SHOPPER_LIVE_SESSIONS
    assert redis_client.zcard(index_key(owner)) == SHOPPER_LIVE_SESSIONS
    assert 0 < redis_client.ttl(index_key(owner)) <= 60
    for token in [tokens[0], tokens[1], tokens[2], tokens[4]]:  # the four least recently written
        assert not redis_client.exists(session_key(owner, token))
        assert asyncio.run(state.items(owner, token)) == []
    assert asyncio.run(state.items(owner, tokens[3])) == ["p3", "p3"]
    assert asyncio.run(state.items(owner, tokens[-1])) == [f"p{len(tokens) - 1}"]


def test_one_batch_over_many_sessions_is_one_redis_round_trip(redis_client, monkeypatch):
    state = SessionState(redis_url=REDIS_URL)
    owner = random.randrange(10**9, 2 * 10**9)
    sessions = {token: [Click(f"e{i}", 100.0, "p1")] for i, token in enumerate(_tokens(1000))}
    sent = _round_trips(monkeypatch)
    assert state.record(owner, sessions) == 1000  # a server-side storefront key: no cap
    assert len(sent) == 1
    sent.clear()
    assert state.record(owner + 1, sessions, SHOPPER_LIVE_SESSIONS) == SHOPPER_LIVE_SESSIONS
    assert len(sent) == 1


def test_a_1000_visit_batch_through_the_api_is_one_redis_round_trip(
    make_client, settings, keys, redis_client, monkeypatch
):
    api = make_client(settings=settings.model_copy(update={"redis_url": REDIS_URL}))
    for role in ("storefront", "shopper"):
        sent = _round_trips(monkeypatch)
        posted = api.post("/v1/events", json=_batch(_tokens(1000)), headers=auth(keys[role]))
        assert posted.status_code == 202
        assert posted.json()["session_events"] == (1000 if role == "storefront" else SHOPPER_LIVE_SESSIONS)
        assert len(sent) == 1  # one pipeline (was one per session: 1,000)
        monkeypatch.undo()
    key_ids = {k.split(b":")[2] for k in redis_client.scan_iter("crosscart:session:*")}
    per_key = sorted(len(list(redis_client.scan_iter(b"crosscart:session:%s:*" % k))) for k in key_ids)
    assert per_key == [SHOPPER_LIVE_SESSIONS, 1000]  # the shopper key kept its newest 8


def test_the_memory_store_obeys_the_same_cap():
    store = MemorySessions(max_items=5, ttl_seconds=60)
    keys = [f"k{i}" for i in range(SHOPPER_LIVE_SESSIONS + 2)]
    for i, key in enumerate(keys):
        store.add(7, {key: [Click(f"e{i}", float(i), f"p{i}")]}, SHOPPER_LIVE_SESSIONS)
    assert [store.items(k) for k in keys[:2]] == [[], []]  # the oldest two are gone
    assert store.items(keys[-1]) == [f"p{len(keys) - 1}"]
    store.add(8, {f"other{i}": [Click("e", 1.0, "p")] for i in range(20)})  # uncapped: another key
    assert store.items("other0") == ["p"] and store.items(keys[2]) == ["p2"]


def test_a_shopper_key_flooding_the_memory_store_keeps_only_its_newest_sessions(client, keys):
    tokens = _tokens(1000)
    posted = client.post("/v1/events", json=_batch(tokens), headers=auth(keys["shopper"]))
    assert posted.status_code == 202 and posted.json()["session_events"] == SHOPPER_LIVE_SESSIONS
    state = client.app.state.serving.sessions
    assert len(state.memory._data) == SHOPPER_LIVE_SESSIONS
    page = client.get(f"/v1/sessions/{tokens[-1]}/recommendations", headers=auth(keys["shopper"]))
    assert page.json()["session"]["items"] == ["p02"]
    page = client.get(f"/v1/sessions/{tokens[0]}/recommendations", headers=auth(keys["shopper"]))
    assert page.json()["session"]["items"] == []
