"""Issue 13 item 4, in one process: two app instances (replicas) over one database and one Redis.

A key revoked on one replica is refused by the other within a second (pushed over Redis pub/sub); with
Redis unreachable the replicas fall back to re-checking keys against the database every
`auth_poll_seconds`, and a key seen before keeps working from memory. The multi-process version (uvicorn
subprocesses on PostgreSQL, `serve --workers 2`) is tests/serving/test_replica_processes.py (slow).
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import exc

from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth

REDIS_URL = "redis://127.0.0.1:6379/10"


@pytest.fixture
def redis_url():
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=0.5).ping()
    except redis.exceptions.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    return REDIS_URL


def _wait(predicate, seconds: float, step: float = 0.02) -> float | None:
    """Seconds until `predicate()` held, or None if it did not within `seconds`."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if predicate():
            return time.perf_counter() - start
        time.sleep(step)
    return None


def _key_id(client, admin: dict, role: str) -> int:
    keys = client.get("/v1/api-keys", params={"role": role, "limit": 100}, headers=admin).json()["items"]
    return next(k["id"] for k in keys if k["revoked_at"] is None)


def test_a_key_revoked_on_one_replica_is_refused_by_the_other_within_a_second(
    tmp_path, database_url, open_client, redis_url
):
    factory = seeded_factory(database_url)
    keys = make_keys(factory)
    settings = fault_settings(tmp_path, redis_url=redis_url)
    a, b = open_client(settings, factory), open_client(settings, factory)
    for replica in (a, b):
        feed = replica.app.state.serving.revocations
        assert _wait(lambda feed=feed: feed.listening, 5.0) is not None
    marketer, admin = auth(keys["marketer"]), auth(keys["admin"])
    assert b.get("/v1/rankings", headers=marketer).status_code == 200  # cached on b, fresh for 30 s
    assert b.app.state.serving.principals.fresh_for == 30.0
    assert b.get("/ready").json()["revocations"] == "pushed"

    revoked = a.delete(f"/v1/api-keys/{_key_id(a, admin, 'marketer')}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert a.get("/v1/rankings", headers=marketer).status_code == 401  # the revoking replica at once
    refused_after = _wait(lambda: b.get("/v1/rankings", headers=marketer).status_code == 401, 1.0)
    assert refused_after is not None and refused_after < 1.0
    assert b.app.state.serving.revocations.received >= 1


def test_without_redis_replicas_poll_the_database_and_keep_keys_through_an_outage(
    tmp_path, open_client, monkeypatch
):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    settings = fault_settings(
        tmp_path, redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.1, auth_poll_seconds=0.5
    )
    a, b = open_client(settings, factory), open_client(settings, factory)
    marketer, admin, storefront = auth(keys["marketer"]), auth(keys["admin"]), auth(keys["storefront"])
    principals = b.app.state.serving.principals
    assert not b.app.state.serving.revocations.listening and principals.fresh_for == 0.5
    assert b.get("/ready").json()["revocations"] == "polling"
    assert b.get("/v1/rankings", headers=marketer).status_code == 200
    assert b.get("/v1/rankings", headers=storefront).status_code == 200

    assert a.delete(f"/v1/api-keys/{_key_id(a, admin, 'marketer')}", headers=admin).status_code == 200
    refused_after = _wait(lambda: b.get("/v1/rankings", headers=marketer).status_code == 401, 2.0)
    assert refused_after is not None and refused_after <= 0.5 + 0.3

    # Issue 10's property holds: a key seen valid keeps working from memory while the database is gone.
    async def unreachable(*args, **kwargs):
        raise exc.OperationalError("SELECT 1", {}, ConnectionError("database unreachable"))

    monkeypatch.setattr(b.app.state.serving.key_lookups, "lookup", unreachable)
    time.sleep(0.6)  # past the poll interval: the next check asks the (unreachable) database
    assert b.get("/v1/rankings", headers=storefront).status_code == 200


def test_a_key_revoked_on_one_replica_leaves_the_others_console_memory(tmp_path, open_client, redis_url):
    """Over the real feed: b confirmed a console session of the key, a revokes the key, the database
    goes down; b refuses the session's cookie instead of serving it from memory (it kept the form)."""
    from commerce.db import transaction
    from commerce.services.access import create_api_key
    from tests.console.test_form_failures import Outage
    from tests.serving.test_console import sign_in

    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    with transaction(factory) as s:
        key, plaintext = create_api_key(s, "admin", name="second admin")
        key_id = key.id
    settings = fault_settings(tmp_path, redis_url=redis_url, console_secret="s" * 32)
    a, b = open_client(settings, factory), open_client(settings, factory)
    for replica in (a, b):
        feed = replica.app.state.serving.revocations
        assert _wait(lambda feed=feed: feed.listening, 5.0) is not None
    token = sign_in(b, plaintext)
    assert b.get("/console/keys").status_code == 200  # b remembers the session
    assert a.delete(f"/v1/api-keys/{key_id}", headers=auth(keys["admin"])).status_code == 200
    assert _wait(lambda: b.app.state.serving.revocations.received >= 1, 1.0) is not None
    outage = Outage(factory.kw["bind"], None)
    outage.begin()
    try:
        r = b.post("/console/keys", data={"csrf_token": token, "role": "admin", "name": "kept?"})
    finally:
        outage.close()
    assert r.status_code == 503 and "kept?" not in r.text
