"""A Redis that answers the revocation feed's SUBSCRIBE with an error: an ACL user without channel
permissions (Redis 7 gives a new user none, `acl-pubsub-default resetchannels`: rate limits and sessions
work, pub/sub is refused with NOPERM), or a Redis loading its data set. The feed retried every second
and said nothing, since only the loss of a feed that had listened was logged: revocations reached the
other replicas after `auth_poll_seconds` instead of at once, `/ready` said `polling`, and no log line
said why. The refusal is now logged once, with Redis' answer, and once more when the feed listens."""

from __future__ import annotations

import asyncio
import logging

import pytest

from crosscart.cli.doctor import _redis
from serving.revocations import CHANNEL, RevocationFeed
from serving.security import PrincipalCache
from tests.resilience.conftest import fault_settings, own_redis_server

PORT = 18971
APP_URL = f"redis://app:secret@127.0.0.1:{PORT}/0"


@pytest.fixture
def acl_redis(tmp_path):
    """A redis-server of our own with user `app` allowed every key and command but no channel."""
    with own_redis_server(PORT, tmp_path) as admin:
        admin.acl_setuser("app", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all"],
                          reset_channels=True)  # fmt: skip
        yield admin


def test_a_refused_subscription_is_logged_once_with_redis_answer_and_its_end_too(acl_redis, caplog):
    caplog.set_level(logging.INFO, logger="serving.revocations")
    principals = PrincipalCache()

    async def scenario() -> tuple[bool, bool]:
        feed = RevocationFeed(APP_URL, principals, retry_seconds=0.1)
        feed.start()
        await asyncio.sleep(1.0)  # about ten refused attempts
        refused = feed.listening
        acl_redis.acl_setuser("app", enabled=True, channels=["*"])  # the operator grants the channel
        for _ in range(50):
            if feed.listening:
                break
            await asyncio.sleep(0.1)
        listening = feed.listening
        await feed.stop()
        return refused, listening

    refused, listening = asyncio.run(scenario())
    assert not refused and listening
    lines = [r.getMessage() for r in caplog.records if r.name == "serving.revocations"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no permissions" in warnings[0], lines  # once, not per attempt
    assert lines[-1].startswith("revocation feed listening"), lines


def test_doctor_warns_that_the_user_may_not_subscribe_to_the_revocation_channel(acl_redis, tmp_path):
    """`crosscart doctor` said "redis: ok, reachable" for the user the feed could not subscribe with."""
    doctor = _redis(fault_settings(tmp_path, redis_url=APP_URL))[0]
    assert doctor.status == "warn" and CHANNEL in doctor.detail and "polling" in doctor.detail
    assert f"&{CHANNEL}" in doctor.fix
    acl_redis.acl_setuser("app", enabled=True, channels=[CHANNEL])
    assert _redis(fault_settings(tmp_path, redis_url=APP_URL))[0].status == "ok"
