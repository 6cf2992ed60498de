"""A revocation this replica could not publish while the other replicas' feeds still listen: Redis
failing this replica only (its path to Redis cut or flapping, a publish past its 0.25 s timeout while
the others' heartbeats, which allow 2.25 s, still pass). The publisher assumed the other feeds were down
too and polling the database; they were listening, so they trusted their cached answer for the key
cache's 30 s: the revoked key kept working there. The revocation is now sent again every
`retry_seconds` until Redis takes it (for at most the cache's TTL, after which every answer has expired)."""

from __future__ import annotations

import asyncio

import pytest

from bench.faultkit import TcpProxy
from commerce.services.access import hash_key
from serving.revocations import RevocationFeed
from serving.security import Principal, PrincipalCache
from tests.resilience.conftest import own_redis_server

PORT, PROXY_PORT = 18973, 18974
URL = f"redis://127.0.0.1:{PORT}/0"
KEY = "cc_revoked-on-the-other-replica"


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of our own: the shared one's channel carries other tests' revocations."""
    with own_redis_server(PORT, tmp_path):
        yield


def test_a_revocation_redis_refused_reaches_the_listening_replicas_once_it_takes_it(own_redis):
    proxy = TcpProxy(PROXY_PORT, "127.0.0.1", PORT)
    here, there = PrincipalCache(), PrincipalCache()  # the revoking replica's cache, another's

    async def scenario() -> tuple[bool, bool, bool]:
        listener = RevocationFeed(URL, there, retry_seconds=0.1)
        publisher = RevocationFeed(f"redis://127.0.0.1:{PROXY_PORT}/0", here, retry_seconds=0.2)
        listener.start()
        while not listener.listening:
            await asyncio.sleep(0.05)
        there.put(KEY, Principal(role="storefront", key_id=7))
        proxy.cut()  # the revoking replica's path to Redis, only
        sent = await publisher.publish(hash_key(KEY))
        proxy.restore()
        await asyncio.sleep(1.0)
        trusted, listening = there.get(KEY)[1] is not None, listener.listening
        await publisher.stop()
        await listener.stop()
        return sent, listening, trusted

    try:
        sent, listening, trusted = asyncio.run(scenario())
    finally:
        proxy.close()
    assert not sent and listening  # the other replica's feed listened throughout: it was not polling
    assert not trusted  # was: the revoked key still valid there, for the cache's 30 s
