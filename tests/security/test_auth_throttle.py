"""Issue 9 item 5: unauthenticated load. Failed authentication is throttled per client address before any
database lookup, and a flood of bogus keys evicts cache entries by least-recent use, never all of them."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

import serving.deps
from serving.security import PrincipalCache
from tests.serving import conftest as fixtures
from tests.serving.conftest import auth

# The serving tests' marketplace, keys and app factory (this folder has no conftest of its own).
template_db, session_factory, source = fixtures.template_db, fixtures.session_factory, fixtures.source
settings, keys, make_client = fixtures.settings, fixtures.keys, fixtures.make_client


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """Every key the API looks up in the database."""
    seen: list[str] = []
    real = serving.deps._lookup_many

    def counting(state, keys):
        seen.extend(keys)
        return real(state, keys)

    monkeypatch.setattr(serving.deps, "_lookup_many", counting)
    return seen


def _clear_of_a_window_edge(margin: float = 15.0) -> None:
    """Wait for the next minute if this one ends within `margin` seconds. The throttle is limits'
    sliding-window counter: its minute windows are aligned to the clock, and the previous window's hits
    count in proportion to the time it still covers, so failures just before an edge weigh a little
    less just after it and one more is let through (seen once on a loaded host: a sixth 401)."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


def test_failed_keys_are_throttled_per_address_before_any_lookup(make_client, keys, settings, lookups):
    _clear_of_a_window_edge()
    client = make_client(settings=settings.model_copy(update={"auth_failures_per_minute": 5}))
    assert client.get("/v1/rankings", headers=auth(keys["storefront"])).status_code == 200
    answers = [client.get("/v1/rankings", headers=auth(f"cc_bogus-{i}")) for i in range(30)]
    assert [r.status_code for r in answers] == [401] * 5 + [429] * 25
    assert all(int(r.headers["retry-after"]) > 0 for r in answers[5:])
    assert answers[-1].json()["code"] == "rate_limited"
    assert len(lookups) == 1 + 5  # the valid key once, then only the failures under the limit
    # The throttled address keeps its valid, already checked key; other addresses are unaffected.
    assert client.get("/v1/rankings", headers=auth(keys["storefront"])).status_code == 200
    elsewhere = TestClient(client.app, client=("10.0.0.7", 50000))
    assert elsewhere.get("/v1/rankings", headers=auth(keys["shopper"])).status_code == 200
    assert elsewhere.get("/v1/rankings", headers=auth("cc_bogus-other")).status_code == 401
    assert len(lookups) == 1 + 5 + 2


def test_bogus_key_flood_never_evicts_a_key_in_use(make_client, keys, settings, lookups):
    client = make_client(settings=settings.model_copy(update={"auth_failures_per_minute": 100_000}))
    client.app.state.serving.principals = PrincipalCache(max_entries=50)
    valid = [keys[role] for role in ("storefront", "shopper", "admin")]
    for key in valid:
        assert client.get("/v1/rankings", headers=auth(key)).status_code == 200
    assert len(lookups) == 3
    for i in range(500):  # ten times the cache size in distinct bogus keys
        assert client.get("/v1/rankings", headers=auth(f"cc_flood-{i}")).status_code == 401
    assert len(lookups) == 3 + 500
    for key in valid:  # still cached: no new lookup
        assert client.get("/v1/rankings", headers=auth(key)).status_code == 200
    assert len(lookups) == 3 + 500
