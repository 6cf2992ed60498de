"""The principal cache: LRU-bounded, fresh for a TTL, stale-while-error for at least five minutes."""

from __future__ import annotations

import pytest

import serving.security
from serving.security import FailedAuthThrottle, Principal, PrincipalCache


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(serving.security.time, "monotonic", lambda: now[0])
    return now


def test_a_valid_key_stays_usable_through_a_five_minute_outage_then_expires(clock):
    cache = PrincipalCache(ttl=30, stale_seconds=900)
    shopper = Principal(role="shopper", key_id=1, shopper_id="s1")
    cache.put("cc_a", shopper)
    assert cache.get("cc_a") == (True, shopper)
    clock[0] += 31
    assert cache.get("cc_a") == (False, None)  # due for a re-check against the database
    clock[0] += 300
    assert cache.stale("cc_a") == shopper  # the re-check failed: five minutes on, still served
    assert cache.get("cc_a") == (True, shopper)  # and not re-checked on every request meanwhile
    clock[0] += 600
    assert cache.stale("cc_a") is None  # confirmed valid more than 15 minutes ago: no longer trusted
    assert cache.stale("cc_never") is None


def test_unknown_keys_never_push_out_valid_ones_and_eviction_is_least_recent(clock):
    cache = PrincipalCache(max_entries=3, max_unknown=2)
    principals = {k: Principal(role="storefront", key_id=i) for i, k in enumerate("abc")}
    for key, principal in principals.items():
        cache.put(f"cc_{key}", principal)
    for i in range(100):
        cache.put(f"cc_bogus{i}", None)
    assert all(cache.get(f"cc_{k}")[0] for k in "abc")
    assert cache.get("cc_bogus99") == (True, None) and cache.get("cc_bogus0") == (False, None)
    cache.get("cc_a")  # a and c used more recently than b
    cache.get("cc_c")
    cache.put("cc_d", Principal(role="storefront", key_id=9))
    assert [cache.get(f"cc_{k}")[0] for k in "abcd"] == [True, False, True, True]


def test_failed_auth_throttle_counts_per_address_per_minute():
    throttle = FailedAuthThrottle(per_minute=2)
    for _ in range(2):
        assert throttle.retry_after("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
    assert 0 < throttle.retry_after("10.0.0.1") <= 61
    assert throttle.retry_after("10.0.0.2") == 0


def test_answers_stand_for_the_poll_interval_while_revocations_cannot_be_pushed(clock):
    cache = PrincipalCache(ttl=30, poll_seconds=1)
    shopper = Principal(role="shopper", key_id=1, shopper_id="s1")
    cache.put("cc_a", shopper)
    clock[0] += 2
    assert cache.get("cc_a") == (True, shopper)  # pushed: fresh for 30 s
    cache.pushed = False  # the revocation feed is down: re-check every second
    assert cache.get("cc_a") == (False, None)
    cache.put("cc_a", shopper)
    clock[0] += 0.1
    cache.pushed = True
    cache.expire_all()  # the feed is back: whatever was revoked meanwhile is re-checked once
    assert cache.get("cc_a") == (False, None)
    clock[0] += 60
    assert cache.stale("cc_a") == shopper  # and still served from memory if the database is down
