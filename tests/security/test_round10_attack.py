"""Round 10: a hostile client against the HTTP API, on the tiny marketplace of tests/serving. Each test
failed before its fix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.serving.conftest import auth


def _visits(start: int, count: int, shopper: str = "s1") -> dict:
    now = datetime.now(UTC).isoformat()
    return {
        "events": [
            {"event_id": f"v{i}", "shopper_id": shopper, "event_type": "view", "product_id": "p02", "ts": now}
            for i in range(start, start + count)
        ]
    }


@pytest.fixture
def throttled(make_client, settings):
    """An app whose keys have 5 requests and 1,000 events a minute (the storefront role is unthrottled)."""
    limits = {"event_rate_limit_per_minute": 1_000, "rate_limit_per_minute": 5}
    return make_client(settings=settings.model_copy(update=limits))


@pytest.mark.parametrize("idempotency_key", [None, "retry-1"])
def test_a_spent_event_quota_refuses_the_next_batch_before_its_body_is_parsed(
    throttled, keys, idempotency_key
):
    """With its event quota spent, a key's next batch was still read and parsed (a 1 MB body of 1,000
    events) before the 429: now a body that is not even JSON gets the 429, so it was never parsed."""
    shopper = auth(keys["shopper"])
    assert throttled.post("/v1/events", json=_visits(0, 1_000), headers=shopper).status_code == 202
    headers = {**shopper, "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    refused = throttled.post("/v1/events", content=b'{"events": [' + b"x" * 1000, headers=headers)
    assert refused.status_code == 429, refused.text
    assert refused.headers["ratelimit-policy"] == '"events-per-key";q=1000;w=60'
    assert refused.json()["detail"] == "event quota of 1000 events per minute exceeded (0 left)"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # another key's quota is its own, and a body is parsed as before while the quota has some left
    other = auth(keys["shopper2"])
    assert throttled.post("/v1/events", json=_visits(0, 10, "s2"), headers=other).status_code == 202
    assert throttled.post("/v1/events", content=b"{", headers=other).status_code == 422


def test_a_key_over_its_request_quota_is_refused_before_its_body_is_parsed(throttled, keys):
    """The request quota's 429 came from a dependency, after FastAPI had parsed the body: without an
    Idempotency-Key, a malformed body over the quota got a 422 that cost the parse, not the 429."""
    shopper = {**auth(keys["shopper"]), "Content-Type": "application/json"}
    for _ in range(5):
        throttled.get("/v1/shoppers/s1/orders", headers=shopper)
    refused = throttled.post("/v1/events", content=b"not json", headers=shopper)
    assert refused.status_code == 429 and refused.headers["ratelimit-policy"] == '"per-key";q=5;w=60'
